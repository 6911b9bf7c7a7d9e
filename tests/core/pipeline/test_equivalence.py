"""The pipeline stores, scores and audits exactly what ``ingest`` followed by ``predict`` does."""

from __future__ import annotations

from pathlib import Path

from core.errors import DicomRejectedError
from core.imaging.gate import check_file
from core.imaging.scan import iter_dicom_paths
from core.pipeline import FlowLimits, PipelineReport, StreamingPipeline
from core.services import audit, ingestion, models, prediction
from core.store import model_versions, predictions, studies
from tests.core.pipeline.conftest import Store, make_store, snapshot
from tests.factories import write_random_model


def _serial(store: Store, inputs: list[Path]) -> ingestion.IngestReport:
    report = ingestion.ingest_paths(
        store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now
    )
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    prediction.predict_pending(store.sf, model, site=None, batch_size=4, actor="t", now=store.now)
    return report


def _pipeline(store: Store, inputs: list[Path], *, workers: int = 2, batch_size: int = 4) -> PipelineReport:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    limits = FlowLimits(workers=workers, batch_size=batch_size, max_in_flight=batch_size + 2 * workers)
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=model, limits=limits, actor="t", now=store.now
    ) as pipe:
        return pipe.run(inputs, site="benchmark")


def test_pipeline_equals_ingest_then_predict(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare
    serial_store = make_store(tmp_path / "serial", random_model_dir)
    serial = _serial(serial_store, inputs)
    # Execute
    report = _pipeline(store, inputs)
    # Assert: the same rows, scores, audit entries and stored files; the same report
    assert snapshot(store) == snapshot(serial_store)
    assert sorted(report.ingest.ingested) == sorted(serial.ingested)
    assert sorted(report.ingest.rejected, key=lambda r: r.path) == sorted(serial.rejected, key=lambda r: r.path)
    assert report.scored == len(serial.ingested) - 1 and report.skipped == 1  # the MR slice is outside intended use
    assert audit.verify_ledger(store.sf).ok


def test_rejections_are_the_gates_own(store: Store, inputs: list[Path]) -> None:
    # Execute
    report = _pipeline(store, inputs)
    # Assert: the same sentences check_file gives, for the truncated file and the text file
    reasons = {Path(r.path).name: r.reason for r in report.ingest.rejected}
    assert set(reasons) == {"truncated.dcm", "notes.txt"}
    for r in report.ingest.rejected:
        try:
            check_file(Path(r.path))
        except DicomRejectedError as exc:
            assert exc.reason == r.reason
        else:
            raise AssertionError(f"{r.path} passed the gate on its own")


def test_second_run_reports_duplicates_and_scores_nothing(store: Store, inputs: list[Path]) -> None:
    # Prepare
    first = _pipeline(store, inputs)
    before = snapshot(store)
    # Execute
    second = _pipeline(store, inputs)
    # Assert: only the two rejections are audited again
    assert not second.ingest.ingested and len(second.ingest.duplicates) == len(first.ingest.ingested)
    assert second.scored == second.skipped == 0
    after = snapshot(store)
    assert after["predictions"] == before["predictions"] and after["instances"] == before["instances"]
    assert sum(after["audit"].values()) == sum(before["audit"].values()) + 2  # type: ignore[union-attr]


def test_ingested_without_scores_are_scored_by_a_later_pipeline_run(store: Store, inputs: list[Path]) -> None:
    # Prepare: plain `vigil ingest` first, no predictions
    ingestion.ingest_paths(store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now)
    # Execute
    report = _pipeline(store, inputs)
    # Assert: every stored instance is now scored (or skipped) once
    with store.sf() as s:
        n = len(studies.list_studies(s, limit=None))
    assert not report.ingest.ingested and report.scored + report.skipped == n


def test_in_flight_stays_bounded(store: Store, inputs: list[Path]) -> None:
    # Execute: 17 files through at most 3 at a time, one worker, batches of 2
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    limits = FlowLimits(workers=1, batch_size=2, max_in_flight=3)
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=model, limits=limits, actor="t", now=store.now
    ) as p:
        report = p.run(inputs, site="benchmark")
    # Assert: never more held than the bound, and nothing dropped
    assert 1 <= report.peak_in_flight <= 3
    total = len(report.ingest.ingested) + len(report.ingest.duplicates) + len(report.ingest.rejected)
    assert total == len(report.latencies_s) == len(iter_dicom_paths(inputs))


def test_a_version_switch_mid_run_stores_everything_and_scores_nothing_with_the_old_version(
    store: Store, inputs: list[Path], tmp_path: Path
) -> None:
    # Prepare: the pipeline holds version A; B is promoted before its first batch commits
    old = models.load_serving(store.sf, models_dir=store.models_dir)
    card_b = write_random_model(tmp_path / "b", version="random-b", seed=1)
    models.register_model(
        store.sf, card_b, source_dir=tmp_path / "b", models_dir=store.models_dir, actor="t", now=store.now
    )
    with store.sf.begin() as s:
        model_versions.set_serving(s, "random-b")
    limits = FlowLimits(workers=2, batch_size=4, max_in_flight=8)
    # Execute
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=old, limits=limits, actor="t", now=store.now
    ) as pipe:
        report = pipe.run(inputs, site="benchmark")
    new = models.load_serving(store.sf, models_dir=store.models_dir)
    later = prediction.predict_pending(store.sf, new, site=None, batch_size=4, actor="t", now=store.now)
    # Assert: every file stored, none scored by the version that stopped serving, all by the new one
    assert report.superseded and report.scored == report.skipped == 0
    assert len(report.ingest.ingested) == later.scored + later.skipped
    with store.sf() as s:
        rows = predictions.list_predictions(s)
        b_id = model_versions.get_by_version(s, "random-b").id
    assert rows and {r.model_version_id for r in rows} == {b_id}
