"""People who sign in: username, role and password hash (hashing lives in the caller)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import BadInputError, DuplicateUserError, UnknownUserError
from core.store.tables import UserRow

__all__ = ["UserRecord", "add_user", "get_user", "list_users", "set_password_hash"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user. ``password_hash`` is left out of ``repr`` so it never lands in a log."""

    id: int
    username: str
    role: str
    password_hash: str = field(repr=False)
    created_at: datetime

    @classmethod
    def from_row(cls, row: UserRow) -> UserRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(
            id=row.id,
            username=row.username,
            role=row.role,
            password_hash=row.password_hash,
            created_at=row.created_at,
        )


def add_user(session: Session, *, username: str, role: str, password_hash: str, now: datetime) -> UserRecord:
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

    Raises
    ------
    BadInputError
        If ``username`` is empty.
    DuplicateUserError
        If ``username`` is taken.
    """
    username = username.strip()
    if not username:
        raise BadInputError("username must not be empty")
    if _find(session, username) is not None:
        raise DuplicateUserError(username)
    row = UserRow(username=username, role=role, password_hash=password_hash, created_at=now)
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
