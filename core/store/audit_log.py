"""The audit ledger on disk: append in the caller's transaction, stream, verify.

Hashing and verification live in ``core.audit.chain``; this module only stores entries
and reads them back exactly as hashed.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn, cast

from sqlalchemy import Select, Table, event, func, insert, select
from sqlalchemy.orm import Session

from core.audit.chain import (
    GENESIS_HASH,
    ChainCheck,
    entry_problem,
    json_string,
    link_as_stored,
    stored_body_hash,
)
from core.audit.events import AuditAction, AuditEntry
from core.store.tables import AuditEntryRow

if TYPE_CHECKING:
    from core.types import JSONValue

__all__ = [
    "HEAD_LOCK_KEY",
    "EntryDraft",
    "append",
    "append_many",
    "count_entries",
    "head_lock_statement",
    "iter_entries",
    "last_entry",
    "ledger_size",
    "lock_head",
    "verify",
]

#: Rows fetched per round trip while streaming the ledger.
STREAM_BATCH: Final = 1000

#: PostgreSQL advisory-lock key that serializes appends: any fixed bigint works as long as
#: nothing else uses it; this one is the first 8 bytes of SHA-256("vigil.audit_entry.head").
HEAD_LOCK_KEY: Final = 412449951797191755

# Plain table columns and statements built once: Core statements skip the ORM's per-row loading
# and per-call statement construction, which cost several times the hashing (see BENCHMARKS.md).
_TABLE: Final = cast(Table, AuditEntryRow.__table__)
_COLUMNS: Final = (
    _TABLE.c.seq,
    _TABLE.c.recorded_at,
    _TABLE.c.actor,
    _TABLE.c.action,
    _TABLE.c.subject,
    _TABLE.c.payload_json,
    _TABLE.c.prev_hash,
    _TABLE.c.entry_hash,
)
_LAST: Final = select(*_COLUMNS).order_by(_TABLE.c.seq.desc()).limit(1)
_HEAD: Final = select(_TABLE.c.seq, _TABLE.c.entry_hash).order_by(_TABLE.c.seq.desc()).limit(1)
_STREAM: Final = select(*_COLUMNS).order_by(_TABLE.c.seq)
_INSERT: Final = insert(_TABLE)
#: :data:`_STREAM` as plain SQL, the same on every database (no parameters, no quoting).
_STREAM_SQL: Final = f"SELECT {', '.join(c.name for c in _COLUMNS)} FROM {_TABLE.name} ORDER BY seq"


class _Head(NamedTuple):
    """What linking needs of the last entry: its position and hash (no payload to parse)."""

    seq: int
    entry_hash: str


class _Unknown:
    """Marks a head this transaction has not read yet (None is a real head: the empty ledger)."""


_UNKNOWN: Final = _Unknown()
#: ``session.info`` key of the head this transaction appended last, with the transaction it holds for.
_HEAD_KEY: Final = "vigil.audit_log.head"


def _innermost(session: Session) -> object:
    return session.get_nested_transaction() or session.get_transaction()


def _head_of_this_transaction(session: Session) -> _Head | None | _Unknown:
    """The head this very (sub)transaction appended, when it appended one; else :data:`_UNKNOWN`.

    Within one write transaction no one else can append (SQLite's ``BEGIN IMMEDIATE``, the
    PostgreSQL head lock, both held to its end), so the entry it appended last is still the head
    and need not be read back. Any transaction or savepoint ending, committed or rolled back,
    forgets it (:func:`_forget_head`), so a rolled-back append is never linked to.
    """
    cached = session.info.get(_HEAD_KEY)
    if cached is None or cached[0] is not _innermost(session):
        return _UNKNOWN
    head: _Head = cached[1]
    return head


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction: object) -> None:
    session.info.pop(_HEAD_KEY, None)


class _UnreadableRowError(ValueError):
    """A stored row that cannot be turned back into an entry (tampered payload text)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit row seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """One entry to append, before it is linked: as the keyword arguments of :func:`append`."""

    actor: str
    action: AuditAction
    subject: str
    payload: Mapping[str, JSONValue]
    recorded_at: str


def append(
    session: Session,
    *,
    actor: str,
    action: AuditAction,
    subject: str,
    payload: Mapping[str, JSONValue],
    recorded_at: str,
) -> AuditEntry:
    """Link a new entry to the current last one and stage it in the caller's transaction.

    Call it inside the same ``session_factory.begin()`` block as the action it records, so
    both commit or neither does. Writers are serialized between reading the last entry and
    inserting (:func:`lock_head`), so concurrent appends queue instead of forking the chain;
    should two ever read the same last entry, the second fails on the unique ``seq`` /
    ``entry_hash`` rather than fork (``write_with_retries`` runs such a transaction again).

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    actor, action, subject, payload
        As in :class:`~core.audit.events.AuditEntry`.
    recorded_at : str
        UTC ISO-8601 (``core.audit.chain.to_recorded_at(now)``).

    Returns
    -------
    AuditEntry
        The staged entry.

    Raises
    ------
    ValueError
        If ``recorded_at`` is not UTC ISO-8601 or ``payload`` holds NaN or an infinity.
    sqlalchemy.exc.IntegrityError
        If another transaction appended after the same entry first.
    """
    draft = EntryDraft(actor=actor, action=action, subject=subject, payload=payload, recorded_at=recorded_at)
    return append_many(session, [draft])[0]


