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
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.audit.events import AuditAction
from core.services import review, sites, worklist
from core.services.audit import verify_ledger
from core.services.feedback import FeedbackForm, Finding, record_feedback
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow, FeedbackRow, SiteRow
from tests.conftest import NewDatabase
from tests.core.services.installations import installation_on

PROCESSES = 4
SITES_PER_PROCESS = 15
READER = SignedInUser("radiologist", Role.RADIOLOGIST)

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


# --- durability: kill -9 at random points, over many trials -----------------------------------

KILL_TRIALS = 25
#: The longest a writer runs before its kill (seconds after it is connected); uniform below it.
KILL_WITHIN_S = 0.4
KILL_SEED = 17


def test_commits_are_synchronous_on_each_backend(backend: str, new_database: NewDatabase) -> None:
    # Prepare: the throwaway PostgreSQL cluster runs with synchronous_commit=off (tests/postgres.py)
    engine = make_engine(new_database(backend, migrated=True))

    # Execute: twice, so the second read is on a pooled connection after its reset-on-return rollback
    settings = []
    for _ in range(2):
        with engine.connect() as connection:
            sql = "PRAGMA synchronous" if engine.dialect.name == "sqlite" else "SHOW synchronous_commit"
            settings.append(str(connection.exec_driver_sql(sql).scalar_one()))
    engine.dispose()

    # Assert: an acknowledged commit is flushed whatever the server's default (2 is SQLite's FULL)
    assert settings == (["2", "2"] if backend.startswith("sqlite") else ["on", "on"])


def kill_9_figure(backend: str, trials: int, acknowledged: int, lost: int, resubmitted: int, duplicates: int) -> str:
    """The line the kill -9 trials print, which the README's reliability section quotes."""
    return (
        f"kill -9 [{backend}]: trials {trials}, acknowledged writes {acknowledged}, lost {lost}, "
        f"killed in flight and resubmitted {resubmitted}, duplicates {duplicates}"
    )


def _feedback_form(sf: SessionFactory, key: str) -> FeedbackForm:
    uid = worklist.worklist_page(sf, READER, worklist.WorklistFilter()).items[0].study_uid
    info = review.open_case(sf, READER, uid)
    assert info.prediction is not None
    return FeedbackForm(
        study_uid=uid,
        prediction_id=info.prediction.prediction_id,
        agrees=True,
        finding=Finding.ABSENT,
        confidence=3,
        explanation=None,
        comment="kill -9 trial",
        time_on_case_s=1.5,
        idempotency_key=key,
    )


def _write_until_killed(url: str, form: FeedbackForm, trial: int, out: int) -> None:
    """The forked writer: submit feedback forms one after another, saying before and after each."""
    try:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        os.write(out, b"ready\n")
        for i in range(1_000_000):
            key = f"kill9-{trial:03d}-{i:06d}"
            os.write(out, f"try {key}\n".encode())
            saved = record_feedback(factory, READER, replace(form, idempotency_key=key), now=_clock)
            # The acknowledgement a user sees: only after record_feedback returned.
            os.write(out, f"ack {key} {saved.record.id}\n".encode())
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which fails the test)
        os.write(out, f"error {exc!r}"[:500].replace("\n", " ").encode() + b"\n")
    finally:
        os._exit(1)  # never return into pytest's copy of the test process


def _one_trial(url: str, form: FeedbackForm, trial: int, delay_s: float) -> tuple[dict[str, int], str | None]:
    """Fork a writer, SIGKILL it ``delay_s`` after it connects; return its acknowledged keys and the one in flight."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _write_until_killed(url, form, trial, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "r") as lines:
        first = lines.readline()
        assert first == "ready\n", f"the writer failed before it connected: {first!r}"
        time.sleep(delay_s)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        said = lines.read().splitlines()
    errors = [line for line in said if line.startswith("error ")]
    assert not errors and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (status, errors)
    acked = {
        parts[1]: int(parts[2]) for parts in (line.split() for line in said) if parts[0] == "ack" and len(parts) == 3
    }
    tried = [line.split()[1] for line in said if line.startswith("try ")]
    in_flight = tried[-1] if tried and tried[-1] not in acked else None
    return acked, in_flight


def test_kill_9_at_random_points_loses_no_acknowledged_write(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # Prepare: the review installation on this backend; forked writers open their own connections
    inst = installation_on(backend, request, tmp_path_factory, tmp_path)
    sf = inst.session_factory()
    form = _feedback_form(sf, "kill9-prepare")
    engine = sf.kw["bind"]
    rng = random.Random(KILL_SEED)
    acked: dict[str, int] = {}
    resubmitted: list[str] = []

    # Execute: each trial kills a writer at a random moment, then resubmits the form it was
    # killed in (what the reader's browser does after an error), as the same idempotency key
    for trial in range(KILL_TRIALS):
        engine.dispose()  # the child must not share this process's pooled connections
        got, in_flight = _one_trial(inst.database_url, form, trial, rng.uniform(0.0, KILL_WITHIN_S))
        acked.update(got)
        if in_flight is not None:
            record_feedback(sf, READER, replace(form, idempotency_key=in_flight), now=_clock)
            resubmitted.append(in_flight)

    # Assert: every acknowledged write is there under its id, each key is one row, every row has its entry
    with sf() as session:
        rows = dict(
            session.execute(
                select(FeedbackRow.idempotency_key, FeedbackRow.id).where(FeedbackRow.idempotency_key.like("kill9-%"))
            ).all()
        )
        per_key = session.execute(
            select(func.count()).select_from(FeedbackRow).where(FeedbackRow.idempotency_key.like("kill9-%"))
        ).scalar_one()
        entries = session.scalar(
            select(func.count())
            .select_from(AuditEntryRow)
            .where(AuditEntryRow.action == str(AuditAction.FEEDBACK_RECORDED), AuditEntryRow.actor == READER.username)
        )
    lost = sum(1 for key, row_id in acked.items() if rows.get(key) != row_id)
    duplicates = per_key - len(rows)
    print("\n" + kill_9_figure(engine.dialect.name, KILL_TRIALS, len(acked), lost, len(resubmitted), duplicates))
    assert acked and resubmitted  # kills landed after acknowledged writes and inside others
    assert lost == 0 and duplicates == 0
    assert set(resubmitted) <= set(rows)
    assert entries == len(rows)  # no row without its audit entry, no entry without its row
    assert verify_ledger(sf).ok
