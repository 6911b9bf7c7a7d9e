"""Users: the accounts that sign in to Vigil; administrators add users and reset passwords."""

from __future__ import annotations

import streamlit as st

from core.services import auth as auth_service
from core.services.permissions import Permission
from ui import auth, resources
from ui.components import account

user = auth.require_page(Permission.MANAGE_USERS)
st.title("Users")
table = st.container()  # drawn above the forms, filled after them
left, right = st.columns(2)
with left:
    account.add_user_form(user)
# Read after the form: the list (and the reset form's choices) already hold a user just added.
users = auth_service.list_users(resources.read_session_factory())
with table:
    account.users_table(users)
with right:
    account.reset_password_form(user, [u.username for u in users])
