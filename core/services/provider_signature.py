"""Electronic signatures of people who sign in through the identity provider: re-authentication there.

A signature executes both of its components, an identification and a password (21 CFR 11.200(a)).
A person signed in through single sign-on has no Vigil password, and Vigil never sees the one the
identity provider checks, so the provider asks for it again instead:

1. :func:`request`: the signer states what they sign. The act waits in ``signature_request``
   (one per signer) and the ledger records ``signature_requested``.
2. The browser goes to the provider, which asks for the password again (``prompt = "login"`` on
   the provider section used for signatures, see the README) and comes back with a fresh ID
   token; its ``auth_time`` claim says when the person last entered their credentials.
3. :func:`verify`: the act may complete only when the token's issuer manages the signer's
   account, its subject is the signer, the signer's role may sign, and the person authenticated
   after the request (:data:`CLOCK_SKEW_S` allowed) and at most :data:`SIGNATURE_WINDOW_S`
   before signing. A provider that answered from its own session without asking gives an
   ``auth_time`` from before the request, and that does not sign. A refusal is a
   ``signature_failed`` entry, as a wrong password is.

The caller completes the act and deletes the request in one transaction (:func:`take`), so one
re-authentication signs one act once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.errors import BadInputError, SignatureFailedError, UnknownRoleError, UnknownUserError
from core.services.auth import PROVIDER_ACCOUNT_PREFIX
from core.services.oidc import account_marker
from core.services.permissions import Permission, Role, SignedInUser, can, parse_role
from core.store import audit_log, signature_requests, users
from core.store.engine import SessionFactory, write_with_retries
from core.store.signature_requests import SignatureRequestRecord
from core.types import JSONObject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "CLOCK_SKEW_S",
    "REQUEST_LIFETIME_S",
    "SIGNATURE_WINDOW_S",
    "ProviderReauthentication",
    "cancel",
    "fresh_enough",
    "pending",
    "request",
    "take",
    "verify",
]

#: How long after re-authenticating at the provider a person may complete the signature.
SIGNATURE_WINDOW_S: Final = 300.0
#: How long a request waits for its signer before it lapses.
REQUEST_LIFETIME_S: Final = 600.0
#: The provider's clock and Vigil's may differ by this much (an ``auth_time`` this far before the request counts).
CLOCK_SKEW_S: Final = 30.0
#: One past the largest ``auth_time`` a datetime can hold (year 9999); larger values are no time.
_AUTH_TIME_END: Final = 253_402_300_800


@dataclass(frozen=True, slots=True)
class ProviderReauthentication:
    """What the identity provider's newest ID token says about the person in this browser.

    Attributes
    ----------
    issuer : str
        The token's ``iss``.
    subject : str
        Its ``sub``: the Vigil username of an account the provider manages.
    authenticated_at : datetime or None
        Its ``auth_time`` (aware, UTC): when the person last entered their credentials there;
        None when the token does not say (such a token cannot sign).
    """

    issuer: str
    subject: str
    authenticated_at: datetime | None

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> ProviderReauthentication:
        """Read ``iss``, ``sub`` and ``auth_time`` (seconds since the epoch) from ID-token claims."""
        issuer, subject, moment = claims.get("iss"), claims.get("sub"), claims.get("auth_time")
        when = None
        if isinstance(moment, int | float) and not isinstance(moment, bool) and 0 < moment < _AUTH_TIME_END:
            when = datetime.fromtimestamp(float(moment), tz=UTC)
        return cls(issuer if isinstance(issuer, str) else "", subject if isinstance(subject, str) else "", when)

    def to_dict(self) -> JSONObject:
        """The facts a signed manifest records about how the signer was authenticated."""
        return {
            "method": "identity provider re-authentication",
            "issuer": self.issuer,
            "subject": self.subject,
            "authenticated_at": None if self.authenticated_at is None else self.authenticated_at.isoformat(),
        }


def request(  # noqa: PLR0913 - keyword-only; each is one fact of the request
    session: Session,
    signer: SignedInUser,
    *,
    meaning: str,
    subject: str,
    scope: JSONObject,
    now: datetime,
) -> SignatureRequestRecord:
    """Keep ``signer``'s request to sign ``subject`` (replacing one they had waiting), audited.

    The caller owns the transaction and has checked that the act may be signed now.
    """
    record = SignatureRequestRecord(signer.username, meaning, subject, scope, now)
    signature_requests.save(session, record)
    audit_log.append(
        session,
        actor=signer.username,
        action=AuditAction.SIGNATURE_REQUESTED,
        subject=subject,
        payload={"signer": signer.username, "meaning": meaning, "scope": scope, "method": "identity provider"},
        recorded_at=now.isoformat(),
    )
    return record


def pending(session_factory: SessionFactory, signer: str, *, now: datetime) -> SignatureRequestRecord | None:
    """``signer``'s request when one waits and has not lapsed (:data:`REQUEST_LIFETIME_S`)."""
    with session_factory() as session:
        record = signature_requests.get(session, signer)
    return record if record is not None and not _lapsed(record, now) else None


