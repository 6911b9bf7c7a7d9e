"""Several ingests, predictions and feedback submissions at once, from processes and threads.

Each round starts from an empty installation and runs the same work concurrently; what must hold
afterwards is what an operator relies on: every stored file present and byte-identical to its
recorded SHA-256, every study once, one prediction per instance and model, one feedback row per
form, no traceback, and an audit chain that verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import FeedbackConflictError
from core.sampledata import generate_cohort
from core.services import ingestion, models, prediction, sites
from core.services.audit import verify_ledger
from core.services.feedback import FeedbackForm, new_idempotency_key, record_feedback
from core.services.store import open_store
from core.store import studies
from core.store.engine import SessionFactory
from core.store.tables import AuditEntryRow, FeedbackRow, InstanceRow, PredictionRow
from tests.core.services.conftest import fixed_clock
from tests.core.services.test_feedback import RADIOLOGIST, form, sf  # noqa: F401  (fixtures)

PROCESSES = 4
THREADS = 2
ROUNDS = 2
STUDIES_PER_SITE = 30  # five sites: 150 files, each offered by six writers at once


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=11, studies_per_site=STUDIES_PER_SITE)
    return out / "dicom"


def _installation(home: Path, random_model_dir: Path) -> tuple[Settings, SessionFactory]:
    from core.models.card import read_card

    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    sf_ = open_store(settings)
    card = read_card(random_model_dir / "card.json")
    models.register_model(
        sf_, card, source_dir=random_model_dir, models_dir=home / "models", actor="t", now=fixed_clock
    )
    sites.add_site(sf_, "st-marys", benchmark=False, actor="t", now=fixed_clock)
    return settings, sf_


def _vigil(home: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "VIGIL_HOME": str(home), "VIGIL_DATABASE_URL": f"sqlite:///{home / 'vigil.db'}"}
    env.pop("VIGIL_CONFIG", None)
    cmd = [str(Path(sys.executable).parent / "vigil"), *argv, "--json"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def _in_threads(n: int, work: Callable[[], object]) -> list[object]:
    start = threading.Barrier(n)

    def run() -> object:
        start.wait()
        return work()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result() for f in [pool.submit(run) for _ in range(n)]]


def _assert_store_intact(sf_: SessionFactory, n_files: int) -> None:
    with sf_() as session:
        rows = session.execute(select(InstanceRow.path, InstanceRow.sha256)).all()
        assert studies.count_studies(session) == n_files
        ingested = session.scalar(
            select(func.count())
            .select_from(AuditEntryRow)
            .where(AuditEntryRow.action == str(AuditAction.STUDY_INGESTED))
        )
    assert len(rows) == n_files and ingested == n_files
    for path, sha256 in rows:
        assert Path(path).is_file(), f"stored file {path} is gone"
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha256
    assert verify_ledger(sf_).ok


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_ingests_keep_every_file(
    round_: int, tmp_path: Path, cohort_files: Path, random_model_dir: Path
) -> None:
    # Prepare
    home = tmp_path / "home"
    settings, sf_ = _installation(home, random_model_dir)
    n_files = len(list(cohort_files.rglob("*.dcm")))
    assert n_files == 5 * STUDIES_PER_SITE

    # Execute: four `vigil ingest` processes and two threads of this one, on the same folder
    procs = [_vigil(home, "ingest", str(cohort_files), "--site", "st-marys") for _ in range(PROCESSES)]
    reports = _in_threads(
        THREADS,
        lambda: ingestion.ingest_paths(
            sf_, [cohort_files], site="st-marys", dicom_dir=settings.home / "dicom", actor="t", now=fixed_clock
        ),
    )
    outputs = [_finish(p) for p in procs]

    # Assert: each run saw every file once, as ingested or as a duplicate; all were stored once
    counted = [(o["ingested"], o["duplicates"], o["rejected"]) for o in outputs]
    counted += [(len(r.ingested), len(r.duplicates), r.rejected) for r in reports]  # type: ignore[attr-defined]
    assert all(i + d == n_files and rej == [] for i, d, rej in counted), counted
    assert sum(i for i, _, _ in counted) == n_files
    _assert_store_intact(sf_, n_files)
    leftovers = [p for p in (home / "dicom").rglob("*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []


def test_an_ingest_killed_midway_leaves_a_store_the_next_run_completes(
    tmp_path: Path, cohort_files: Path, random_model_dir: Path
) -> None:
    # Prepare
    home = tmp_path / "home"
    _, sf_ = _installation(home, random_model_dir)
    n_files = len(list(cohort_files.rglob("*.dcm")))
    proc = _vigil(home, "ingest", str(cohort_files), "--site", "st-marys")

    # Execute: kill -9 once some studies are in, then ingest again
    deadline = time.monotonic() + 300
    while _count_studies(sf_) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    interrupted = _count_studies(sf_)
    again = _finish(_vigil(home, "ingest", str(cohort_files), "--site", "st-marys"))

    # Assert
    assert 20 <= interrupted < n_files
    assert again["ingested"] == n_files - interrupted and again["duplicates"] == interrupted
    _assert_store_intact(sf_, n_files)


def _count_studies(sf_: SessionFactory) -> int:
    with sf_() as session:
        return studies.count_studies(session)


def test_concurrent_predicts_score_each_instance_once(
    tmp_path: Path, cohort_files: Path, random_model_dir: Path
) -> None:
    # Prepare
    home = tmp_path / "home"
    settings, sf_ = _installation(home, random_model_dir)
    ingestion.ingest_paths(
        sf_, [cohort_files], site="st-marys", dicom_dir=settings.home / "dicom", actor="t", now=fixed_clock
    )
    model = models.load_serving(sf_, models_dir=home / "models")

    # Execute: two `vigil predict` processes and two threads of this one, batch by batch
    procs = [_vigil(home, "predict", "--site", "st-marys") for _ in range(2)]
    reports = _in_threads(
        2,
        lambda: prediction.predict_pending(sf_, model, site="st-marys", batch_size=8, actor="t", now=fixed_clock),
    )
    outputs = [_finish(p) for p in procs]

    # Assert
    scored = [int(str(o["scored"])) + int(str(o["skipped"])) for o in outputs]
    scored += [r.scored + r.skipped for r in reports]  # type: ignore[attr-defined]
    with sf_() as session:
        n_instances = session.scalar(select(func.count()).select_from(InstanceRow))
        n_predictions = session.scalar(select(func.count()).select_from(PredictionRow))
        per_instance = session.execute(
            select(PredictionRow.instance_id, func.count()).group_by(PredictionRow.instance_id)
        ).all()
    assert n_predictions == n_instances == sum(scored)
    assert all(count == 1 for _, count in per_instance)
    assert verify_ledger(sf_).ok


def test_one_form_submitted_from_many_threads_is_one_row(sf: SessionFactory, form: FeedbackForm) -> None:  # noqa: F811
    # Execute
    saved = _in_threads(8, lambda: record_feedback(sf, RADIOLOGIST, form, now=fixed_clock))

    # Assert
    ids = {s.record.id for s in saved}  # type: ignore[attr-defined]
    assert len(ids) == 1 and sum(s.created for s in saved) == 1  # type: ignore[attr-defined]
    with sf() as session:
        rows = session.scalar(select(func.count()).select_from(FeedbackRow).where(FeedbackRow.id.in_(ids)))
    assert rows == 1 and verify_ledger(sf).ok


def test_racing_corrections_of_one_row_leave_one_winner(sf: SessionFactory, form: FeedbackForm) -> None:  # noqa: F811
    # Prepare
    first = record_feedback(sf, RADIOLOGIST, form, now=fixed_clock).record
    outcomes: list[str] = []
    lock = threading.Lock()

    def correct() -> None:
        fix = FeedbackForm(
            **{**_fields(form), "idempotency_key": new_idempotency_key(), "supersedes_id": first.id, "agrees": True}
        )
        try:
            record_feedback(sf, RADIOLOGIST, fix, now=fixed_clock)
            result = "saved"
        except FeedbackConflictError:
            result = "conflict"
        with lock:
            outcomes.append(result)

    # Execute
    _in_threads(6, correct)

    # Assert
    assert sorted(outcomes) == ["conflict"] * 5 + ["saved"]
    with sf() as session:
        corrections = session.scalar(
            select(func.count()).select_from(FeedbackRow).where(FeedbackRow.supersedes_id == first.id)
        )
    assert corrections == 1 and verify_ledger(sf).ok


def _fields(submitted: FeedbackForm) -> dict[str, object]:
    return {name: getattr(submitted, name) for name in FeedbackForm.__dataclass_fields__}


# --- the figure: N threads x M feedback writes plus audit appends, on each backend -------------

WRITERS = 6
FORMS_PER_WRITER = 8
SITE_WRITERS = 2
SITES_PER_WRITER = 4


def concurrency_figure(
    backend: str, threads: int, attempted: int, committed: int, duplicates: int, entries: int, expected: int
) -> str:
    """The line the concurrent-writers test prints, which the README's reliability section quotes."""
    return (
        f"concurrent writers [{backend}]: threads {threads}, attempted {attempted}, committed {committed}, "
        f"duplicates {duplicates}, audit entries {entries} of {expected}"
    )


