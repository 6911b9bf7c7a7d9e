"""Local accounts: Argon2id password hashes, sign-in with an audit trail, demo users, password changes.

Passwords are hashed with argon2-cffi's ``PasswordHasher`` defaults (Argon2id, 64 MiB, 3 passes,
a random salt per hash); only the hash is stored. Sign-in never says whether an account exists:
an unknown name is checked against a dummy hash so it costs the same time, and both failures
raise the same :class:`~core.errors.SignInFailedError`. Hashing runs outside any transaction, so
the database write lock is never held for the ~0.1 s a hash takes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.audit.events import AuditAction
from core.errors import (
    BadInputError,
    SignatureFailedError,
    SignInFailedError,
    SignInThrottledError,
    UnknownRoleError,
    UnknownUserError,
    WeakPasswordError,
)
from core.services.auth_throttle import (
    ADDRESS_POLICY,
    USER_POLICY,
    ThrottlePolicy,
    ThrottleState,
    after_failure,
    remaining_lock,
)
from core.services.permissions import Permission, Role, SignedInUser, can, parse_role, require
from core.store import audit_log, sign_in_throttle, users
from core.store.engine import SessionFactory, write_with_retries
from core.store.users import UserRecord
from core.types import JSONValue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "DEMO_USERS",
    "MIN_PASSWORD_LENGTH",
    "PROVIDER_ACCOUNT_PREFIX",
    "DemoUser",
    "UserInfo",
    "add_user",
    "change_own_password",
    "check_full_name",
    "check_password_policy",
    "create_user",
    "hash_password",
    "list_users",
    "provider_issuer",
    "provider_signer",
    "reset_password",
    "seed_demo_users",
    "set_password",
    "sign_in",
    "verify_credentials",
    "verify_signature",
    "verify_password",
]

MIN_PASSWORD_LENGTH: Final = 12
#: Longer inputs are refused before hashing, so nobody can make the server hash megabytes.
MAX_PASSWORD_LENGTH: Final = 256
USERNAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
#: The longest printed full name kept (the ``app_user.full_name`` column).
MAX_FULL_NAME_LENGTH: Final = 128
#: Who seeds the demo users (``vigil init``).
SYSTEM_ACTOR: Final = "system"
#: How an identity provider's account is marked in ``app_user.password_hash`` (``oidc:ISSUER``):
#: not a PHC string, so Argon2 refuses every password against it (``core.services.oidc``).
PROVIDER_ACCOUNT_PREFIX: Final = "oidc:"
#: The actor of a failed sign-in: nobody was authenticated.
ANONYMOUS_ACTOR: Final = "anonymous"

_HASHER: Final = PasswordHasher()


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A demonstration account that ``vigil init`` creates; its password is public (README)."""

    username: str
    role: Role
    password: str


#: One account per role for the demo; change the passwords with ``vigil users set-password``.
DEMO_USERS: Final[tuple[DemoUser, ...]] = (
    DemoUser("radiologist", Role.RADIOLOGIST, "vigil-demo-radiologist"),
    DemoUser("champion", Role.CHAMPION, "vigil-demo-champion"),
    DemoUser("cmio", Role.CMIO, "vigil-demo-cmio"),
    DemoUser("mlengineer", Role.ML_ENGINEER, "vigil-demo-mlengineer"),
    DemoUser("admin", Role.ADMIN, "vigil-demo-admin"),
    DemoUser("auditor", Role.AUDITOR, "vigil-demo-auditor"),
)


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user without the password hash: what lists and pages show."""

    username: str
    role: str
    created_at: datetime
    full_name: str

    @classmethod
    def from_record(cls, rec: UserRecord) -> UserInfo:
        """Drop the hash from a stored record."""
        return cls(username=rec.username, role=rec.role, created_at=rec.created_at, full_name=rec.full_name)


def hash_password(password: str) -> str:
    """Argon2id hash of ``password`` with a fresh random salt (PHC string format)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for a malformed hash, never an exception.

    A stored value that is not an argon2 hash (a single-sign-on account's ``oidc:`` marker) still
    costs one verification, against :func:`dummy_hash`: a quick refusal would tell a guesser that
    the account exists and signs in through the identity provider.
    """
    try:
        return _HASHER.verify(password_hash, password)
    except VerificationError:
        return False
    except InvalidHashError:
        try:
            _HASHER.verify(dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            pass
        return False


def check_password_policy(password: str, *, username: str) -> None:
    """Refuse a password that is too short, too long, blank or equal to the username.

    Length over composition rules (NIST SP 800-63B): at least :data:`MIN_PASSWORD_LENGTH`
    characters, at most :data:`MAX_PASSWORD_LENGTH`.

    Raises
    ------
    WeakPasswordError
        Naming the rule, never the password.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"use at least {MIN_PASSWORD_LENGTH} characters (got {len(password)})")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"use at most {MAX_PASSWORD_LENGTH} characters (got {len(password)})")
    if not password.strip():
        raise WeakPasswordError("a password cannot be only spaces")
    if password.strip().lower() == username.strip().lower():
        raise WeakPasswordError("a password cannot be the username")


