"""Contract tests for core.store.audit_log: append, stream, and tampering found in the table itself."""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit.chain import GENESIS_HASH, to_recorded_at, verify_chain
from core.audit.events import AuditAction, AuditEntry
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow
from tests.core.audit.insider import drop_audit_guards

N = 10


def _append(session: Session, i: int, now: datetime) -> AuditEntry:
    return audit_log.append(
        session,
        actor=f"user{i % 3}",
        action=AuditAction.PREDICTION_MADE if i % 2 else AuditAction.STUDY_INGESTED,
        subject=f"1.2.3.{i}",
        payload={"i": i, "score": i / 10, "site": "north", "flags": [True, None]},
        recorded_at=to_recorded_at(now + timedelta(seconds=i)),
    )


@pytest.fixture
def ledger(session_factory: SessionFactory, now: datetime) -> list[AuditEntry]:
    """Commit N entries, one transaction each, as services would."""
    entries = []
    for i in range(N):
        with session_factory.begin() as session:
            entries.append(_append(session, i, now))
    return entries


def _verify(session_factory: SessionFactory) -> tuple[bool, int | None]:
    with session_factory() as session:
        check = audit_log.verify(session)
    return check.ok, check.first_bad_seq


def _as_insider(session_factory: SessionFactory) -> None:
    # The database refuses UPDATE and DELETE on the ledger; these tests play someone who can drop that guard.
    bind = session_factory.kw["bind"]
    assert isinstance(bind, Engine)
    drop_audit_guards(bind)


def _tamper(session_factory: SessionFactory, seq: int, **values: object) -> None:
    _as_insider(session_factory)
    with session_factory.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == seq).values(**values))


# --- append and read back ------------------------------------------------------------------


def test_appended_entries_read_back_exactly(session_factory: SessionFactory, ledger: list[AuditEntry]) -> None:
    # Execute
    with session_factory() as session:
        stored = list(audit_log.iter_entries(session))
        last = audit_log.last_entry(session)
        count = audit_log.count_entries(session)
        check = audit_log.verify(session)

    # Assert
    assert stored == ledger
    assert [e.seq for e in stored] == list(range(N))
    assert stored[0].prev_hash == GENESIS_HASH
    assert all(isinstance(e.action, AuditAction) for e in stored)
    assert last == ledger[-1]
    assert count == N
    assert (check.ok, check.checked) == (True, N)
    assert verify_chain(stored).ok


def test_empty_ledger(session_factory: SessionFactory) -> None:
    # Execute
    with session_factory() as session:
        last = audit_log.last_entry(session)
        check = audit_log.verify(session)

    # Assert
    assert last is None
    assert (check.ok, check.checked) == (True, 0)


def test_append_links_to_the_last_committed_entry(
    session_factory: SessionFactory, ledger: list[AuditEntry], now: datetime
) -> None:
    # Execute
    with session_factory.begin() as session:
        new = _append(session, N, now)

    # Assert
    assert new.seq == N
    assert new.prev_hash == ledger[-1].entry_hash


def test_appends_in_one_transaction_chain_together(session_factory: SessionFactory, now: datetime) -> None:
    # Execute: one user action that writes two entries
    with session_factory.begin() as session:
        first = _append(session, 0, now)
        second = _append(session, 1, now)

    # Assert
    assert (first.seq, second.seq) == (0, 1)
    assert second.prev_hash == first.entry_hash
    assert _verify(session_factory) == (True, None)


