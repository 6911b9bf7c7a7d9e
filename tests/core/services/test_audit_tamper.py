"""Tampering with the stored ledger the way an insider would, at scale: every change is caught.

Issue 15's evidence: 1,000 random single-byte tampers of any column of any row are all detected,
with the first bad ``seq`` exact; deleting, inserting, reordering and duplicating rows are all
detected. The tampering runs on a real SQLite file through SQL, after dropping the append-only
triggers (``tests/core/audit/insider.py``), because the application itself cannot edit the ledger.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from core.audit.chain import ChainCheck
from core.audit.events import AuditAction
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from tests.core.audit.insider import drop_audit_guards

N = 60
TAMPERS = 1_000
START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
#: Every column of ``audit_entry``; ``seq`` is an integer, the others text.
TEXT_COLUMNS = ("recorded_at", "actor", "action", "subject", "payload_json", "prev_hash", "entry_hash")
COLUMNS = ("seq", *TEXT_COLUMNS)
#: Replacement characters: printable ASCII, so a tamper stays valid text for the database.
ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    migrate(eng)
    sf = make_session_factory(eng)
    with sf.begin() as session:
        for i in range(N):
            audit_log.append(
                session,
                actor=("dr.okafor", "system", "champion.lee")[i % 3],
                action=(AuditAction.PREDICTION_MADE, AuditAction.FEEDBACK_RECORDED, AuditAction.SITE_ADDED)[i % 3],
                subject=f"1.2.826.0.1.3680043.8.498.{1000 + i}",
                payload={"i": i, "score": round(0.01 * i, 4), "label": i % 2 == 0, "note": "é ✓"},
                recorded_at=(START + timedelta(minutes=i)).isoformat(),
            )
    drop_audit_guards(eng)  # from here on the tests act as an insider with DDL rights
    yield eng
    eng.dispose()


def _verify(engine: Engine) -> ChainCheck:
    sf: SessionFactory = make_session_factory(engine)
    with sf() as session:
        return audit_log.verify(session)


def _read(engine: Engine, seq: int, column: str) -> object:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"SELECT {column} FROM audit_entry WHERE seq = ?", (seq,)).scalar_one()


def _write(engine: Engine, seq: int, column: str, value: object) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE audit_entry SET {column} = ? WHERE seq = ?", (value, seq))


def _one_byte_changed(rng: random.Random, value: object) -> object:
    """``value`` with exactly one byte changed: a character of text, a bit of an integer."""
    if isinstance(value, int):
        # A bit above every stored seq, so the row moves instead of colliding with another row.
        return value ^ (1 << rng.randrange(N.bit_length(), 16))
    assert isinstance(value, str) and value
    text = value.encode("utf-8")
    ascii_positions = [i for i, b in enumerate(text) if b < 0x80]
    i = rng.choice(ascii_positions)
    replacement = rng.choice([c for c in ALPHABET if ord(c) != text[i]])
    return (text[:i] + replacement.encode("ascii") + text[i + 1 :]).decode("utf-8")


def test_the_untouched_ledger_verifies(engine: Engine) -> None:
    assert _verify(engine) == ChainCheck(True, N)


def test_every_random_single_byte_tamper_is_caught_at_its_own_seq(engine: Engine) -> None:
    # Prepare
    rng = random.Random(15)
    caught: list[tuple[int, str, int | None]] = []
    # Execute: one tamper at a time, verified, then undone
    for _ in range(TAMPERS):
        seq, column = rng.randrange(N), rng.choice(COLUMNS)
        original = _read(engine, seq, column)
        tampered = _one_byte_changed(rng, original)
        _write(engine, seq, column, tampered)
        check = _verify(engine)
        caught.append((seq, column, check.first_bad_seq))
        row = tampered if isinstance(tampered, int) else seq  # a changed seq moved the row
        _write(engine, row, column, original)
    # Assert: every one detected, at exactly the tampered row
    missed = [(seq, column, found) for seq, column, found in caught if found != seq]
    assert not missed, f"{len(missed)} of {TAMPERS} tampers not reported at their seq: {missed[:5]}"
    assert {column for _, column, _ in caught} == set(COLUMNS)  # every column was tried
    assert _verify(engine).ok  # and every tamper was undone


@pytest.mark.parametrize("seq", [0, 1, N // 2, N - 2])
def test_a_deleted_row_is_reported_by_its_own_seq(engine: Engine, seq: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_entry WHERE seq = ?", (seq,))
    check = _verify(engine)
    assert (check.ok, check.first_bad_seq) == (False, seq)


@pytest.mark.parametrize("seq", [0, 7, N - 1])
def test_an_inserted_row_is_reported_where_it_lands(engine: Engine, seq: int) -> None:
    # Prepare: make room by renumbering the tail, as an insider inserting in the middle must
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_entry SET seq = seq + 1000 WHERE seq >= ?", (seq,))
        connection.exec_driver_sql("UPDATE audit_entry SET seq = seq - 999 WHERE seq >= 1000")
        connection.exec_driver_sql(
            "INSERT INTO audit_entry (seq, recorded_at, actor, action, subject, payload_json, prev_hash, entry_hash) "
            "VALUES (?, '2024-05-01T09:30:00+00:00', 'mallory', 'site_added', 'x', '{}', ?, ?)",
            (seq, "0" * 64, "f" * 64),
        )
    # Execute
    check = _verify(engine)
    # Assert
    assert (check.ok, check.first_bad_seq) == (False, seq)


@pytest.mark.parametrize(("i", "j"), [(0, 1), (3, 40), (N - 2, N - 1)])
def test_two_rows_reordered_are_reported_at_the_earlier(engine: Engine, i: int, j: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_entry SET seq = -1 WHERE seq = ?", (i,))
        connection.exec_driver_sql("UPDATE audit_entry SET seq = ? WHERE seq = ?", (i, j))
        connection.exec_driver_sql("UPDATE audit_entry SET seq = ? WHERE seq = -1", (j,))
    check = _verify(engine)
    assert (check.ok, check.first_bad_seq) == (False, i)


@pytest.mark.parametrize("seq", [0, N // 2, N - 1])
def test_a_duplicated_row_is_refused_or_reported(engine: Engine, seq: int) -> None:
    # Execute: copy a row to the end of the ledger, unchanged; entry_hash is unique, so the
    # database refuses an exact duplicate even from an insider...
    copy = (
        "INSERT INTO audit_entry (seq, recorded_at, actor, action, subject, payload_json, prev_hash, entry_hash) "
        "SELECT ?, recorded_at, actor, action, subject, payload_json, prev_hash, {hash} FROM audit_entry WHERE seq = ?"
    )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.exec_driver_sql(copy.format(hash="entry_hash"), (N, seq))
    # ... and a duplicate with its hash changed to get past the constraint is caught by the chain
    with engine.begin() as connection:
        connection.exec_driver_sql(copy.format(hash="'x' || substr(entry_hash, 2)"), (N, seq))
    check = _verify(engine)
    assert (check.ok, check.first_bad_seq) == (False, N)