def append_many(session: Session, drafts: Sequence[EntryDraft]) -> list[AuditEntry]:
    """:func:`append` each draft in order, linked one to the next, staged with one statement.

    A batch of actions recorded in one transaction (a batch of predictions, their maps) writes
    its entries in one round trip instead of one each. The ledger is the one :func:`append`
    called per draft would leave; every draft is checked before anything is staged.

    Returns
    -------
    list of AuditEntry
        The staged entries, in the order given.
    """
    if not drafts:
        return []
    # Rows the caller staged go first, as the ORM's autoflush before reading the head used to send them.
    session.flush()
    prev = _head_of_this_transaction(session)
    if prev is _UNKNOWN:
        lock_head(session)
        row = session.execute(_HEAD).one_or_none()
        prev = None if row is None else _Head(row.seq, row.entry_hash)
    assert not isinstance(prev, _Unknown)
    entries: list[AuditEntry] = []
    rows: list[dict[str, object]] = []
    for d in drafts:
        entry, payload_json = link_as_stored(
            prev, recorded_at=d.recorded_at, actor=d.actor, action=d.action, subject=d.subject, payload=d.payload
        )
        entries.append(entry)
        rows.append(
            {
                "seq": entry.seq,
                "recorded_at": entry.recorded_at,
                "actor": entry.actor,
                "action": str(entry.action),
                "subject": entry.subject,
                "payload_json": payload_json,
                "prev_hash": entry.prev_hash,
                "entry_hash": entry.entry_hash,
            }
        )
        prev = _Head(entry.seq, entry.entry_hash)
    # Executed at once: the unique constraints fire here, inside the caller's transaction.
    session.execute(_INSERT, rows)
    session.info[_HEAD_KEY] = (_innermost(session), prev)
    return entries


def lock_head(session: Session) -> None:
    """Hold the ledger's head until the caller's transaction ends, so appends never interleave.

    On PostgreSQL this takes the transaction-level advisory lock :data:`HEAD_LOCK_KEY`: a second
    writer waits here, and under READ COMMITTED its next read of the last entry sees the first
    writer's committed entry. A row lock (``SELECT ... FOR UPDATE`` on the last entry) would not
    do: an empty ledger has no row to lock, and a waiter re-reads the row it locked rather than
    the newer one. On SQLite nothing is needed, because every write transaction began with
    ``BEGIN IMMEDIATE`` (:mod:`core.store.engine`) and already excludes other writers. Other
    databases rely on the unique ``seq`` and ``entry_hash``.

    Parameters
    ----------
    session : Session
        The open write session the append happens in.
    """
    statement = head_lock_statement(session.get_bind().dialect.name)
    if statement is not None:
        session.execute(statement)


def head_lock_statement(dialect_name: str) -> Select[tuple[object]] | None:
    """The statement :func:`lock_head` runs on ``dialect_name``, or None where none is needed.

    Examples
    --------
    >>> from sqlalchemy.dialects import postgresql
    >>> print(head_lock_statement("postgresql").compile(dialect=postgresql.dialect(),
    ...       compile_kwargs={"literal_binds": True}))
    SELECT pg_advisory_xact_lock(412449951797191755) AS pg_advisory_xact_lock_1
    >>> head_lock_statement("sqlite") is None
    True
    """
    if dialect_name == "postgresql":
        return select(func.pg_advisory_xact_lock(HEAD_LOCK_KEY))
    return None


def last_entry(session: Session) -> AuditEntry | None:
    """Return the newest entry, or None for an empty ledger."""
    row = session.execute(_LAST).one_or_none()
    return None if row is None else _to_entry(row)


def iter_entries(session: Session) -> Generator[AuditEntry]:
    """Stream every entry in ``seq`` order without loading the whole ledger.

    Raises
    ------
    ValueError
        If a stored row's payload is not a JSON object (the row was edited outside Vigil);
        :func:`verify` reports such a row instead of raising.
    """
    result = session.execute(_STREAM, execution_options={"yield_per": STREAM_BATCH})
    try:
        for row in result:
            yield _to_entry(row)
    finally:
        result.close()  # release the cursor when the caller stops early


