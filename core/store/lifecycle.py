"""The open -> acknowledged -> resolved life shared by drift alerts and incidents (rows only).

Both tables carry the same columns for who moved a record, when and why; the rules of the moves
live here once. The caller owns the transaction and turns a refused move into its own error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol

__all__ = ["ACKNOWLEDGED", "OPEN", "RESOLVED", "Handled", "acknowledge_row", "resolve_row"]

OPEN: Final = "open"
ACKNOWLEDGED: Final = "acknowledged"
RESOLVED: Final = "resolved"


class Handled(Protocol):
    """A row with a status and the who, when and why of each move."""

    status: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None


#: Builds the caller's error for a refused move from (current status, wanted status).
Refusal = Callable[[str, str], Exception]


def acknowledge_row(row: Handled, *, by: str, note: str, now: datetime, refuse: Refusal) -> None:
    """Move an open row to acknowledged; anything else is refused."""
    if row.status != OPEN:
        raise refuse(row.status, ACKNOWLEDGED)
    row.status = ACKNOWLEDGED
    row.acknowledged_by, row.acknowledged_at, row.acknowledge_note = by, now, note


def resolve_row(row: Handled, *, by: str, note: str, now: datetime, refuse: Refusal) -> None:
    """Move an open or acknowledged row to resolved; a resolved one is refused."""
    if row.status == RESOLVED:
        raise refuse(row.status, RESOLVED)
    row.status = RESOLVED
    row.resolved_by, row.resolved_at, row.resolution_note = by, now, note