def sign_in(
    session_factory: SessionFactory,
    username: str,
    password: str,
    *,
    now: Callable[[], datetime],
    client_address: str | None = None,
) -> SignedInUser:
    """Check a username and password, throttled and audited.

    A key (the typed username, and the client address when known) that failed too often in a
    row is locked for a while that doubles with each further failure (``core.services.auth_throttle``);
    while locked, an attempt is refused without looking at the password, counted, and reported in
    the next entry for that key, so repeated failures cost audit rows only as fast as the locks let
    them through.

    Parameters
    ----------
    username : str
        As typed; surrounding spaces are removed, and at most 64 characters are recorded.
    password : str
        Never stored, logged or echoed.
    client_address : str, optional
        The client's network address (the app passes ``st.context.ip_address``).

    Returns
    -------
    SignedInUser
        With the role stored for the account.

    Raises
    ------
    SignInThrottledError
        A key is locked; nothing was checked, and no audit row is written (the attempt is counted).
    SignInFailedError
        Unknown user, wrong password or an account with an unknown role; the message and the
        time taken are the same in every case. A ``login_failed`` entry is written first.
    """
    name = username.strip()[:64]
    keys = _throttle_keys(name, client_address)
    moment = now()
    _refuse_while_locked(session_factory, keys, moment)
    user = verify_credentials(session_factory, name, password)
    write_with_retries(
        session_factory, lambda s: _record_attempt(s, name, keys, user, moment, client_address=client_address)
    )
    if user is None:
        raise SignInFailedError()
    return user


def verify_signature(  # noqa: PLR0913 - keyword-only; each is one fact of the signature
    session_factory: SessionFactory,
    signer: str,
    password: str,
    *,
    permission: Permission,
    meaning: str,
    subject: str,
    now: Callable[[], datetime],
) -> SignedInUser:
    """Check an electronic signature: the signer's password entered again, and a role that may sign.

    A failed signature counts toward the signer's sign-in lock, and a locked account cannot sign,
    so a signature form offers no faster way to guess a password than the sign-in page. A failure
    and its counters are one transaction with its ``signature_failed`` entry.

    Parameters
    ----------
    permission : Permission
        What the signature approves; the signer's role must hold it.
    meaning : str
        What the signature means (21 CFR 11.50(b)(3)), recorded with a failure.
    subject : str
        What is signed, e.g. a model version.

    Raises
    ------
    SignInThrottledError
        The signer's account is locked; nothing was checked (the attempt is counted).
    SignatureFailedError
        Unknown signer, wrong password, or a role without ``permission``; audited first.
    """
    name = signer.strip()[:64]
    keys = _throttle_keys(name, None)
    moment = now()
    _refuse_while_locked(session_factory, keys, moment)
    user = verify_credentials(session_factory, name, password)
    if user is None:
        problem = "unknown signer or wrong password"
    elif not can(user, permission):
        problem = f"role {user.role.value!r} may not {permission.value.replace('_', ' ')}"
    else:
        write_with_retries(session_factory, lambda s: _count_attempt(s, keys, succeeded=True, moment=moment))
        return user
    write_with_retries(
        session_factory,
        lambda s: _record_signature_failure(
            s, name, keys, meaning=meaning, subject=subject, problem=problem, guessed=user is None, moment=moment
        ),
    )
    raise SignatureFailedError(name, problem)