def ledger_size(session: Session) -> int:
    """``seq`` of the newest entry plus one (0 for an empty ledger); one indexed read.

    This is the tree size a checkpoint of the whole ledger would have; unlike
    :func:`count_entries` it does not scan the table.
    """
    row = session.execute(_HEAD).one_or_none()
    return 0 if row is None else int(row.seq) + 1


def count_entries(session: Session) -> int:
    """Count the stored entries."""
    return session.scalars(select(func.count()).select_from(AuditEntryRow)).one()


def verify(session: Session, *, through: int | None = None) -> ChainCheck:
    """Verify the stored ledger from seq 0: the first edited, deleted, inserted or reordered row.

    With ``through``, stop after position ``through``: a reader opening one entry needs the chain
    up to it, not the rows written since.

    Each row is first hashed as stored (:func:`core.audit.chain.stored_entry_hash`, no JSON
    parsing); a row that does not verify that way, or that is not plain text and numbers, is
    judged as :func:`core.audit.chain.verify_chain` judges it (payload parsed, every field
    re-serialized), so the outcome and its reason are those of ``verify_chain`` over
    :func:`iter_entries`. The fast path cannot accept a row the slow one refuses: it accepts
    only bytes that hash to the stored ``entry_hash``, and with the link and ``seq`` checked and
    every other field a JSON string literal between fixed keys, those bytes are the original
    canonical body, field for field.

    Returns
    -------
    ChainCheck
        As :func:`core.audit.chain.verify_chain`; a row whose payload text no longer parses
        is reported at its position too.
    """
    expected_prev = GENESIS_HASH
    prev_literal = f'"{GENESIS_HASH}"'  # the previous hash as a JSON string: hex needs no escaping
    literals: dict[str, str] = {}  # each distinct actor and action, encoded once
    position = 0
    for row in _raw_rows(session):
        if through is not None and position > through:
            break
        seq, recorded_at, actor, action, subject, payload_json, prev_hash, entry_hash = row
        try:  # the fast path: hashed as stored; anything it does not confirm is judged the slow way
            as_stored = (
                seq == position
                and prev_hash == expected_prev
                and type(payload_json) is str
                and entry_hash
                == stored_body_hash(
                    seq,
                    recorded_at,
                    literals.get(actor) or _literal(literals, actor),
                    literals.get(action) or _literal(literals, action),
                    subject,
                    payload_json,
                    prev_literal,
                )
            )
        except (TypeError, ValueError):
            as_stored = False
        if not as_stored:
            try:
                problem = entry_problem(_to_entry(row), expected_seq=position, expected_prev=expected_prev)
            except _UnreadableRowError as exc:
                problem = exc.reason
            if problem is not None:
                return ChainCheck(False, checked=position + 1, first_bad_seq=position, reason=problem)
        expected_prev = entry_hash
        prev_literal = f'"{entry_hash}"' if type(entry_hash) is str else ""
        position += 1
    return ChainCheck(True, checked=position)


def _literal(cache: dict[str, str], value: str) -> str:
    # Actors and actions repeat across the whole ledger; a tampered non-text value raises TypeError.
    found = cache.get(value)
    if found is None:
        found = cache[value] = json_string(value)
    return found


def _raw_rows(session: Session) -> Iterator[tuple[int, str, str, str, str, str, str, str]]:
    """Every row as the driver returns it, in ``seq`` order, in batches, on the session's connection.

    On SQLite a plain DB-API cursor: verification reads each row once and needs none of
    SQLAlchemy's per-row machinery, which costs as much as the hashing itself. Elsewhere the
    rows stream through SQLAlchemy (on PostgreSQL a server-side cursor; a plain psycopg cursor
    would load the whole ledger into memory first).
    """
    if session.get_bind().dialect.name != "sqlite":
        result = session.execute(_STREAM, execution_options={"yield_per": STREAM_BATCH})
        try:
            for row in result:
                yield tuple(row)
        finally:
            result.close()
        return
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_STREAM_SQL)
        while batch := cursor.fetchmany(STREAM_BATCH):
            yield from batch
    finally:
        cursor.close()


def _to_entry(row: Sequence[Any]) -> AuditEntry:
    seq, recorded_at, actor, action, subject, payload_json, prev_hash, entry_hash = row
    return AuditEntry(
        seq=seq,
        recorded_at=recorded_at,
        actor=actor,
        action=_action(action),
        subject=subject,
        payload=_payload(seq, payload_json),
        prev_hash=prev_hash,
        entry_hash=entry_hash,
    )


def _action(value: str) -> AuditAction | str:
    # An unknown value (a newer Vigil, or tampering) stays text so verification can judge it.
    try:
        return AuditAction(value)
    except ValueError:
        return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not canonical JSON")


def _payload(seq: int, text: str) -> dict[str, JSONValue]:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise _UnreadableRowError(seq, f"payload_json is not valid canonical JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _UnreadableRowError(seq, f"payload_json is a {type(value).__name__}, not a JSON object")
    return value