def cancel(session_factory: SessionFactory, signer: SignedInUser, *, now: Callable[[], datetime]) -> bool:
    """Withdraw ``signer``'s waiting request, audited; whether there was one."""

    def withdraw(session: Session) -> bool:
        record = signature_requests.get(session, signer.username, for_update=True)
        if record is None:
            return False
        signature_requests.discard(session, signer.username)
        moment = now()
        audit_log.append(
            session,
            actor=signer.username,
            action=AuditAction.SIGNATURE_WITHDRAWN,
            subject=record.subject,
            payload={"signer": signer.username, "meaning": record.meaning, "scope": record.scope},
            recorded_at=moment.isoformat(),
        )
        return True

    return write_with_retries(session_factory, withdraw)


def verify(
    session_factory: SessionFactory,
    signer: str,
    proof: ProviderReauthentication,
    *,
    permission: Permission,
    now: Callable[[], datetime],
) -> tuple[Role, SignatureRequestRecord]:
    """Check that ``proof`` signs the request ``signer`` has waiting; the signer's role and that request.

    Raises
    ------
    BadInputError
        No request waits for ``signer`` (or it lapsed): there is nothing to sign.
    SignatureFailedError
        The issuer does not manage the account, the subject is someone else, the role may not
        sign, or the re-authentication is missing, older than the request or older than
        :data:`SIGNATURE_WINDOW_S`; audited as ``signature_failed`` first.
    """
    moment = now()
    record = pending(session_factory, signer, now=moment)
    if record is None:
        raise BadInputError(
            f"no signature waits for {signer!r} (none was asked for, or it lapsed after "
            f"{REQUEST_LIFETIME_S / 60:.0f} minutes)"
        )
    with session_factory() as session:
        try:
            account: users.UserRecord | None = users.get_user(session, signer)
        except UnknownUserError:
            account = None
    role = _role(account)
    problem = _problem(account, role, signer, proof, permission) or _staleness(proof, record, moment)
    if problem is None and role is not None:
        return role, record
    reason = problem or "unknown signer"
    write_with_retries(session_factory, lambda s: _record_failure(s, signer, proof, record, reason, moment))
    raise SignatureFailedError(signer, reason)


def _role(account: users.UserRecord | None) -> Role | None:
    """The account's stored role; None for no account, or a role this release does not know (it never signs)."""
    if account is None:
        return None
    try:
        return parse_role(account.role)
    except UnknownRoleError:
        return None


def take(session: Session, signer: str, verified: SignatureRequestRecord) -> None:
    """Inside the act's transaction: delete the request ``verify`` checked, refusing one replaced since.

    Raises
    ------
    BadInputError
        The request was withdrawn or replaced (another tab) after it was verified.
    """
    current = signature_requests.get(session, signer, for_update=True)
    if current is None or current != verified:
        raise BadInputError("the signature request was withdrawn or replaced while it was being signed; sign again")
    signature_requests.discard(session, signer)


def _problem(
    account: users.UserRecord | None,
    role: Role | None,
    signer: str,
    proof: ProviderReauthentication,
    permission: Permission,
) -> str | None:
    """Why ``proof`` cannot vouch for ``signer`` at all (whom it names, and for which account); None when it can."""
    if account is None:
        return "unknown signer"
    if not account.password_hash.startswith(PROVIDER_ACCOUNT_PREFIX):
        return "the account signs with its Vigil password, not at the identity provider"
    if account.password_hash != account_marker(proof.issuer):
        return f"the identity provider {proof.issuer!r} does not manage this account"
    if proof.subject != signer:
        return f"the identity provider re-authenticated {proof.subject!r}, not the signer"
    if role is None or not can(SignedInUser(signer, role), permission):
        return f"role {account.role!r} may not {permission.value.replace('_', ' ')}"
    return None


def _staleness(proof: ProviderReauthentication, record: SignatureRequestRecord, now: datetime) -> str | None:
    """Why ``proof``'s authentication does not count for ``record`` at ``now``; None when it does."""
    when = proof.authenticated_at
    if when is None:
        return "the identity provider's token does not say when the person authenticated (no auth_time claim)"
    if when < record.requested_at - timedelta(seconds=CLOCK_SKEW_S):
        return (
            f"the identity provider last asked for the password at {when.isoformat()}, before the signature was "
            f"requested at {record.requested_at.isoformat()} (it answered from its own session; the provider "
            'section used for signatures needs prompt = "login")'
        )
    if (now - when).total_seconds() > SIGNATURE_WINDOW_S:
        return (
            f"the re-authentication at {when.isoformat()} is more than {SIGNATURE_WINDOW_S:.0f} s old; "
            "authenticate again to sign"
        )
    return None


def fresh_enough(proof: ProviderReauthentication, record: SignatureRequestRecord, now: datetime) -> bool:
    """Whether ``proof``'s authentication counts for ``record`` at ``now``: after the request, within the window."""
    return _staleness(proof, record, now) is None


def _lapsed(record: SignatureRequestRecord, moment: datetime) -> bool:
    return (moment - record.requested_at).total_seconds() > REQUEST_LIFETIME_S


def _record_failure(  # noqa: PLR0913 - one failure's every fact
    session: Session,
    signer: str,
    proof: ProviderReauthentication,
    record: SignatureRequestRecord,
    reason: str,
    moment: datetime,
) -> None:
    audit_log.append(
        session,
        actor=signer,
        action=AuditAction.SIGNATURE_FAILED,
        subject=record.subject,
        payload={"signer": signer, "meaning": record.meaning, "reason": reason, "authentication": proof.to_dict()},
        recorded_at=moment.isoformat(),
    )
