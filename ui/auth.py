"""Who is signed in to this browser session, with an idle time-out, and the guard every page calls.

The session keeps a :class:`~core.services.permissions.SignedInUser` (two strings), never a
password or a hash. The navigation in ``app.py`` only lists pages the role may use; each page
still calls :func:`require_page` first, and each service checks the permission again.

Two ways in, one kind of user. A local account signs in with :func:`sign_in`. When
``[vigil.oidc]`` is configured, :func:`start_single_sign_on` sends the browser to the identity
provider through ``st.login``; back from it, Streamlit holds the ID token's claims in a signed
cookie (``st.user``) and the first :func:`current_user` of the session turns them into the same
:class:`SignedInUser` through ``core.services.oidc`` (role mapped on the server, audited). A
refusal is remembered for the session, so reruns do not audit it again. :func:`sign_out` ends
both: Vigil's session and the provider's cookie (and, where the provider offers it, its session).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import streamlit as st
from streamlit.errors import StreamlitAuthError

from core.errors import ConfigError, SignInFailedError, SignInThrottledError
from core.services import auth as auth_service
from core.services import oidc
from core.services.permissions import Permission, SignedInUser, can
from core.services.provider_signature import ProviderReauthentication
from ui import resources

__all__ = [
    "IDLE_TIMEOUT_S",
    "SignOnOptions",
    "current_user",
    "display_name",
    "provider_reauthentication",
    "reauthenticate_to_sign",
    "require_page",
    "sign_in",
    "sign_on_options",
    "sign_out",
    "signed_in_through_provider",
    "start_single_sign_on",
]

#: A reading-room workstation left alone this long signs its user out.
IDLE_TIMEOUT_S: Final = 30 * 60.0
_USER: Final = "vigil.user"
_SEEN: Final = "vigil.last_seen"
_NAME: Final = "vigil.full_name"
#: Set when the identity provider signed this session in (its account has no Vigil password).
_THROUGH_PROVIDER: Final = "vigil.through_provider"
#: Why the identity provider's person was refused, kept so a rerun neither retries nor re-audits.
_REFUSED: Final = "vigil.sso_refused"


@dataclass(frozen=True, slots=True)
class SignOnOptions:
    """What the sign-in screen offers: the provider's button, the local form, and what went wrong.

    Attributes
    ----------
    single_sign_on : bool
        ``[vigil.oidc]`` is configured and Streamlit's secrets have the provider's ``[auth]`` section.
    local : bool
        The username and password form (off when an administrator turned it off, or when the
        single sign-on configuration is broken: fail closed rather than open a door it closed).
    problem : str or None
        A configuration problem to show, naming the key.
    refused : str or None
        Why the identity provider's person was refused in this session.
    """

    single_sign_on: bool
    local: bool
    problem: str | None = None
    refused: str | None = None


def sign_on_options() -> SignOnOptions:
    """The ways in this installation offers now (read from ``vigil.toml`` and Streamlit's secrets)."""
    refused = st.session_state.get(_REFUSED)
    try:
        policy = _policy()
    except ConfigError as exc:
        return SignOnOptions(False, False, f"Single sign-on is misconfigured in vigil.toml: {exc}", refused)
    if policy is None:
        return SignOnOptions(single_sign_on=False, local=True, refused=refused)
    if not _has_auth_secrets(policy.provider):
        section = "[auth]" if policy.provider is None else f"[auth.{policy.provider}]"
        problem = f"Single sign-on is configured ([vigil.oidc]) but Streamlit's secrets have no {section} section."
        return SignOnOptions(False, policy.local_sign_in, problem, refused)
    return SignOnOptions(True, policy.local_sign_in, None, refused)


def _policy() -> oidc.OidcPolicy | None:
    return oidc.configured_policy(resources.settings())


def _has_auth_secrets(provider: str | None) -> bool:
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets file at all
        return False
    if not isinstance(section, Mapping):
        return False
    return provider is None or isinstance(section.get(provider), Mapping)


def start_single_sign_on() -> str | None:
    """Send the browser to the identity provider (``st.login``); the problem to show when Streamlit cannot.

    The browser comes back signed in or refused (see :func:`current_user`). Streamlit names an
    incomplete ``[auth]`` section (a missing ``client_id``, say) only when asked to sign in.
    """
    policy = _policy()
    return _login(None if policy is None else policy.provider, "Single sign-on", configured=policy is not None)


def reauthenticate_to_sign() -> str | None:
    """Send the browser to the identity provider to enter the password again, for a signature.

    Goes through ``[vigil.oidc] signature_provider`` when set (the same provider, configured to
    ask for the password every time); the browser comes back to a new session, signed in again.
    Returns the problem to show when Streamlit cannot start.
    """
    policy = _policy()
    provider = None if policy is None else policy.signing_provider
    return _login(provider, "Re-authentication", configured=policy is not None)


def _login(provider: str | None, what: str, *, configured: bool) -> str | None:
    """``st.login(provider)``; the problem to show when single sign-on is off or Streamlit cannot start."""
    if not configured:
        return "Single sign-on is not configured."
    try:
        st.login(provider)
    except StreamlitAuthError as exc:
        return f"{what} cannot start: {exc}"
    return None


def provider_reauthentication() -> ProviderReauthentication | None:
    """When, and as whom, the identity provider last authenticated this browser's person (None without its cookie)."""
    if not _identity_provider_signed_in():
        return None
    return ProviderReauthentication.from_claims(st.user.to_dict())


def _identity_provider_signed_in() -> bool:
    return bool(st.user.to_dict().get("is_logged_in"))


def _from_identity_provider() -> SignedInUser | None:
    """Sign in the person the provider's cookie names, once per session; None when there is none or refused."""
    if st.session_state.get(_REFUSED) or not _identity_provider_signed_in():
        return None
    try:
        policy = _policy()
    except ConfigError:
        return None  # the sign-in screen shows the problem
    if policy is None:
        return None
    try:
        result = oidc.sign_in(
            resources.session_factory(),
            st.user.to_dict(),
            policy,
            now=resources.utc_now,
            client_address=_client_address(),
        )
    except oidc.SignInRefusedError as exc:
        st.session_state[_REFUSED] = exc.reason
        return None
    _remember(result.user, result.full_name)
    return result.user


def display_name(user: SignedInUser) -> str:
    """The printed name of this session's user: the provider's ``name`` claim, else the username."""
    name = st.session_state.get(_NAME)
    return name if isinstance(name, str) and name else user.username


def signed_in_through_provider() -> bool:
    """Whether the identity provider signed this session in (its password is the provider's business)."""
    return bool(st.session_state.get(_THROUGH_PROVIDER))


def _remember(user: SignedInUser, full_name: str | None = None) -> None:
    """Start ``user``'s session; ``full_name`` is given for a single sign-on."""
    st.session_state.clear()  # nothing of a previous user survives into this one's session
    st.session_state[_USER] = user
    st.session_state[_SEEN] = time.monotonic()
    if full_name is not None:
        st.session_state[_NAME] = full_name
        st.session_state[_THROUGH_PROVIDER] = True


def current_user() -> SignedInUser | None:
    """The signed-in user, or None (also after :data:`IDLE_TIMEOUT_S` without a rerun).

    A session without a user whose browser is signed in at the identity provider is signed in
    here first (see the module docstring).
    """
    user = st.session_state.get(_USER)
    if not isinstance(user, SignedInUser):
        return _from_identity_provider()
    now = time.monotonic()
    if now - float(st.session_state.get(_SEEN, now)) > IDLE_TIMEOUT_S:
        sign_out()
        st.session_state["vigil.signed_out_idle"] = True
        return None
    st.session_state[_SEEN] = now
    return user


def sign_in(username: str, password: str) -> str | None:
    """Check the credentials; on success remember the user and return None, else the message to show.

    The message is the same for an unknown user and a wrong password. Refused unchecked when an
    administrator turned local sign-in off (``[vigil.oidc] local_sign_in = false``).
    """
    if not sign_on_options().local:
        return "Sign-in with a Vigil password is turned off here; use your organisation's account."
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
    _remember(user)
    return None


def _client_address() -> str | None:
    """The browser's address as the server sees it (None where there is none, as in headless tests)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def sign_out() -> None:
    """Forget the user and everything the session remembered about their work, and the provider's cookie.

    With single sign-on, ``st.logout`` deletes the identity cookie and sends the browser to the
    provider's ``end_session_endpoint`` where it has one; otherwise the next rerun would sign the
    same person in again from the cookie. This run then stops there: the redirect reaches the
    browser when the run ends, and a caller's ``st.rerun`` would drop it.
    """
    st.session_state.clear()
    if _identity_provider_signed_in():
        st.logout()
        st.stop()


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
