"""The ledger under real processes: kill -9 mid-action leaves neither half, concurrent writers never fork.

The killed process is a small script that runs one user action (``sites.add_site``, what
``vigil site add`` does) with statement tracing switched on (SQLite's own; on PostgreSQL what
SQLAlchemy sends, and its COMMIT); it stops inside the trace callback at a chosen statement, says
where it is, and waits there until the test SIGKILLs it, so the kill lands inside the open
transaction every time rather than by luck of timing. Both run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from sqlalchemy import select

from core.services import sites
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow, SiteRow
from tests.conftest import NewDatabase

PROCESSES = 4
SITES_PER_PROCESS = 15

#: The child: one audited user action, traced by sqlite3, parked at the statement named in argv[2].
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime
    from sqlalchemy import event
    from core.services import sites
    from core.store.engine import make_engine, make_session_factory

    url, stop_at = sys.argv[1], sys.argv[2]
    engine = make_engine(url)
    traced = []

    def trace(statement):
        traced.append(statement)
        if statement.startswith(stop_at):
            print(json.dumps(traced), flush=True)
            time.sleep(600)  # parked inside the transaction until the test kills us

    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def on_connect(dbapi_connection, _record):
            dbapi_connection.set_trace_callback(trace)
    else:  # a server database: trace what SQLAlchemy sends, and the COMMIT it is about to send
        event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: trace(statement))
        event.listen(engine, "commit", lambda conn: trace("COMMIT"))

    engine.dispose()  # the connection make_engine opened has no trace; the next one will
    now = lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    sites.add_site(make_session_factory(engine), "north", benchmark=False, actor="admin", now=now)
    print(json.dumps(traced), flush=True)
    """
)


def _clock() -> datetime:
    return datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _open(url: str) -> Iterator[tuple[str, SessionFactory]]:
    engine = make_engine(url)
    migrate(engine)
    factory = make_session_factory(engine)
    sites.add_site(factory, "benchmark", benchmark=True, actor="admin", now=_clock)
    yield url, factory
    engine.dispose()


@pytest.fixture
def store(backend: str, new_database: NewDatabase) -> Iterator[tuple[str, SessionFactory]]:
    """A store with one audited action already in its ledger, on a SQLite file and on PostgreSQL."""
    yield from _open(new_database(backend, migrated=True))


@pytest.fixture
def shared_store(store: tuple[str, SessionFactory]) -> tuple[str, SessionFactory]:
    """As ``store``: a SQLite file and a PostgreSQL database that several processes write at once."""
    return store


def _start(url: str, stop_at: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, stop_at],
        cwd=Path(__file__).resolve().parents[3],  # the repository root, so `core` imports
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(factory: SessionFactory) -> tuple[list[str], int, bool]:
    with factory() as session:
        names = list(session.scalars(select(SiteRow.name).order_by(SiteRow.name)))
        return names, audit_log.count_entries(session), audit_log.verify(session).ok


@pytest.mark.parametrize(
    "stop_at",
    [
        "INSERT INTO audit_entry",  # the site row is written, its audit entry not yet
        "COMMIT",  # both are written, the commit has not happened
    ],
)
def test_kill_9_between_an_action_and_its_commit_leaves_neither(
    store: tuple[str, SessionFactory], stop_at: str
) -> None:
    # Prepare
    url, factory = store
    child = _start(url, stop_at)

    # Execute: wait until the child is parked at the statement, then kill -9 it
    line = child.stdout.readline() if child.stdout is not None else ""
    os.kill(child.pid, signal.SIGKILL)
    _, err = child.communicate(timeout=60)
    traced = json.loads(line) if line else []

    # Assert: it died where intended, after the site row was written in its transaction ...
    assert child.returncode == -signal.SIGKILL, err
    assert traced and traced[-1].startswith(stop_at), (line, err)
    assert any(s.startswith("INSERT INTO site") for s in traced)
    assert traced[0] == "BEGIN IMMEDIATE" or not url.startswith("sqlite")
    # ... and neither the site nor its audit entry survived; the ledger is as it was
    assert _state(factory) == (["benchmark"], 1, True)
    # The lock died with the process: the same action now completes, with its entry
    sites.add_site(factory, "north", benchmark=False, actor="admin", now=_clock)
    assert _state(factory) == (["benchmark", "north"], 2, True)


def test_the_same_child_left_alone_stores_both(store: tuple[str, SessionFactory]) -> None:
    # Prepare: the control; a stop point never reached lets the action run to its commit
    url, factory = store

    # Execute
    child = _start(url, "NEVER")
    out, err = child.communicate(timeout=120)

    # Assert
    assert child.returncode == 0, err
    traced = json.loads(out)
    assert any(s.startswith("INSERT INTO audit_entry") for s in traced) and "COMMIT" in traced
    assert _state(factory) == (["benchmark", "north"], 2, True)


# --- concurrent writers ---------------------------------------------------------------------


def _add_sites(url: str, worker: int, start: Barrier, spans: Queue[tuple[int, float, float]]) -> None:
    """Spawned worker: register SITES_PER_PROCESS sites through the service, one action each."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    start.wait()
    began = time.monotonic()
    for i in range(SITES_PER_PROCESS):
        sites.add_site(factory, f"w{worker}-{i}", benchmark=False, actor=f"worker{worker}", now=_clock)
    spans.put((worker, began, time.monotonic()))
    engine.dispose()


def test_concurrent_processes_never_fork_the_chain(shared_store: tuple[str, SessionFactory]) -> None:
    # Prepare
    url, factory = shared_store
    context = multiprocessing.get_context("spawn")
    start, spans = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_add_sites, args=(url, w, start, spans)) for w in range(PROCESSES)]

    # Execute: every process appends at once through the service layer
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)

    # Assert: every writer finished (a lost race would have raised there) and they overlapped ...
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    ran = sorted(spans.get(timeout=10) for _ in workers)
    assert [worker for worker, _, _ in ran] == list(range(PROCESSES))
    assert max(began for _, began, _ in ran) < min(ended for _, _, ended in ran)
    # ... and left one entry per action, numbered without gap, each after its own predecessor
    expected = 1 + PROCESSES * SITES_PER_PROCESS
    with factory() as session:
        rows = session.execute(select(AuditEntryRow.seq, AuditEntryRow.prev_hash, AuditEntryRow.actor)).all()
        check = audit_log.verify(session)
    assert (check.ok, check.checked) == (True, expected)
    assert sorted(r.seq for r in rows) == list(range(expected))
    assert len({r.prev_hash for r in rows}) == expected  # no two entries follow the same one
    actors = [r.actor for r in rows]
    assert all(actors.count(f"worker{w}") == SITES_PER_PROCESS for w in range(PROCESSES))
