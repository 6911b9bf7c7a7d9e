"""The pipeline's gate-and-preprocess stage on a real Dask cluster on loopback: a scheduler and two workers.

The cluster is started as separate processes with Dask's own commands, exactly as the README tells
a hospital to start it across machines; only the addresses are loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import BadInputError
from core.pipeline import ENGINES, Engine, FlowLimits, PipelineReport, StreamingPipeline
from core.pipeline import engine as engine_module
from core.pipeline.engine import ClusterLostError, FileNotVisibleError, prepare_shared
from core.pipeline.work import WorkOrder
from core.services import audit, models
from tests.core.pipeline.conftest import Store, make_store, snapshot

STARTUP_S = 60.0


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen[bytes]]


def _spawn(args: list[str], logs: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (logs / f"{len(list(logs.glob('*.log')))}.log").open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_for(check: object, what: str, logs: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"{what} not ready in {STARTUP_S:g} s\n{tails}")


def _worker_count(scheduler_file: Path) -> int:
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file), timeout=5, set_as_default=False) as client:
        return len(client.scheduler_info()["workers"])


@contextmanager
def loopback_cluster(logs: Path, workers: int, no_workers_timeout: str = "30s") -> Iterator[Cluster]:
    """``dask scheduler`` and ``workers`` ``dask worker --nthreads 1 --no-nanny`` processes, on 127.0.0.1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": no_workers_timeout}
    logs.mkdir(parents=True, exist_ok=True)
    info = logs / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    procs = [
        _spawn(["distributed.cli.dask_scheduler", *common, "--port", "0", "--scheduler-file", str(info)], logs, env)
    ]
    try:
        _wait_for(lambda: info.is_file() and info.stat().st_size > 0, "the scheduler", logs)
        address = json.loads(info.read_text())["address"]
        for n in range(workers):
            worker = ["distributed.cli.dask_worker", address, *common, "--nthreads", "1", "--no-nanny"]
            procs.append(_spawn([*worker, "--local-directory", str(logs / f"w{n}")], logs, env))
        _wait_for(lambda: _worker_count(info) == workers, f"{workers} workers", logs)
        yield Cluster(address, procs[1:])
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler and two workers for the module."""
    with loopback_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


def _run(store: Store, inputs: list[Path], engine: Engine, **run_kwargs: object) -> PipelineReport:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    limits = FlowLimits(workers=2, batch_size=2, max_in_flight=4)
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=model, limits=limits, actor="t", now=store.now, engine=engine
    ) as pipe:
        return pipe.run(inputs, site="benchmark", **run_kwargs)  # type: ignore[arg-type]


def test_a_cluster_run_stores_scores_and_audits_what_a_local_run_does(
    cluster: Cluster, store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare
    local_store = make_store(tmp_path / "local", random_model_dir)
    local = _run(local_store, inputs, Engine())
    # Execute
    report = _run(store, inputs, Engine("dask", cluster.address))
    # Assert: the same rows, scores, audit entries and stored files; the same rejections
    assert snapshot(store) == snapshot(local_store)
    assert sorted(report.ingest.ingested) == sorted(local.ingest.ingested)
    assert sorted(report.ingest.rejected, key=lambda r: r.path) == sorted(local.ingest.rejected, key=lambda r: r.path)
    assert report.scored == local.scored and report.skipped == local.skipped == 1
    assert audit.verify_ledger(store.sf).ok


def test_a_worker_killed_midway_loses_nothing_and_stores_nothing_twice(
    cluster: Cluster, store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare: the same files through the local engine, for the rows a complete run leaves
    local_store = make_store(tmp_path / "local", random_model_dir)
    _run(local_store, inputs, Engine())
    victim = cluster.workers[0]
    stored: list[int] = []

    def kill_after_first_batch(n: int) -> None:
        stored.append(n)
        if len(stored) == 1:
            assert victim.poll() is None, "the worker to kill had already exited"
            os.kill(victim.pid, signal.SIGKILL)

    # Execute: SIGKILL one of the two workers once the first batch is stored, with the rest in flight
    report = _run(store, inputs, Engine("dask", cluster.address), progress=kill_after_first_batch)
    # Assert: the worker died, the run finished on the other, and the store equals a complete run's
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert len(stored) > 1 and sum(stored) == len(report.latencies_s)
    assert snapshot(store) == snapshot(local_store)
    assert audit.verify_ledger(store.sf).ok


def test_a_worker_that_cannot_see_the_file_is_an_error_not_a_rejection(tmp_path: Path) -> None:
    # Execute / Assert: nothing at the path on the worker names the path and the host
    missing = tmp_path / "archive" / "study.dcm"
    with pytest.raises(FileNotVisibleError, match="archive/study.dcm") as caught:
        prepare_shared(missing, WorkOrder(max_file_bytes=1 << 20))
    assert "mount the files at the same path" in str(caught.value)


def test_a_scheduler_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a port nothing listens on
    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_S", 1.0)
    # Execute / Assert
    with pytest.raises(BadInputError, match=r"no Dask scheduler answered at 'tcp://127.0.0.1:9'"):
        with engine_module.open_engine(Engine("dask", "tcp://127.0.0.1:9"), workers=1):
            pass


@pytest.mark.parametrize(
    ("kind", "scheduler", "message"),
    [
        ("ray", None, "engine must be one of local, dask, got 'ray'"),
        ("dask", None, "needs the scheduler's address"),
        ("dask", "  ", "needs the scheduler's address"),
        ("local", "tcp://127.0.0.1:8786", "is for --engine dask"),
        ("dask", "not-a-url", "expected tcp://HOST:PORT"),
        ("dask", "inproc://x", "expected tcp://HOST:PORT"),
        ("dask", "tcp://10.0.0.5", "expected tcp://HOST:PORT"),
        ("dask", "tcp://[::1", "Invalid IPv6 URL"),
        ("dask", "tcp://127.0.0.1:99999", "Port out of range"),
        ("dask", "tcp://x\n:1", "control characters"),
    ],
)
def test_an_engine_and_scheduler_that_do_not_fit_are_refused(kind: str, scheduler: str | None, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        Engine(kind, scheduler)  # type: ignore[arg-type]


def test_the_command_line_offers_exactly_the_pipelines_engines() -> None:
    from core.cli import commands

    assert commands.INGEST_ENGINES == ENGINES


def _vigil(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    from core.cli import main

    monkeypatch.setenv("VIGIL_HOME", str(store.settings.home))
    monkeypatch.setenv("VIGIL_DATABASE_URL", store.settings.database_url)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out if code == 0 else captured.err


def test_vigil_ingest_on_the_cluster_reports_its_engine_and_workers(
    cluster: Cluster,
    store: Store,
    inputs: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Execute
    code, out = _vigil(
        store, monkeypatch, capsys, "ingest", *map(str, inputs), "--site", "benchmark", "--predict",
        "--engine", "dask", "--scheduler", cluster.address, "--json",
    )  # fmt: skip
    # Assert: every file accounted for, scored here, and the cluster's live workers counted
    assert code == 0, out
    reply = json.loads(out)
    alive = sum(w.poll() is None for w in cluster.workers)
    assert reply["engine"] == "dask" and reply["workers"] == alive >= 1
    assert reply["predict"]["scored"] + reply["predict"]["skipped"] == reply["ingested"] > 0
    assert len(reply["rejected"]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "dask"], "needs the scheduler's address"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "is for --engine dask, not 'local'"),
        (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "4"], "--workers 4 starts local"),
    ],
)
def test_vigil_ingest_refuses_an_engine_it_cannot_use_before_writing_anything(
    store: Store,
    inputs: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    # Prepare
    before = snapshot(store)
    # Execute
    code, err = _vigil(store, monkeypatch, capsys, "ingest", *map(str, inputs), "--site", "benchmark", *extra)
    # Assert
    assert code == 2 and message in err
    assert snapshot(store) == before


def test_with_every_worker_gone_the_run_fails_and_keeps_what_it_committed(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare: a complete local run to compare with; a cluster of one worker whose scheduler gives
    # up on waiting tasks after 2 s
    complete = make_store(tmp_path / "local", random_model_dir)
    _run(complete, inputs, Engine())
    with loopback_cluster(tmp_path / "dask", workers=1, no_workers_timeout="2s") as lone:
        stored: list[int] = []

        def kill_the_only_worker(n: int) -> None:
            stored.append(n)
            if len(stored) == 1:
                os.kill(lone.workers[0].pid, signal.SIGKILL)

        # Execute
        with pytest.raises(ClusterLostError, match="every worker left") as caught:
            _run(store, inputs, Engine("dask", lone.address), progress=kill_the_only_worker)
    # Assert: what was stored before stays, and a local rerun stores the rest, nothing twice
    assert "stored before it is kept" in str(caught.value)
    kept = len(snapshot(store)["instances"])  # type: ignore[arg-type]
    assert 0 < kept < len(snapshot(complete)["instances"])  # type: ignore[arg-type]
    rerun = _run(store, inputs, Engine())
    assert len(rerun.ingest.duplicates) == kept
    assert snapshot(store)["predictions"] == snapshot(complete)["predictions"]
    assert audit.verify_ledger(store.sf).ok