def test_append_refuses_nan_and_stages_nothing(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with pytest.raises(ValueError, match="NaN"), session_factory.begin() as session:
        audit_log.append(
            session,
            actor="system",
            action=AuditAction.PREDICTION_MADE,
            subject="1.2.3",
            payload={"score": math.nan},
            recorded_at=to_recorded_at(now),
        )

    # Assert
    with session_factory() as session:
        assert audit_log.count_entries(session) == 0


def _draft(i: int, now: datetime) -> audit_log.EntryDraft:
    return audit_log.EntryDraft(
        actor=f"user{i % 3}",
        action=AuditAction.PREDICTION_MADE if i % 2 else AuditAction.STUDY_INGESTED,
        subject=f"1.2.3.{i}",
        payload={"i": i, "score": i / 10, "site": "north", "flags": [True, None]},
        recorded_at=to_recorded_at(now + timedelta(seconds=i)),
    )


def test_append_many_leaves_the_ledger_one_append_per_entry_leaves(
    session_factory: SessionFactory, ledger: list[AuditEntry], tmp_path: Path, now: datetime
) -> None:
    # Prepare: a second ledger with the same first entries, appended one by one
    other = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'other.db'}"))
    migrate(other.kw["bind"])
    for i in range(N + 4):
        with other.begin() as session:
            _append(session, i, now)

    # Execute: the last four in one batch, after an append in the same transaction
    with session_factory.begin() as session:
        first = _append(session, N, now)
        batch = audit_log.append_many(session, [_draft(i, now) for i in range(N + 1, N + 4)])
        assert audit_log.append_many(session, []) == []

    # Assert: linked to what came before, and the same rows the other ledger holds
    assert [e.seq for e in batch] == [N + 1, N + 2, N + 3]
    assert batch[0].prev_hash == first.entry_hash
    with session_factory() as mine, other() as theirs:
        assert list(audit_log.iter_entries(mine)) == list(audit_log.iter_entries(theirs))
    assert _verify(session_factory) == (True, None)


def test_append_many_checks_every_draft_before_it_stages_any(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare: the third of three drafts holds NaN
    drafts = [_draft(0, now), _draft(1, now), dataclasses.replace(_draft(2, now), payload={"score": math.nan})]

    # Execute
    with pytest.raises(ValueError, match="NaN"), session_factory.begin() as session:
        audit_log.append_many(session, drafts)

    # Assert
    with session_factory() as session:
        assert audit_log.count_entries(session) == 0


def test_iter_entries_streams_lazily(session_factory: SessionFactory, ledger: list[AuditEntry]) -> None:
    # Execute: stop after three entries; the cursor is released when the generator closes
    with session_factory() as session:
        stream = audit_log.iter_entries(session)
        head = [next(stream) for _ in range(3)]
        stream.close()
        again = audit_log.count_entries(session)

    # Assert
    assert head == ledger[:3]
    assert again == N


# --- uniqueness makes concurrent appends fail loudly ---------------------------------------


def test_a_second_entry_with_the_same_seq_is_rejected(
    session_factory: SessionFactory, ledger: list[AuditEntry]
) -> None:
    # Prepare: what a concurrent writer that read the same last entry would insert
    forged = ledger[-1]

    # Execute / Assert
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(
            AuditEntryRow(
                seq=forged.seq,
                recorded_at=forged.recorded_at,
                actor="other",
                action=str(forged.action),
                subject=forged.subject,
                payload_json="{}",
                prev_hash=forged.prev_hash,
                entry_hash="f" * 64,
            )
        )


def test_a_repeated_entry_hash_is_rejected(session_factory: SessionFactory, ledger: list[AuditEntry]) -> None:
    # Execute / Assert
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(
            AuditEntryRow(
                seq=N,
                recorded_at=ledger[0].recorded_at,
                actor="x",
                action="site_added",
                subject="x",
                payload_json="{}",
                prev_hash=ledger[-1].entry_hash,
                entry_hash=ledger[0].entry_hash,
            )
        )


def test_concurrent_appends_on_a_file_database_serialize(tmp_path: Path, now: datetime) -> None:
    # Prepare: each thread has its own connections, as separate processes would
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    factory = make_session_factory(engine)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(8):
                with factory.begin() as session:
                    _append(session, worker * 100 + i, now)
        except BaseException as exc:  # noqa: BLE001 - reported through the assertion below
            errors.append(exc)

    # Execute
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Assert: BEGIN IMMEDIATE serialized read-last-then-insert; no fork, no lost entry
    assert errors == []
    with factory() as session:
        check = audit_log.verify(session)
    assert (check.ok, check.checked) == (True, 24)
    engine.dispose()


# --- tampering in the table ----------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 4, N - 1])
def test_edited_payload_is_reported(session_factory: SessionFactory, ledger: list[AuditEntry], seq: int) -> None:
    # Prepare
    _tamper(session_factory, seq, payload_json='{"flags":[true,null],"i":-1,"score":0.0,"site":"north"}')

    # Execute
    result = _verify(session_factory)

    # Assert
    assert result == (False, seq)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("recorded_at", "2000-01-01T00:00:00+00:00"),
        ("actor", "mallory"),
        ("action", AuditAction.SITE_ADDED.value),
        ("action", "not_a_known_action"),
        ("subject", "9.9.9"),
        ("prev_hash", "f" * 64),
        ("entry_hash", "e" * 64),
        ("payload_json", "not json"),
        ("payload_json", '{"score":NaN}'),
        ("payload_json", "[1,2]"),
    ],
)
@pytest.mark.parametrize("seq", [0, 5])
def test_edited_column_is_reported(
    session_factory: SessionFactory, ledger: list[AuditEntry], seq: int, column: str, value: str
) -> None:
    # Prepare
    _tamper(session_factory, seq, **{column: value})

    # Execute
    with session_factory() as session:
        check = audit_log.verify(session)

    # Assert
    assert (check.ok, check.first_bad_seq, check.checked) == (False, seq, seq + 1)
    assert check.reason


