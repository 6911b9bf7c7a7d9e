"""The sign-in screen: the only thing an anonymous session can see."""

from __future__ import annotations

import streamlit as st

from ui import auth
from ui.components.frame import DEMO_NOTICE

__all__ = ["render"]


def render(requested: str | None = None) -> None:
    """Username and password form; a failure shows one message whatever went wrong.

    Parameters
    ----------
    requested : str, optional
        The title of the page whose URL the visitor opened; after signing in the same URL, with
        its query parameters, shows that page (see ``ui.navigation``).
    """
    st.title("Vigil")
    st.caption("Review and vigilance for imaging AI deployed across hospital sites.")
    if requested is not None:
        st.info(f"Sign in to open the {requested} page.", icon=":material/link:")
    if st.session_state.pop("vigil.signed_out_idle", False):
        st.info("You were signed out after 30 minutes without activity.")
    with st.form("sign-in", enter_to_submit=True):
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        error = auth.sign_in(username, password)
        if error is None:
            st.rerun()
        st.error(error)
    st.caption("No account yet? Ask your Vigil administrator.")
    st.caption(DEMO_NOTICE)
