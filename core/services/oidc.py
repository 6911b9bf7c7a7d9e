"""Single sign-on through an OpenID Connect identity provider: the policy, claims to a role, the record.

Streamlit's ``st.login`` runs the protocol (authorization code with PKCE, the ID token checked
against the provider's published keys, its nonce, audience and expiry) and hands the app the ID
token's claims; this module decides what they mean to Vigil. :func:`parse_policy` checks the
``[vigil.oidc]`` table, :func:`identify` turns claims into an :class:`OidcIdentity` (pure), and
:func:`sign_in` records the outcome, the account created or brought up to date and one audit
entry, in one transaction.

Decisions, each made here once:

- **Username**: the token's ``sub``. It is stable and unique at one issuer, where
  ``preferred_username`` may be reassigned to someone else. ``preferred_username`` goes to the
  audit entry, and ``name`` becomes the account's printed full name.
- **Role**: the role claim holds a string or a list of strings; values the mapping does not name
  are ignored. No mapped value: refused. Values mapping to two or more different roles: refused,
  naming them. Vigil gives each account one role, and picking one (even the "least privileged":
  an auditor and a radiologist are not ordered) would be a privilege decision the identity team
  never made.
- **Accounts**: created at the first sign-in with a password hash no password matches
  (``oidc:`` and the issuer), so local sign-in can never reach them; role and printed name follow
  the claims at every sign-in, so a role withdrawn at the provider is withdrawn here at the next
  sign-in (services re-check the stored role for writes). A local account, or one of another
  issuer, with the same username is never taken over: refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import BadInputError, ConfigError, UnknownRoleError, UnknownUserError
from core.services.auth import ANONYMOUS_ACTOR, PROVIDER_ACCOUNT_PREFIX, USERNAME_PATTERN
from core.services.permissions import Role, SignedInUser, parse_role
from core.store import audit_log, users
from core.store.engine import SessionFactory, write_with_retries
from core.types import JSONValue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "ACCOUNT_MARKER_PREFIX",
    "NAME_CLAIM",
    "USERNAME_CLAIM",
    "OidcIdentity",
    "OidcPolicy",
    "OidcSignIn",
    "SignInRefusedError",
    "STREAMLIT_DEFAULT_PROVIDER",
    "account_marker",
    "check_provider",
    "claim_values",
    "configured_policy",
    "identify",
    "parse_policy",
    "sign_in",
]

#: The claim that becomes the Vigil username (see the module docstring for why not preferred_username).
USERNAME_CLAIM: Final = "sub"
#: The provider Streamlit records for ``st.login()`` with ``[auth]`` itself (no ``[auth.NAME]``).
STREAMLIT_DEFAULT_PROVIDER: Final = "default"
#: The claim that becomes the account's printed full name.
NAME_CLAIM: Final = "name"
#: How an identity provider's account is marked in ``app_user.password_hash``: not a PHC string,
#: so Argon2 refuses to verify any password against it.
ACCOUNT_MARKER_PREFIX: Final = PROVIDER_ACCOUNT_PREFIX
#: The longest printed name kept (the ``app_user.full_name`` column).
MAX_FULL_NAME: Final = 128
#: Claim values recorded in a refusal's audit entry, at most, and their longest length.
_MAX_RECORDED_VALUES: Final = 20
_MAX_VALUE_CHARS: Final = 128
#: Streamlit names providers ``[auth.NAME]`` and cannot route a name with an underscore.
_PROVIDER_NAME: Final = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_KEYS: Final = ("role_claim", "roles", "provider", "local_sign_in", "signature_provider")


class SignInRefusedError(BadInputError):
    """The identity provider vouched for the person, but Vigil gives them no account; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"single sign-on refused: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OidcPolicy:
    """The ``[vigil.oidc]`` table, checked.

    Attributes
    ----------
    role_claim : str
        The ID-token claim holding the person's groups or roles (``groups``). A name with dots
        that is not itself a claim is a path into nested claims (``realm_access.roles``).
    roles : Mapping[str, Role]
        Claim value -> Vigil role; kept on the server, never sent to the browser.
    provider : str or None
        The ``[auth.NAME]`` section of Streamlit's secrets to sign in with; None for ``[auth]`` itself.
    local_sign_in : bool
        Whether the username and password form is still offered (small sites, the demo,
        break-glass accounts). An administrator turns it off once everyone signs in through the provider.
    signature_provider : str or None
        The ``[auth.NAME]`` section an electronic signature re-authenticates through: the same
        identity provider, configured to ask for the password again (``prompt = "login"``, see
        ``core.services.provider_signature``); None to use :attr:`provider`.
    """

    role_claim: str
    roles: Mapping[str, Role]
    provider: str | None = None
    local_sign_in: bool = True
    signature_provider: str | None = None

    @property
    def signing_provider(self) -> str | None:
        """The section a signature re-authenticates through (None: ``[auth]`` itself)."""
        return self.signature_provider or self.provider


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who the claims say signed in, and the one Vigil role they map to."""

    username: str
    full_name: str
    issuer: str
    role: Role
    preferred_username: str = ""


@dataclass(frozen=True, slots=True)
class OidcSignIn:
    """A successful single sign-on: the session's user, their printed name, and whether the account is new."""

    user: SignedInUser
    full_name: str
    provisioned: bool