def _record_signature_failure(  # noqa: PLR0913 - one failure's every fact
    session: Session,
    name: str,
    keys: Mapping[str, ThrottlePolicy],
    *,
    meaning: str,
    subject: str,
    problem: str,
    guessed: bool,
    moment: datetime,
) -> None:
    # A wrong password (``guessed``) counts toward the lock; the right password with a role that
    # may not sign guessed nothing, and clears the count as a successful sign-in would.
    facts = _count_attempt(session, keys, succeeded=not guessed, moment=moment)
    audit_log.append(
        session,
        actor=name,
        action=AuditAction.SIGNATURE_FAILED,
        subject=subject,
        payload={"signer": name, "meaning": meaning, "reason": problem, **facts},
        recorded_at=moment.isoformat(),
    )


def _refuse_while_locked(session_factory: SessionFactory, keys: Mapping[str, ThrottlePolicy], moment: datetime) -> None:
    """Raise, counting the refusal, while any of ``keys`` is locked."""
    with session_factory() as session:
        stored = sign_in_throttle.read(session, keys)
    wait = max((remaining_lock(_state(r), moment) for r in stored.values()), default=timedelta(0))
    if wait > timedelta(0):
        write_with_retries(session_factory, lambda s: _count_refusal(s, keys, moment))
        raise SignInThrottledError(math.ceil(wait.total_seconds()))


def verify_credentials(session_factory: SessionFactory, username: str, password: str) -> SignedInUser | None:
    """The account's user when ``password`` is its password, else ``None``; neither throttled nor audited.

    The same work is done whether or not the account exists (a dummy hash is verified), so the time
    taken does not reveal which usernames exist. An account whose stored role is unknown never
    matches. Callers throttle and audit: :func:`sign_in`, and electronic signatures.
    """
    with session_factory() as session:
        try:
            record: UserRecord | None = users.get_user(session, username) if username else None
        except UnknownUserError:
            record = None
    too_long = len(password) > MAX_PASSWORD_LENGTH
    matches = verify_password(record.password_hash if record else dummy_hash(), password[:MAX_PASSWORD_LENGTH])
    return _signed_in(record) if (record is not None and matches and not too_long) else None


def _throttle_keys(name: str, client_address: str | None) -> dict[str, ThrottlePolicy]:
    keys = {f"user:{name.lower()}": USER_POLICY}
    if client_address:
        keys[f"address:{client_address[:150]}"] = ADDRESS_POLICY
    return keys


def _state(record: sign_in_throttle.ThrottleRecord | None) -> ThrottleState:
    if record is None:
        return ThrottleState()
    return ThrottleState(record.failures, record.locked_until, record.refused)


def _count_refusal(session: Session, keys: Mapping[str, ThrottlePolicy], moment: datetime) -> None:
    """Count a refused attempt on every key that is locked (reported in the key's next entry)."""
    for record in sign_in_throttle.read(session, keys, for_update=True).values():
        if remaining_lock(_state(record), moment):
            sign_in_throttle.save(session, replace(record, refused=record.refused + 1), now=moment)


def _record_attempt(  # noqa: PLR0913 - one attempt's every fact
    session: Session,
    name: str,
    keys: Mapping[str, ThrottlePolicy],
    user: SignedInUser | None,
    moment: datetime,
    *,
    client_address: str | None,
) -> None:
    """The attempt's audit entry and the keys' new counters, in one transaction."""
    payload: dict[str, JSONValue] = {"username": name}
    if client_address:
        payload["client_address"] = client_address[:150]
    payload.update(_count_attempt(session, keys, succeeded=user is not None, moment=moment))
    if user is not None:
        payload["role"] = user.role.value
    audit_log.append(
        session,
        actor=ANONYMOUS_ACTOR if user is None else user.username,
        action=AuditAction.LOGIN_FAILED if user is None else AuditAction.LOGIN_SUCCEEDED,
        subject=name,
        payload=payload,
        recorded_at=moment.isoformat(),
    )


def _count_attempt(
    session: Session, keys: Mapping[str, ThrottlePolicy], *, succeeded: bool, moment: datetime
) -> dict[str, JSONValue]:
    """Clear the keys after a success, or count a failure on each; return the facts for the audit entry."""
    stored = sign_in_throttle.read(session, keys, for_update=True)
    facts: dict[str, JSONValue] = {}
    refused = sum(r.refused for r in stored.values())
    if refused:
        facts["refused_while_locked"] = refused
    if succeeded:
        sign_in_throttle.clear(session, keys)
        return facts
    failures, lock = 0, timedelta(0)
    for key, policy in keys.items():
        after = after_failure(_state(stored.get(key)), policy, moment)
        sign_in_throttle.save(
            session,
            sign_in_throttle.ThrottleRecord(key, after.failures, after.locked_until, after.refused),
            now=moment,
        )
        failures = max(failures, after.failures)
        lock = max(lock, remaining_lock(after, moment))
    facts["consecutive_failures"] = failures
    if lock:
        facts["locked_for_s"] = int(lock.total_seconds())
    return facts


