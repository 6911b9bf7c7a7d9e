"""kill -9 at any point, run again: nothing lost, nothing twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.pipeline import FlowLimits, StoredScorer, StreamingPipeline
from core.services import audit, ingestion, models, prediction
from tests.core.pipeline.conftest import Store, make_store, snapshot

ROOT = Path(__file__).resolve().parents[3]


def _run_to_completion(store: Store, inputs: list[Path]) -> None:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    limits = FlowLimits(workers=2, batch_size=2, max_in_flight=4)
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=model, limits=limits, actor="t", now=store.now,
        maps_dir=store.settings.artifacts_dir,
    ) as p:  # fmt: skip
        p.run(inputs, site="benchmark")


def _score_stored(store: Store) -> None:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    with StoredScorer(FlowLimits(workers=2, batch_size=2, max_in_flight=4)) as scorer:
        prediction.predict_serving(
            store.sf, lambda _: model, site=None, batch_size=2, actor="t", now=store.now,
            maps_dir=store.settings.artifacts_dir, scorer=scorer,
        )  # fmt: skip


def _start_child(store: Store, args: list[str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.core.pipeline.pipeline_child", *args]
    # A session of its own, so SIGKILL reaches the child and its workers as one group, like a crash.
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize(
    ("batches_before_kill", "then_wait_s"),
    [(1, 0.0), (3, 0.15)],  # right after a commit, and somewhere inside the next batch's work
)
def test_sigkill_midway_then_rerun_equals_a_clean_run(  # noqa: PLR0913 - fixtures and parameters
    store: Store,
    inputs: list[Path],
    tmp_path: Path,
    random_model_dir: Path,
    batches_before_kill: int,
    then_wait_s: float,
) -> None:
    # Prepare: a clean run in a store of its own, for reference
    clean = make_store(tmp_path / "clean", random_model_dir)
    _run_to_completion(clean, inputs)
    child = _start_child(store, [str(store.settings.home), *map(str, inputs)])
    # Execute: SIGKILL the pipeline's whole process group once some batches are stored
    _kill_after(child, batches_before_kill, then_wait_s)
    killed_midway = snapshot(store)
    _run_to_completion(store, inputs)
    # Assert: the kill landed midway, and the rerun completed it exactly once
    assert child.returncode == -signal.SIGKILL
    assert len(killed_midway["predictions"]) < len(snapshot(clean)["predictions"])  # type: ignore[arg-type]
    resumed = snapshot(store)
    assert resumed["instances"] == snapshot(clean)["instances"]
    assert resumed["predictions"] == snapshot(clean)["predictions"]
    assert resumed["files"] == snapshot(clean)["files"]
    # Every study action is audited once; only the gate's refusals are audited again, as on any rerun.
    assert _without_rejections(resumed["audit"]) == _without_rejections(snapshot(clean)["audit"])
    assert _rejections(resumed["audit"]) == _rejections(snapshot(clean)["audit"])
    assert audit.verify_ledger(store.sf).ok


def _without_rejections(entries: object) -> dict[object, int]:
    assert isinstance(entries, dict)
    return {k: v for k, v in entries.items() if k[0] != "ingest_rejected"}


def _rejections(entries: object) -> set[object]:
    assert isinstance(entries, dict)
    return {k for k in entries if k[0] == "ingest_rejected"}


def test_sigkill_while_scoring_stored_studies_then_rerun_equals_a_clean_run(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare: both stores hold the same files; the clean one is scored to the end
    clean = make_store(tmp_path / "clean", random_model_dir)
    for s in (clean, store):
        ingestion.ingest_paths(s.sf, inputs, site="benchmark", dicom_dir=s.dicom_dir, actor="t", now=s.now)
    _score_stored(clean)
    child = _start_child(store, ["--stored", str(store.settings.home)])
    # Execute
    _kill_after(child, 2, 0.15)
    killed_midway = snapshot(store)
    _score_stored(store)
    # Assert: every score and map once, every audit entry once, as a run that was never killed
    assert child.returncode == -signal.SIGKILL
    assert 0 < len(killed_midway["predictions"]) < len(snapshot(clean)["predictions"])  # type: ignore[arg-type]
    assert snapshot(store) == snapshot(clean)
    assert audit.verify_ledger(store.sf).ok


def _kill_after(child: subprocess.Popen[str], batches: int, then_wait_s: float) -> None:
    """SIGKILL the child's whole process group once it has stored ``batches`` batches, and reap it."""
    assert child.stdout is not None
    seen = 0
    for line in child.stdout:
        seen += line.startswith("stored")
        if seen >= batches:
            break
    time.sleep(then_wait_s)
    with contextlib.suppress(ProcessLookupError):  # already gone: the return code below says how
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
