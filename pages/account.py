"""My account: who you are, what your role allows, and changing your password."""

from __future__ import annotations

import streamlit as st

from ui import auth
from ui.components import account

user = auth.require_page()
st.title("My account")
account.profile(user)
if auth.signed_in_through_provider():
    st.caption("You signed in with your organisation's account: change its password there.")
else:
    account.change_password_form(user)
