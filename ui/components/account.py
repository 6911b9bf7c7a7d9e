"""Account widgets: who you are, what your role allows, changing your own password; the users table."""

from __future__ import annotations

import streamlit as st

from core.errors import VigilError
from core.services import auth as auth_service
from core.services.auth import UserInfo
from core.services.permissions import Permission, Role, SignedInUser, permissions_of
from ui import localtime, resources

__all__ = ["add_user_form", "change_password_form", "profile", "reset_password_form", "users_table"]


def profile(user: SignedInUser) -> None:
    """The signed-in user's name, role and permissions."""
    st.markdown(f"**{user.username}** · role `{user.role.value}`")
    allowed = sorted(p.value.replace("_", " ") for p in permissions_of(user.role))
    st.caption("Your role may: " + ", ".join(allowed) + ".")


def change_password_form(user: SignedInUser) -> None:
    """Change your own password; the current one is checked first (and a wrong one is audited)."""
    with st.form("change-password", clear_on_submit=True):
        current = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input(
            f"New password (at least {auth_service.MIN_PASSWORD_LENGTH} characters)",
            type="password",
            autocomplete="new-password",
        )
        repeat = st.text_input("Repeat the new password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Change password", type="primary")
    if not submitted:
        return
    if new != repeat:
        st.error("The two new passwords differ; nothing was changed.")
        return
    try:
        auth_service.change_own_password(resources.session_factory(), user, current, new, now=resources.utc_now)
    except VigilError as exc:
        st.error(str(exc))
        return
    st.success("Password changed.")


def users_table(users: list[UserInfo]) -> None:
    """Every account and its role (never a hash)."""
    st.dataframe(
        {
            "Username": [u.username for u in users],
            "Full name": [u.full_name for u in users],
            "Role": [u.role for u in users],
            "Created": [localtime.local_text(u.created_at) for u in users],
        },
        hide_index=True,
        width="stretch",
    )


def add_user_form(admin: SignedInUser) -> None:
    """Create an account (administrators only; the service checks it too)."""
    with st.form("add-user", clear_on_submit=True):
        st.markdown("**Add a user**")
        username = st.text_input("Username")
        full_name = st.text_input("Full name", help="Printed on this person's electronic signatures (21 CFR 11.50).")
        role = st.selectbox("Role", [r.value for r in Role])
        password = st.text_input("Initial password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Add user")
    if submitted:
        try:
            info = auth_service.create_user(
                resources.session_factory(),
                admin,
                username,
                str(role),
                password,
                full_name=full_name,
                now=resources.utc_now,
            )
        except VigilError as exc:
            st.error(str(exc))
            return
        st.success(f"Created {info.username} ({info.full_name}, {info.role}).")


def reset_password_form(admin: SignedInUser, usernames: list[str]) -> None:
    """Set another user's password (administrators only)."""
    if Permission.MANAGE_USERS not in permissions_of(admin.role):
        return
    with st.form("reset-password", clear_on_submit=True):
        st.markdown("**Reset a password**")
        username = st.selectbox("User", usernames)
        password = st.text_input("New password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Reset password")
    if submitted and username is not None:
        try:
            auth_service.reset_password(resources.session_factory(), admin, username, password, now=resources.utc_now)
        except VigilError as exc:
            st.error(str(exc))
            return
        st.success(f"Password of {username} changed.")