def add_user(  # noqa: PLR0913 - keyword-only after the account's three facts
    session_factory: SessionFactory,
    username: str,
    role: str,
    password: str,
    *,
    actor: str,
    now: Callable[[], datetime],
    full_name: str | None = None,
) -> UserInfo:
    """Create an account, audited (``vigil users add``; the operator at the shell is trusted).

    Parameters
    ----------
    full_name : str, optional
        The printed name the person's electronic signatures show. ``vigil users add`` and the
        Users page always pass one; None (the username) is for accounts Vigil creates itself.

    Raises
    ------
    BadInputError
        The username is not 1-64 letters, digits, ``_ . @ -``, or the full name is blank, longer
        than 128 characters or holds a control character.
    UnknownRoleError
        ``role`` is not a :class:`Role`.
    WeakPasswordError
        The password breaks :func:`check_password_policy`.
    DuplicateUserError
        The username is taken.
    """
    name, parsed = _check_new_user(username, role)
    printed = name if full_name is None else check_full_name(full_name)
    check_password_policy(password, username=name)
    password_hash = hash_password(password)
    with session_factory.begin() as session:
        rec = users.add_user(
            session, username=name, role=parsed.value, password_hash=password_hash, now=now(), full_name=printed
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.USER_CREATED,
            subject=name,
            payload={"username": name, "full_name": printed, "role": parsed.value},
            recorded_at=now().isoformat(),
        )
    return UserInfo.from_record(rec)


def create_user(  # noqa: PLR0913 - the account's facts, then the clock
    session_factory: SessionFactory,
    admin: SignedInUser,
    username: str,
    role: str,
    password: str,
    *,
    full_name: str,
    now: Callable[[], datetime],
) -> UserInfo:
    """:func:`add_user` on behalf of a signed-in administrator (the Users page); the full name is required.

    Raises
    ------
    PermissionDeniedError
        ``admin`` may not manage users.
    """
    require(admin, Permission.MANAGE_USERS)
    return add_user(session_factory, username, role, password, actor=admin.username, now=now, full_name=full_name)


def check_full_name(full_name: str) -> str:
    """The printed name without surrounding spaces.

    Raises
    ------
    BadInputError
        Blank, longer than :data:`MAX_FULL_NAME_LENGTH` characters, or holding a control character
        (a printed name is one line of text), naming the value.
    """
    name = full_name.strip()
    if not name:
        raise BadInputError(f"a full name is required (the printed name of signatures), got {full_name!r}")
    if len(name) > MAX_FULL_NAME_LENGTH:
        raise BadInputError(f"the full name must be at most {MAX_FULL_NAME_LENGTH} characters, got {len(name)}")
    if any(not ch.isprintable() for ch in name):
        raise BadInputError(f"the full name {name!r} holds a control character")
    return name


def set_password(
    session_factory: SessionFactory, username: str, password: str, *, actor: str, now: Callable[[], datetime]
) -> None:
    """Replace a user's password hash, audited (``vigil users set-password``).

    Raises
    ------
    UnknownUserError
        No such user.
    BadInputError
        The account signs in through an identity provider: its password lives there, and a
        Vigil password would quietly turn it into a local account the provider no longer governs.
    WeakPasswordError
        The password breaks :func:`check_password_policy`.
    """
    name = username.strip()
    check_password_policy(password, username=name)
    password_hash = hash_password(password)
    with session_factory.begin() as session:
        _refuse_provider_account(users.get_user(session, name))
        users.set_password_hash(session, name, password_hash)
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.PASSWORD_CHANGED,
            subject=name,
            payload={"username": name, "by": actor},
            recorded_at=now().isoformat(),
        )


def provider_issuer(session_factory: SessionFactory, username: str) -> str | None:
    """The identity provider that manages ``username``'s account, or ``None`` (a local or unknown account).

    Such an account has no Vigil password, so it can neither sign in nor sign with one here; a
    command that would prompt for its password asks this first and says where to sign instead.
    """
    with session_factory() as session:
        try:
            record = users.get_user(session, username.strip())
        except UnknownUserError:
            return None
    return _issuer_of(record)


