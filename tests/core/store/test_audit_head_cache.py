"""An append links to the head its own transaction wrote last, never to one that was rolled back.

``audit_log.append`` keeps the head it appended for the rest of its (sub)transaction instead of
reading it back each time; these tests roll back savepoints and whole transactions around appends,
on every database, and check the chain still links entry to entry.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.audit.events import AuditAction
from core.store import audit_log
from core.store.engine import SessionFactory

AT = "2024-05-01T09:30:00+00:00"


def _append(session: object, subject: str) -> int:
    entry = audit_log.append(
        session,  # type: ignore[arg-type]
        actor="system",
        action=AuditAction.SITE_ADDED,
        subject=subject,
        payload={"subject": subject},
        recorded_at=AT,
    )
    return entry.seq


def _ledger(sf: SessionFactory) -> list[tuple[int, str]]:
    with sf() as session:
        return [(e.seq, e.subject) for e in audit_log.iter_entries(session)]


def _verifies(sf: SessionFactory) -> bool:
    with sf() as session:
        return audit_log.verify(session).ok


def test_appends_in_one_transaction_chain_one_after_another(session_factory: SessionFactory) -> None:
    with session_factory.begin() as session:
        seqs = [_append(session, f"s{i}") for i in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    assert _verifies(session_factory)


def test_an_append_after_a_rolled_back_savepoint_links_to_the_entry_before_it(
    session_factory: SessionFactory,
) -> None:
    # Prepare / Execute: a, then b inside a savepoint that is rolled back, then c
    with session_factory.begin() as session:
        _append(session, "a")
        savepoint = session.begin_nested()
        assert _append(session, "b") == 1
        savepoint.rollback()
        seq_c = _append(session, "c")
    # Assert: c took b's place and links to a
    assert seq_c == 1
    assert _ledger(session_factory) == [(0, "a"), (1, "c")]
    assert _verifies(session_factory)


def test_an_append_inside_a_savepoint_sees_the_outer_head(session_factory: SessionFactory) -> None:
    with session_factory.begin() as session:
        _append(session, "a")
        with session.begin_nested():
            assert _append(session, "b") == 1
        assert _append(session, "c") == 2  # after the savepoint is released
    assert _verifies(session_factory)


def test_a_rolled_back_transaction_leaves_no_head_behind(session_factory: SessionFactory) -> None:
    # Prepare: one committed entry, then a transaction with an append that is rolled back
    with session_factory.begin() as session:
        _append(session, "a")
    session = session_factory()
    try:
        session.begin()
        _append(session, "gone")
        session.rollback()
        # Execute: the same session appends again in a new transaction
        with session.begin():
            seq = _append(session, "b")
    finally:
        session.close()
    # Assert
    assert seq == 1
    assert _ledger(session_factory) == [(0, "a"), (1, "b")]
    assert _verifies(session_factory)


def test_an_entry_another_session_committed_between_transactions_is_read(session_factory: SessionFactory) -> None:
    session = session_factory()
    try:
        with session.begin():
            _append(session, "a")
        with session_factory.begin() as other:
            _append(other, "from elsewhere")
        with session.begin():
            seq = _append(session, "b")
    finally:
        session.close()
    assert seq == 2
    assert _verifies(session_factory)


@pytest.mark.parametrize("statement", ["SELECT 1"])
def test_a_plain_statement_between_appends_changes_nothing(session_factory: SessionFactory, statement: str) -> None:
    with session_factory.begin() as session:
        _append(session, "a")
        session.execute(text(statement))
        assert _append(session, "b") == 1
    assert _verifies(session_factory)