def test_concurrent_writers_commit_every_attempt_exactly_once(sf: SessionFactory, form: FeedbackForm) -> None:  # noqa: F811
    # Prepare: each writer's forms (each sent twice, as a double click would) and the ledger before
    keys = [[new_idempotency_key() for _ in range(FORMS_PER_WRITER)] for _ in range(WRITERS)]
    with sf() as session:
        entries_before = session.scalar(select(func.count()).select_from(AuditEntryRow)) or 0
    writers = iter(range(WRITERS + SITE_WRITERS))
    lock = threading.Lock()

    def write() -> list[bool]:
        with lock:
            me = next(writers)
        if me >= WRITERS:  # the audit appends of another action, racing the feedback writers
            for i in range(SITES_PER_WRITER):
                sites.add_site(sf, f"race-{me}-{i}", benchmark=False, actor="admin", now=fixed_clock)
            return []
        created = []
        for key in keys[me]:
            for _ in range(2):
                saved = record_feedback(sf, RADIOLOGIST, replace(form, idempotency_key=key), now=fixed_clock)
                created.append(saved.created)
        return created

    # Execute
    results = _in_threads(WRITERS + SITE_WRITERS, write)

    # Assert: one row per form, the second sending of each found the first, one entry per action
    attempted = WRITERS * FORMS_PER_WRITER
    wanted = {k for mine in keys for k in mine}
    with sf() as session:
        stored = list(
            session.scalars(select(FeedbackRow.idempotency_key).where(FeedbackRow.idempotency_key.in_(wanted)))
        )
        prev_hashes = list(session.scalars(select(AuditEntryRow.prev_hash)))
    duplicates = len(stored) - len(set(stored))
    created = sum(sum(r) for r in results if isinstance(r, list))
    entries = len(prev_hashes) - entries_before
    expected_entries = attempted + SITE_WRITERS * SITES_PER_WRITER
    backend = sf.kw["bind"].dialect.name
    threads = WRITERS + SITE_WRITERS
    print(
        "\n" + concurrency_figure(backend, threads, attempted, len(set(stored)), duplicates, entries, expected_entries)
    )
    assert set(stored) == wanted and duplicates == 0 and created == attempted
    assert entries == expected_entries
    assert len(set(prev_hashes)) == len(prev_hashes)  # unforked: no two entries follow the same one
    assert verify_ledger(sf).ok