def parse_policy(table: Mapping[str, object]) -> OidcPolicy:
    """Check the ``[vigil.oidc]`` table of ``vigil.toml``.

    Parameters
    ----------
    table : Mapping[str, object]
        As TOML gave it: ``role_claim`` (str), ``roles`` (a table of claim value -> role name),
        optionally ``provider`` (str), ``local_sign_in`` (bool, default true) and
        ``signature_provider`` (str).

    Raises
    ------
    ConfigError
        Naming the key (``oidc.roles."rad-readers"``) and the bad value: an unknown key, a missing
        or empty ``role_claim`` or ``roles``, an unknown role name, a provider name Streamlit
        cannot route, a ``local_sign_in`` that is not a boolean.
    """
    if unknown := sorted(set(table) - set(_KEYS)):
        raise ConfigError(f"unknown key(s) in [vigil.oidc]: {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    claim = table.get("role_claim")
    if not isinstance(claim, str) or not claim.strip():
        raise ConfigError(f"oidc.role_claim must name the ID-token claim holding groups or roles, got {claim!r}")
    provider = _provider_name(table, "provider")
    local = table.get("local_sign_in", True)
    if not isinstance(local, bool):
        raise ConfigError(f"oidc.local_sign_in must be true or false, got {local!r}")
    signing = _provider_name(table, "signature_provider")
    return OidcPolicy(claim.strip(), _role_table(table.get("roles")), provider, local, signing)


def configured_policy(settings: Settings) -> OidcPolicy | None:
    """The installation's ``[vigil.oidc]`` policy, checked; None when single sign-on is not configured.

    Raises
    ------
    ConfigError
        As :func:`parse_policy`: the table is named and so is the bad key.
    """
    return None if settings.oidc is None else parse_policy(settings.oidc)


def _provider_name(table: Mapping[str, object], key: str) -> str | None:
    name = table.get(key)
    if name is not None and (not isinstance(name, str) or not _PROVIDER_NAME.match(name)):
        raise ConfigError(f"oidc.{key} must be letters, digits or '-' (an [auth.NAME] section), got {name!r}")
    return name


def _role_table(value: object) -> Mapping[str, Role]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f'oidc.roles must be a non-empty table such as {{"rad-readers" = "radiologist"}}, got {value!r}'
        )
    roles: dict[str, Role] = {}
    for claim_value, role in value.items():
        key = f"oidc.roles.{claim_value!r}".replace("'", '"')
        if not isinstance(role, str):
            raise ConfigError(f"{key} must be a role name, got {role!r}")
        try:
            roles[claim_value] = parse_role(role)
        except UnknownRoleError:
            known = ", ".join(r.value for r in Role)
            raise ConfigError(f"{key} names an unknown role {role!r} (roles: {known})") from None
    return MappingProxyType(roles)


def claim_values(claims: Mapping[str, object], claim: str) -> tuple[str, ...]:
    """The values of ``claim`` as strings: a string is one value, a list of strings several.

    A claim name that is not a claim but holds dots is followed through nested objects
    (``realm_access.roles``); a claim named with dots (``https://example.org/roles``) wins.

    Raises
    ------
    SignInRefusedError
        The claim is absent, or is neither a string nor a list of strings.
    """
    value = claims.get(claim, _nested(claims, claim))
    if value is None:
        raise SignInRefusedError(
            f"the ID token has no {claim!r} claim; ask the identity team to add it to the ID token"
        )
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SignInRefusedError(f"the {claim!r} claim must be a string or a list of strings, got {_short(value)}")


