"""Vigil entrypoint: page frame, sign-in and role-filtered navigation only."""

from __future__ import annotations

import streamlit as st

from ui import auth, navigation
from ui.components import frame, signin

frame.setup_page()
frame.require_store()
user = auth.current_user()
if user is None:
    st.navigation(navigation.sign_in_navigation(signin.render), position="hidden").run()
else:
    frame.sidebar(user)
    st.navigation(navigation.pages_for(user)).run()
