"""Search the audit ledger: filtered, paged, newest first, rows read back exactly as stored.

Streaming and verifying the whole ledger live in :mod:`core.store.audit_log`; this module answers
the Audit page's questions (who did what to which study or model version, and when) one page at
a time, with the filtering, counting and paging in SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, Row, and_, func, or_, select, true
from sqlalchemy.orm import Session

from core.store.tables import AuditEntryRow

__all__ = ["MODEL_VERSION_KEY", "AuditFilter", "StoredEntry", "get_entry", "search"]

#: The payload key that names the model version an entry concerns (predictions, feedback, ...).
MODEL_VERSION_KEY: Final = "model_version"

_COLUMNS: Final = (
    AuditEntryRow.seq,
    AuditEntryRow.recorded_at,
    AuditEntryRow.actor,
    AuditEntryRow.action,
    AuditEntryRow.subject,
    AuditEntryRow.payload_json,
    AuditEntryRow.prev_hash,
    AuditEntryRow.entry_hash,
)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One ledger row as stored: the payload stays the stored text, so an edited row is shown, not hidden."""

    seq: int
    recorded_at: str
    actor: str
    action: str
    subject: str
    payload_json: str
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What :func:`search` matches; None matches anything. Values are compared exactly.

    Attributes
    ----------
    actor, action, subject : str or None
        Equal to the stored column.
    model_version : str or None
        The entry's payload holds ``"model_version": <this>`` (at any depth), or its subject is
        this version (a model's registration and serving changes are about the version itself).
    recorded_from, recorded_to : str or None
        Inclusive bounds on ``recorded_at``, as UTC ISO-8601 text written the way entries write
        it (``core.audit.chain.to_recorded_at``), so that text order is time order.
    """

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    model_version: str | None = None
    recorded_from: str | None = None
    recorded_to: str | None = None


def search(session: Session, flt: AuditFilter, *, limit: int, offset: int) -> tuple[list[StoredEntry], int]:
    """One page of the entries ``flt`` matches, newest (highest ``seq``) first, and how many match.

    Parameters
    ----------
    limit, offset : int
        The page: at most ``limit`` entries after skipping ``offset`` matches (the caller checks
        the ranges).

    Returns
    -------
    tuple of (list of StoredEntry, int)
        The page and the total number of matching entries.
    """
    where = _where(flt)
    total = session.scalars(select(func.count()).select_from(AuditEntryRow).where(where)).one()
    rows = session.execute(
        select(*_COLUMNS).where(where).order_by(AuditEntryRow.seq.desc()).limit(limit).offset(offset)
    ).all()
    return [_to_stored(row) for row in rows], int(total)


def get_entry(session: Session, seq: int) -> StoredEntry | None:
    """The entry ``seq`` as stored, or None when there is none."""
    row = session.execute(select(*_COLUMNS).where(AuditEntryRow.seq == seq)).one_or_none()
    return None if row is None else _to_stored(row)


def _where(flt: AuditFilter) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if flt.actor is not None:
        clauses.append(AuditEntryRow.actor == flt.actor)
    if flt.action is not None:
        clauses.append(AuditEntryRow.action == flt.action)
    if flt.subject is not None:
        clauses.append(AuditEntryRow.subject == flt.subject)
    if flt.model_version is not None:
        clauses.append(
            or_(
                AuditEntryRow.subject == flt.model_version,
                AuditEntryRow.payload_json.contains(_payload_needle(flt.model_version), autoescape=True),
            )
        )
    if flt.recorded_from is not None:
        clauses.append(AuditEntryRow.recorded_at >= flt.recorded_from)
    if flt.recorded_to is not None:
        clauses.append(AuditEntryRow.recorded_at <= flt.recorded_to)
    return and_(true(), *clauses)


def _payload_needle(version: str) -> str:
    # Payloads are stored as canonical JSON (sorted keys, no whitespace, no ASCII escaping), so a
    # key and its string value always appear as exactly this text; the closing quote stops
    # "v1" matching "v1.2", and a quote inside a string value is escaped, so text that merely
    # mentions the key never matches.
    return f'"{MODEL_VERSION_KEY}":' + json.dumps(version, ensure_ascii=False)


def _to_stored(row: Row[int, str, str, str, str, str, str, str]) -> StoredEntry:
    return StoredEntry(
        seq=row.seq,
        recorded_at=row.recorded_at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        payload_json=row.payload_json,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )
