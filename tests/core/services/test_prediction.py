from __future__ import annotations

from pathlib import Path

from pydicom import examples

from core.services import audit, ingestion, models, prediction, sites
from core.store import predictions, studies
from tests.core.services.conftest import Env


def _ingest(env: Env, paths: list[Path], site: str = "benchmark") -> None:
    ingestion.ingest_paths(env.sf, paths, site=site, dicom_dir=env.dicom_dir, actor="t", now=env.now)


def _predict(env: Env) -> prediction.PredictReport:
    model = models.load_serving(env.sf, models_dir=env.models_dir)
    return prediction.predict_pending(env.sf, model, site=None, batch_size=4, actor="t", now=env.now)


def test_predict_scores_everything_once(env: Env, small_cohort: Path) -> None:
    # Prepare
    _ingest(env, [small_cohort / "dicom"])
    with env.sf() as s:
        n = studies.count_studies(s)
    # Execute
    first = _predict(env)
    second = _predict(env)
    # Assert
    assert first.scored == n and first.skipped == 0
    assert second.scored == 0 and second.skipped == 0
    with env.sf() as s:
        rows = predictions.list_predictions(s)
    assert len(rows) == n
    assert all(r.score is not None and 0.0 <= r.score <= 1.0 and r.input_sha256 for r in rows)
    assert all(r.label == (r.score >= r.threshold) for r in rows if r.score is not None)
    assert audit.verify_ledger(env.sf).ok


def test_out_of_intended_use_is_stored_not_scored(env: Env) -> None:
    # Prepare: an MR slice is valid DICOM but outside a chest radiograph model's intended use
    sites.add_site(env.sf, "mri", benchmark=False, actor="t", now=env.now)
    _ingest(env, [Path(examples.get_path("mr"))], site="mri")
    # Execute
    report = _predict(env)
    # Assert
    assert report.scored == 0 and report.skipped == 1
    with env.sf() as s:
        (row,) = predictions.list_predictions(s)
    assert row.score is None and row.label is None
    assert row.fallback is not None and "outside intended use" in row.fallback and "MR" in row.fallback


def test_unreadable_stored_file_is_logged_not_scored(env: Env, small_cohort: Path) -> None:
    # Prepare: ingest, then damage the stored copy
    _ingest(env, sorted((small_cohort / "dicom").rglob("*.dcm"))[:1])
    (stored,) = list(env.dicom_dir.rglob("*.dcm"))
    stored.write_bytes(stored.read_bytes()[:1000])
    # Execute
    report = _predict(env)
    # Assert
    assert report.skipped == 1
    with env.sf() as s:
        (row,) = predictions.list_predictions(s)
    assert row.fallback is not None and row.fallback.startswith("pixels unreadable")
