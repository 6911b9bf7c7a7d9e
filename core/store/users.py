"""People who sign in: username, printed full name, role and password hash (hashing lives in the caller)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import BadInputError, DuplicateUserError, UnknownUserError
from core.store.tables import UserRow

__all__ = ["UserRecord", "add_user", "get_user", "list_users", "set_password_hash", "set_profile"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user. ``password_hash`` is left out of ``repr`` so it never lands in a log.

    ``full_name`` is the printed name an electronic signature shows (21 CFR 11.50(a)(1)); users
    created before it was asked for carry their username there (migration ``0016``).
    """

    id: int
    username: str
    role: str
    password_hash: str = field(repr=False)
    created_at: datetime
    full_name: str

    @classmethod
    def from_row(cls, row: UserRow) -> UserRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(
            id=row.id,
            username=row.username,
            role=row.role,
            password_hash=row.password_hash,
            created_at=row.created_at,
            full_name=row.full_name,
        )


def add_user(  # noqa: PLR0913 - keyword-only; one per stored column
    session: Session,
    *,
    username: str,
    role: str,
    password_hash: str,
    now: datetime,
    full_name: str | None = None,
) -> UserRecord:
    """Stage a new user. The caller owns the transaction.

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    username : str
        Unique sign-in name; surrounding whitespace is removed.
    role : str
        One of the roles ``core.services`` defines (radiologist, champion, ...).
    password_hash : str
        An Argon2 hash; this module never sees a password.
    now : datetime
        Aware creation time.
    full_name : str, optional
        The printed name for signatures, already checked by the caller; the username when None
        (accounts Vigil creates itself: demo users, the benchmark's reader).

    Raises
    ------
    BadInputError
        If ``username`` or ``full_name`` is empty.
    DuplicateUserError
        If ``username`` is taken.
    """
    username = username.strip()
    if not username:
        raise BadInputError("username must not be empty")
    printed = username if full_name is None else full_name.strip()
    if not printed:
        raise BadInputError(f"the full name of {username!r} must not be empty")
    if _find(session, username) is not None:
        raise DuplicateUserError(username)
    row = UserRow(username=username, role=role, password_hash=password_hash, created_at=now, full_name=printed)
    session.add(row)
    session.flush()
    return UserRecord.from_row(row)


def get_user(session: Session, username: str) -> UserRecord:
    """Look a user up by username.

    Raises
    ------
    UnknownUserError
        If there is no such user.
    """
    row = _find(session, username.strip())
    if row is None:
        raise UnknownUserError(username)
    return UserRecord.from_row(row)


def list_users(session: Session) -> list[UserRecord]:
    """Every user, sorted by username."""
    return [UserRecord.from_row(row) for row in session.scalars(select(UserRow).order_by(UserRow.username))]


def _find(session: Session, username: str) -> UserRow | None:
    return session.scalars(select(UserRow).where(UserRow.username == username)).one_or_none()


def set_password_hash(session: Session, username: str, password_hash: str) -> None:
    """Replace a user's stored password hash. The caller owns the transaction.

    Raises
    ------
    UnknownUserError
        If there is no such user.
    """
    result = session.execute(
        update(UserRow).where(UserRow.username == username.strip()).values(password_hash=password_hash)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise UnknownUserError(username)


def set_profile(session: Session, username: str, *, role: str, full_name: str) -> None:
    """Replace a user's role and printed name (an identity provider's account follows its claims).

    The caller owns the transaction and has checked both values.

    Raises
    ------
    UnknownUserError
        If there is no such user.
    """
    result = session.execute(
        update(UserRow).where(UserRow.username == username.strip()).values(role=role, full_name=full_name)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise UnknownUserError(username)
