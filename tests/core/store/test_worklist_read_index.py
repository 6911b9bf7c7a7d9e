"""The worklist's "read by me?" question is answered from the (study, reader) index (migration 0015).

Without it SQLite answered from ``user_id`` and walked every read of the reader for every study:
on a 50,000-study store with 2,500 reads, 58 s per page instead of 0.1 s (BENCHMARKS.md).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event

from core.bench import store

INDEX = "ix_clinician_feedback_study_id_user_id"


def test_worklist_queries_use_the_study_reader_index(tmp_path: Path) -> None:
    # Prepare: a SYNTHETIC store with reads by the bench reader
    sf, _ = store.build_store(tmp_path, rows=400)
    caught: list[tuple[str, Any]] = []
    with sf() as s:
        engine = s.get_bind()

    def catch(_conn: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if "clinician_feedback.user_id" in statement and statement.lstrip().upper().startswith("SELECT") and not many:
            caught.append((statement, params))

    event.listen(engine, "before_cursor_execute", catch)
    # Execute
    try:
        store._page(sf)
    finally:
        event.remove(engine, "before_cursor_execute", catch)
    # Assert: the count and the page look each (study, reader) pair up by study, never by walking the
    # reader's rows (which SQLite chose from the single-column indexes alone)
    db = sqlite3.connect(tmp_path / "vigil.db")
    plans = [_plan(db, stmt, params) for stmt, params in caught]
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert INDEX in names
    assert len(plans) >= 2
    assert not any("ix_clinician_feedback_user_id" in plan for plan in plans), plans


def _plan(db: sqlite3.Connection, statement: str, params: Any) -> str:
    return "\n".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + statement, params))