def _nested(claims: Mapping[str, object], path: str) -> object:
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _mapped_role(values: tuple[str, ...], policy: OidcPolicy) -> Role:
    """The one role ``values`` map to; refused for none, and for two or more."""
    found = sorted({policy.roles[v] for v in values if v in policy.roles}, key=list(Role).index)
    if not found:
        shown = ", ".join(_short(v) for v in values[:_MAX_RECORDED_VALUES]) or "none"
        raise SignInRefusedError(
            f"no value of the {policy.role_claim!r} claim ({shown}) maps to a Vigil role; "
            "ask your Vigil administrator for access"
        )
    if len(found) > 1:
        raise SignInRefusedError(
            f"the {policy.role_claim!r} claim maps to more than one Vigil role "
            f"({', '.join(r.value for r in found)}); Vigil gives each account one role, so ask the "
            "identity team to keep you in one Vigil group"
        )
    return found[0]


def identify(claims: Mapping[str, object], policy: OidcPolicy) -> OidcIdentity:
    """Who ``claims`` (an ID token's, as ``st.user`` holds them) say signed in, with their one role.

    Raises
    ------
    SignInRefusedError
        The claims came from another provider section (:func:`check_provider`); no ``iss``; a
        ``sub`` that is not a usable username (1-64 letters, digits, ``_ . @ -``); or a role
        claim that is absent, malformed, maps to no role or to two roles.
    """
    check_provider(claims, policy)
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise SignInRefusedError("the ID token names no issuer ('iss')")
    subject = claims.get(USERNAME_CLAIM)
    if not isinstance(subject, str) or not USERNAME_PATTERN.match(subject):
        raise SignInRefusedError(
            f"the identity provider's subject {_short(subject)} is not a usable Vigil username "
            "(1-64 letters, digits, '_', '.', '@' or '-')"
        )
    role = _mapped_role(claim_values(claims, policy.role_claim), policy)
    preferred = claims.get("preferred_username")
    preferred = preferred if isinstance(preferred, str) else ""
    return OidcIdentity(
        username=subject,
        full_name=_printed_name(claims.get(NAME_CLAIM)) or _printed_name(preferred) or subject,
        issuer=issuer,
        role=role,
        preferred_username=preferred[:_MAX_VALUE_CHARS],
    )


def check_provider(claims: Mapping[str, object], policy: OidcPolicy) -> None:
    """Refuse claims that came back from another ``[auth.NAME]`` section than the ones the policy names.

    Streamlit writes the section it signed in with into the cookie (``provider``; ``default`` for
    ``[auth]`` itself). Secrets holding two providers, say a test realm beside the hospital's,
    must not let a person signed in at the other one through: their groups would be mapped by a
    table written for this one. The section signatures re-authenticate through
    (:attr:`OidcPolicy.signature_provider`) is the same provider asked to check the password
    again, and is accepted too; its issuer must still be the one that manages the account.

    Raises
    ------
    SignInRefusedError
        The cookie names no provider, or another than :attr:`OidcPolicy.provider` and
        :attr:`OidcPolicy.signature_provider`.
    """
    expected = policy.provider or STREAMLIT_DEFAULT_PROVIDER
    accepted = {expected, policy.signature_provider or expected}
    got = claims.get("provider")
    if got not in accepted:
        raise SignInRefusedError(
            f"the sign-in came from the identity provider section {_short(got)}, "
            f"but [vigil.oidc] provider names {expected!r}"
        )


def _printed_name(value: object) -> str:
    """``value`` without control characters or surrounding spaces, cut to :data:`MAX_FULL_NAME`."""
    if not isinstance(value, str):
        return ""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in value)
    return " ".join(text.split())[:MAX_FULL_NAME]


def account_marker(issuer: str) -> str:
    """The ``password_hash`` of an account the provider at ``issuer`` vouches for (no password matches it)."""
    return f"{ACCOUNT_MARKER_PREFIX}{issuer}"


def sign_in(
    session_factory: SessionFactory,
    claims: Mapping[str, object],
    policy: OidcPolicy,
    *,
    now: Callable[[], datetime],
    client_address: str | None = None,
) -> OidcSignIn:
    """Sign in the person ``claims`` describe: their account created or updated, and audited.

    One transaction writes the account (created at the first sign-in; role and printed name
    updated when the claims changed) and its ``login_succeeded`` entry with ``method: "oidc"``.
    A refusal writes one ``login_failed`` entry with the reason and nothing else.

    Parameters
    ----------
    claims : Mapping[str, object]
        The ID token's claims; ``st.login`` has checked its signature, issuer, audience, expiry
        and nonce, and the cookie holding them is signed by the server.
    client_address : str, optional
        The browser's address as the server sees it, recorded with the entry.

    Raises
    ------
    SignInRefusedError
        :func:`identify` refused the claims, or a local account (or another issuer's) already
        holds the username; audited first.
    """
    moment = now()
    try:
        identity = identify(claims, policy)
    except SignInRefusedError as exc:
        reason = exc.reason
        write_with_retries(
            session_factory, lambda s: _record_refusal(s, claims, policy, reason, moment, client_address)
        )
        raise
    outcome = write_with_retries(session_factory, lambda s: _record_sign_in(s, identity, moment, client_address))
    if isinstance(outcome, str):
        raise SignInRefusedError(outcome)
    return outcome