@pytest.mark.parametrize("seq", [0, 3, N - 2])
def test_deleted_row_is_reported(session_factory: SessionFactory, ledger: list[AuditEntry], seq: int) -> None:
    # Prepare
    _as_insider(session_factory)
    with session_factory.begin() as session:
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq == seq))

    # Execute
    result = _verify(session_factory)

    # Assert
    assert result == (False, seq)


@pytest.mark.parametrize(("i", "j"), [(0, 1), (2, 7), (N - 2, N - 1)])
def test_swapped_row_contents_are_reported(
    session_factory: SessionFactory, ledger: list[AuditEntry], i: int, j: int
) -> None:
    # Prepare: move every column but seq; a placeholder hash keeps entry_hash unique mid-swap
    columns = ["recorded_at", "actor", "action", "subject", "payload_json", "prev_hash", "entry_hash"]
    with session_factory() as session:
        rows = {r.seq: r for r in session.execute(select(AuditEntryRow).where(AuditEntryRow.seq.in_([i, j]))).scalars()}
        a = {c: getattr(rows[i], c) for c in columns}
        b = {c: getattr(rows[j], c) for c in columns}
    _tamper(session_factory, i, entry_hash="0" * 64)
    _tamper(session_factory, j, **a)
    _tamper(session_factory, i, **b)

    # Execute
    result = _verify(session_factory)

    # Assert
    assert result == (False, i)


def test_unknown_action_reads_back_as_text(session_factory: SessionFactory, ledger: list[AuditEntry]) -> None:
    # Prepare
    _tamper(session_factory, 2, action="not_a_known_action")

    # Execute
    with session_factory() as session:
        entry = list(audit_log.iter_entries(session))[2]

    # Assert
    assert entry.action == "not_a_known_action"
    assert not isinstance(entry.action, AuditAction)


def test_unreadable_payload_after_an_earlier_break_reports_the_earlier_one(
    session_factory: SessionFactory, ledger: list[AuditEntry]
) -> None:
    # Prepare
    _tamper(session_factory, 2, actor="mallory")
    _tamper(session_factory, 6, payload_json="not json")

    # Execute
    result = _verify(session_factory)

    # Assert
    assert result == (False, 2)
