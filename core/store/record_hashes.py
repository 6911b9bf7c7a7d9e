"""Read back the rows the ledger hashes, and the audit entries that record their hashes.

The hashing itself is pure (:mod:`core.audit.records`); this module only selects the fixed
fields of each kind as the database returns them (column selects, never an ORM object a session
may still hold in memory), so that what a writer hashes and what ``vigil audit verify`` re-hashes
are read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Generator, Iterable
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.events import AuditAction
from core.audit.records import RECORD_FIELDS, RecordKind, record_sha256
from core.store.tables import AuditEntryRow, ExplanationRow, FeedbackRow, OutcomeRow, PredictionRow
from core.types import JSONObject, JSONValue

__all__ = [
    "entry_payload",
    "hash_map",
    "iter_record_entries",
    "iter_records",
    "record_fields",
    "record_hashes",
    "snapshot",
]

#: Rows fetched per round trip while streaming.
STREAM_BATCH: Final = 1000
#: Ids per ``IN (...)`` (SQLite caps bound parameters per statement).
_ID_CHUNK: Final = 500

_Table = type[PredictionRow] | type[ExplanationRow] | type[FeedbackRow] | type[OutcomeRow]

_TABLES: Final[dict[RecordKind, _Table]] = {
    RecordKind.PREDICTION: PredictionRow,
    RecordKind.EXPLANATION: ExplanationRow,
    RecordKind.FEEDBACK: FeedbackRow,
    RecordKind.OUTCOME: OutcomeRow,
}


def _columns(kind: RecordKind) -> list[Any]:
    table = _TABLES[kind]
    return [getattr(table, name) for name in RECORD_FIELDS[kind]]


def record_fields(session: Session, kind: RecordKind, ids: Collection[int]) -> dict[int, dict[str, object]]:
    """The hashed fields of the rows ``ids`` of ``kind``, read from the database, by id (absent ids left out)."""
    table = _TABLES[kind]
    names = RECORD_FIELDS[kind]
    ordered = sorted(set(ids))
    found: dict[int, dict[str, object]] = {}
    for start in range(0, len(ordered), _ID_CHUNK):
        query = select(*_columns(kind)).where(table.id.in_(ordered[start : start + _ID_CHUNK]))
        for row in session.execute(query):
            fields = dict(zip(names, row, strict=True))
            found[row.id] = fields
    return found


def record_hashes(session: Session, kind: RecordKind, ids: Collection[int]) -> dict[int, str]:
    """:func:`~core.audit.records.record_sha256` of each row ``ids`` as stored (flush first).

    Raises
    ------
    LookupError
        If a row of ``ids`` does not exist (not flushed, or not written).
    """
    fields = record_fields(session, kind, ids)
    missing = sorted(set(ids) - set(fields))
    if missing:
        raise LookupError(f"no {kind} rows with ids {missing[:10]} to hash (flush before hashing)")
    return {row_id: record_sha256(kind, f) for row_id, f in fields.items()}


def hash_map(session: Session, kind: RecordKind, ids: Collection[int]) -> dict[str, JSONValue]:
    """``{"<id>": "<hex>"}`` of the rows ``ids``, for a bulk entry's ``outcome_sha256`` (ids ascending).

    Raises
    ------
    LookupError
        As :func:`record_hashes`.
    """
    return {str(row_id): digest for row_id, digest in sorted(record_hashes(session, kind, ids).items())}


def iter_records(session: Session, kind: RecordKind) -> Generator[dict[str, object]]:
    """Stream every row of ``kind`` in id order as its hashed fields."""
    names = RECORD_FIELDS[kind]
    query = select(*_columns(kind)).order_by(_TABLES[kind].id).execution_options(yield_per=STREAM_BATCH)
    result = session.execute(query)
    try:
        for row in result:
            yield dict(zip(names, row, strict=True))
    finally:
        result.close()


def iter_record_entries(session: Session, actions: Iterable[AuditAction]) -> Generator[tuple[int, str, JSONObject]]:
    """Stream ``(seq, action, payload)`` of the entries of ``actions`` in ``seq`` order.

    An entry whose payload no longer parses as a JSON object is skipped: the chain check
    (:func:`core.store.audit_log.verify`) reports it.
    """
    query = (
        select(AuditEntryRow.seq, AuditEntryRow.action, AuditEntryRow.payload_json)
        .where(AuditEntryRow.action.in_([str(a) for a in actions]))
        .order_by(AuditEntryRow.seq)
        .execution_options(yield_per=STREAM_BATCH)
    )
    result = session.execute(query)
    try:
        for seq, action, text in result:
            payload = _parse(text)
            if payload is not None:
                yield seq, action, payload
    finally:
        result.close()


def entry_payload(session: Session, seq: int) -> JSONObject | None:
    """The payload of entry ``seq``; None when it is missing or no longer a JSON object."""
    text = session.scalars(select(AuditEntryRow.payload_json).where(AuditEntryRow.seq == seq)).one_or_none()
    return None if text is None else _parse(text)


def snapshot(session: Session) -> None:
    """Make the session's reads one consistent snapshot (before its first query).

    SQLite transactions already are one (Vigil begins them ``IMMEDIATE``); PostgreSQL's default
    READ COMMITTED is not, so a row and its entry committed between two queries could look
    unaudited. There the transaction runs REPEATABLE READ.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _parse(text: str) -> JSONObject | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