def _record_sign_in(
    session: Session, identity: OidcIdentity, moment: datetime, client_address: str | None
) -> OidcSignIn | str:
    """Create or update the account and append its entry; the refusal's reason instead when the name is taken."""
    try:
        record: users.UserRecord | None = users.get_user(session, identity.username)
    except UnknownUserError:
        record = None
    marker = account_marker(identity.issuer)
    facts = _identity_facts(identity, client_address)
    if record is not None and record.password_hash != marker:
        reason = f"the username {identity.username!r} belongs to an account this identity provider does not manage"
        _append(
            session, AuditAction.LOGIN_FAILED, ANONYMOUS_ACTOR, identity.username, {**facts, "reason": reason}, moment
        )
        return reason
    if record is None:
        users.add_user(
            session,
            username=identity.username,
            role=identity.role.value,
            password_hash=marker,
            now=moment,
            full_name=identity.full_name,
        )
        _append(session, AuditAction.USER_CREATED, identity.username, identity.username, facts, moment)
    elif (record.role, record.full_name) != (identity.role.value, identity.full_name):
        users.set_profile(session, identity.username, role=identity.role.value, full_name=identity.full_name)
        facts |= {"previous_role": record.role, "previous_full_name": record.full_name}
    _append(
        session,
        AuditAction.LOGIN_SUCCEEDED,
        identity.username,
        identity.username,
        {**facts, "provisioned": record is None},
        moment,
    )
    user = SignedInUser(username=identity.username, role=identity.role)
    return OidcSignIn(user=user, full_name=identity.full_name, provisioned=record is None)


def _record_refusal(  # noqa: PLR0913 - one refusal's every fact
    session: Session,
    claims: Mapping[str, object],
    policy: OidcPolicy,
    reason: str,
    moment: datetime,
    client_address: str | None,
) -> None:
    subject = claims.get(USERNAME_CLAIM)
    usable = isinstance(subject, str) and USERNAME_PATTERN.match(subject) is not None
    payload: dict[str, JSONValue] = {"method": "oidc", "reason": reason}
    for claim in ("iss", USERNAME_CLAIM, "preferred_username", NAME_CLAIM):
        if isinstance(value := claims.get(claim), str):
            payload[claim] = value[:_MAX_VALUE_CHARS]
    try:
        values = claim_values(claims, policy.role_claim)
    except SignInRefusedError:
        values = ()
    payload[policy.role_claim] = [v[:_MAX_VALUE_CHARS] for v in values[:_MAX_RECORDED_VALUES]]
    if len(values) > _MAX_RECORDED_VALUES:
        payload["role_claim_values_total"] = len(values)
    if client_address:
        payload["client_address"] = client_address[:150]
    name = str(subject) if usable else ANONYMOUS_ACTOR
    _append(session, AuditAction.LOGIN_FAILED, ANONYMOUS_ACTOR, name, payload, moment)


def _identity_facts(identity: OidcIdentity, client_address: str | None) -> dict[str, JSONValue]:
    facts: dict[str, JSONValue] = {
        "method": "oidc",
        "username": identity.username,
        "full_name": identity.full_name,
        "issuer": identity.issuer,
        "role": identity.role.value,
    }
    if identity.preferred_username:
        facts["preferred_username"] = identity.preferred_username
    if client_address:
        facts["client_address"] = client_address[:150]
    return facts


def _append(  # noqa: PLR0913 - an entry's every field
    session: Session,
    action: AuditAction,
    actor: str,
    subject: str,
    payload: dict[str, JSONValue],
    moment: datetime,
) -> None:
    audit_log.append(
        session, actor=actor, action=action, subject=subject, payload=payload, recorded_at=moment.isoformat()
    )


def _short(value: object) -> str:
    """``repr(value)`` cut short enough for a message."""
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"