def provider_signer(session_factory: SessionFactory, username: str) -> SignedInUser:
    """The account ``username`` that the identity provider manages, with its stored role.

    Whoever asks to sign for it must still re-authenticate at the provider as that person
    (``core.services.provider_signature``); this only says which account and role the request is for.

    Raises
    ------
    UnknownUserError
        No such account.
    BadInputError
        A local account (it signs with its Vigil password), or a role this release does not know.
    """
    with session_factory() as session:
        record = users.get_user(session, username.strip())
    if _issuer_of(record) is None:
        raise BadInputError(f"user {record.username!r} is a local account: it signs with its Vigil password")
    signer = _signed_in(record)
    if signer is None:
        raise BadInputError(f"user {record.username!r} has the role {record.role!r}, which this release does not know")
    return signer


def _issuer_of(record: UserRecord) -> str | None:
    """The issuer an identity provider's account is marked with; None for a local account."""
    if not record.password_hash.startswith(PROVIDER_ACCOUNT_PREFIX):
        return None
    return record.password_hash.removeprefix(PROVIDER_ACCOUNT_PREFIX)


def _refuse_provider_account(record: UserRecord) -> None:
    if (issuer := _issuer_of(record)) is not None:
        raise BadInputError(
            f"user {record.username!r} signs in through the identity provider {issuer!r}: "
            "Vigil holds no password for this account, so none can be set here (change it at the provider)"
        )


def reset_password(
    session_factory: SessionFactory, admin: SignedInUser, username: str, password: str, *, now: Callable[[], datetime]
) -> None:
    """:func:`set_password` on behalf of a signed-in administrator.

    Raises
    ------
    PermissionDeniedError
        ``admin`` may not manage users.
    """
    require(admin, Permission.MANAGE_USERS)
    set_password(session_factory, username, password, actor=admin.username, now=now)


def change_own_password(
    session_factory: SessionFactory,
    user: SignedInUser,
    current_password: str,
    new_password: str,
    *,
    now: Callable[[], datetime],
) -> None:
    """Let a signed-in user change their own password after proving the current one.

    Raises
    ------
    SignInFailedError
        ``current_password`` is wrong (audited as a failed sign-in).
    WeakPasswordError
        The new password breaks :func:`check_password_policy`.
    """
    check_password_policy(new_password, username=user.username)
    sign_in(session_factory, user.username, current_password, now=now)
    set_password(session_factory, user.username, new_password, actor=user.username, now=now)


def list_users(session_factory: SessionFactory) -> list[UserInfo]:
    """Every account, by username, without hashes."""
    with session_factory() as session:
        return [UserInfo.from_record(r) for r in users.list_users(session)]


def seed_demo_users(
    session_factory: SessionFactory, *, now: Callable[[], datetime], demo: Sequence[DemoUser] = DEMO_USERS
) -> list[str]:
    """Create the demo accounts that do not exist yet, in one transaction (idempotent).

    An existing account is left exactly as it is, so a password changed with
    ``vigil users set-password`` survives the next ``vigil init``.

    Returns
    -------
    list of str
        The usernames created now (empty when every demo account existed).
    """
    with session_factory() as session:
        existing = {u.username for u in users.list_users(session)}
    todo = [(d, hash_password(d.password)) for d in demo if d.username not in existing]
    created: list[str] = []
    with session_factory.begin() as session:
        present = {u.username for u in users.list_users(session)}  # a concurrent init may have won
        for d, password_hash in todo:
            if d.username in present:
                continue
            users.add_user(session, username=d.username, role=d.role.value, password_hash=password_hash, now=now())
            audit_log.append(
                session,
                actor=SYSTEM_ACTOR,
                action=AuditAction.USER_CREATED,
                subject=d.username,
                payload={"username": d.username, "role": d.role.value, "demo": True},
                recorded_at=now().isoformat(),
            )
            created.append(d.username)
    return created


@cache
def dummy_hash() -> str:
    """A password hash no password matches, verified against when an account does not exist."""
    # Verified against when the account does not exist, so both failures take as long.
    return hash_password("vigil: no such account")


def _signed_in(record: UserRecord) -> SignedInUser | None:
    try:
        return SignedInUser(username=record.username, role=parse_role(record.role))
    except UnknownRoleError:
        return None


def _check_new_user(username: str, role: str) -> tuple[str, Role]:
    name = username.strip()
    if not USERNAME_PATTERN.match(name):
        raise BadInputError(f"invalid username {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    return name, parse_role(role)
