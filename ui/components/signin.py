"""The sign-in screen: the only thing an anonymous session can see."""

from __future__ import annotations

import streamlit as st

from ui import auth
from ui.components.frame import DEMO_NOTICE

__all__ = ["render"]


def render() -> None:
    """Username and password form; a failure shows one message whatever went wrong."""
    st.title("Vigil")
    st.caption("Review and vigilance for imaging AI deployed across hospital sites.")
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
    st.caption("First run? `vigil init` creates one demonstration account per role (see the README).")
    st.caption(DEMO_NOTICE)
