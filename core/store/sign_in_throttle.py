"""Failed sign-in counters per key (``user:NAME``, ``address:IP``): the state the throttle reads and writes.

The only mutable security state Vigil keeps outside the ledger: the ledger records what happened
(every failure that cost something, and how many attempts a lock refused); this table says what
is locked now. A row is deleted when its key signs in successfully.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.store.tables import SignInThrottleRow

__all__ = ["ThrottleRecord", "clear", "read", "save"]


@dataclass(frozen=True, slots=True)
class ThrottleRecord:
    """One key's stored counters."""

    key: str
    failures: int
    locked_until: datetime | None
    refused: int


def read(session: Session, keys: Iterable[str], *, for_update: bool = False) -> dict[str, ThrottleRecord]:
    """The stored counters of ``keys`` (absent keys have none), optionally locked until the transaction ends."""
    query = select(SignInThrottleRow).where(SignInThrottleRow.key.in_(list(keys)))
    if for_update:
        query = query.with_for_update()
    return {
        row.key: ThrottleRecord(row.key, row.failures, row.locked_until, row.refused) for row in session.scalars(query)
    }


def save(session: Session, record: ThrottleRecord, *, now: datetime) -> None:
    """Insert or replace one key's counters (the caller owns the transaction)."""
    row = session.get(SignInThrottleRow, record.key)
    if row is None:
        row = SignInThrottleRow(key=record.key)
        session.add(row)
    row.failures, row.locked_until, row.refused, row.updated_at = (
        record.failures,
        record.locked_until,
        record.refused,
        now,
    )
    session.flush()


def clear(session: Session, keys: Iterable[str]) -> None:
    """Forget ``keys`` (after a successful sign-in)."""
    session.execute(delete(SignInThrottleRow).where(SignInThrottleRow.key.in_(list(keys))))
