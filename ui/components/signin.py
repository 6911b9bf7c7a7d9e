"""The sign-in screen: the only thing an anonymous session can see."""

from __future__ import annotations

import streamlit as st

from ui import auth
from ui.components.frame import DEMO_NOTICE

__all__ = ["render"]


def render(requested: str | None = None) -> None:
    """The identity provider's button and/or the username and password form, as configured.

    A failed password shows one message whatever went wrong; a refused single sign-on says why
    and offers to sign out of the provider (so another person can sign in on this workstation).

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
    options = auth.sign_on_options()
    _single_sign_on(options)
    if options.local:
        _password_form()
    st.caption("No account yet? Ask your Vigil administrator.")
    st.caption(DEMO_NOTICE)


def _single_sign_on(options: auth.SignOnOptions) -> None:
    if options.problem:
        st.error(options.problem, icon=":material/settings_alert:")
    if options.refused:
        st.error(f"Your organisation's account was refused: {options.refused}.", icon=":material/block:")
        if st.button("Sign out of your organisation's account", key="vigil-sso-sign-out"):
            auth.sign_out()
    elif options.single_sign_on:
        if st.button("Sign in with your organisation's account", type="primary", icon=":material/badge:"):
            problem = auth.start_single_sign_on()
            if problem:
                st.error(problem)


def _password_form() -> None:
    with st.form("sign-in", enter_to_submit=True):
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        error = auth.sign_in(username, password)
        if error is None:
            st.rerun()
        st.error(error)
