"""Who is signed in to this browser session, with an idle time-out, and the guard every page calls.

The session keeps a :class:`~core.services.permissions.SignedInUser` (two strings), never a
password or a hash. The navigation in ``app.py`` only lists pages the role may use; each page
still calls :func:`require_page` first, and each service checks the permission again.
"""

from __future__ import annotations

import time
from typing import Final

import streamlit as st

from core.errors import SignInFailedError, SignInThrottledError
from core.services import auth as auth_service
from core.services.permissions import Permission, SignedInUser, can
from ui import resources

__all__ = ["IDLE_TIMEOUT_S", "current_user", "require_page", "sign_in", "sign_out"]

#: A reading-room workstation left alone this long signs its user out.
IDLE_TIMEOUT_S: Final = 30 * 60.0
_USER: Final = "vigil.user"
_SEEN: Final = "vigil.last_seen"


def current_user() -> SignedInUser | None:
    """The signed-in user, or None (also after :data:`IDLE_TIMEOUT_S` without a rerun)."""
    user = st.session_state.get(_USER)
    if not isinstance(user, SignedInUser):
        return None
    now = time.monotonic()
    if now - float(st.session_state.get(_SEEN, now)) > IDLE_TIMEOUT_S:
        sign_out()
        st.session_state["vigil.signed_out_idle"] = True
        return None
    st.session_state[_SEEN] = now
    return user


def sign_in(username: str, password: str) -> str | None:
    """Check the credentials; on success remember the user and return None, else the message to show.

    The message is the same for an unknown user and a wrong password.
    """
    try:
        user = auth_service.sign_in(
            resources.session_factory(),
            username,
            password,
            now=resources.utc_now,
            client_address=_client_address(),
        )
    except SignInFailedError:
        return "Sign-in failed: unknown username or wrong password."
    except SignInThrottledError as exc:
        return f"Too many failed sign-ins. Try again in {exc.wait_s} seconds."
    st.session_state.clear()  # nothing of a previous user survives into this one's session
    st.session_state[_USER] = user
    st.session_state[_SEEN] = time.monotonic()
    return None


def _client_address() -> str | None:
    """The browser's address as the server sees it (None where there is none, as in headless tests)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def sign_out() -> None:
    """Forget the user and everything the session remembered about their work."""
    st.session_state.clear()


def require_page(permission: Permission | None = None) -> SignedInUser:
    """The signed-in user when they may use a page that needs ``permission``; stop the page otherwise.

    Pages call it before anything else, so a page run without the router (or by a role the
    navigation would not have offered it to) shows a refusal and no data.
    """
    user = current_user()
    if user is None:
        st.warning("Please sign in to use Vigil.")
        st.stop()
    if permission is not None and not can(user, permission):
        st.error(f"Your role ({user.role.value}) does not give access to this page.")
        st.stop()
    return user
