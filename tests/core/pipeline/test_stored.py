"""``vigil predict --workers N``: stored studies re-read in worker processes, recorded as ``vigil predict`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.pipeline import FlowLimits, StoredScorer
from core.services import audit, ingestion, models, prediction
from core.store import predictions, studies
from tests.core.pipeline.conftest import Store, make_store, map_cells, snapshot

LIMITS = FlowLimits(workers=2, batch_size=4, max_in_flight=8)


def _stored(store: Store, inputs: list[Path]) -> None:
    ingestion.ingest_paths(store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now)


def _predict(store: Store, scorer: StoredScorer | None) -> list[prediction.PredictReport]:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    return prediction.predict_serving(
        store.sf, lambda _: model, site=None, batch_size=4, actor="t", now=store.now,
        maps_dir=store.settings.artifacts_dir, scorer=scorer,
    )  # fmt: skip


def test_workers_record_what_vigil_predict_records(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare: the same files stored twice; one store scored in this process
    serial = make_store(tmp_path / "serial", random_model_dir)
    _stored(serial, inputs)
    _stored(store, inputs)
    (expected,) = _predict(serial, None)
    # Execute
    with StoredScorer(LIMITS) as scorer:
        (report,) = _predict(store, scorer)
    # Assert: the same predictions, maps and audit entries; the same cells within two float16 steps
    assert (report.scored, report.skipped, report.maps) == (expected.scored, expected.skipped, expected.maps)
    assert report.scored > 0 and report.skipped > 0  # the cohort's films and the MR slice outside the intended use
    mine, theirs = snapshot(store), snapshot(serial)
    assert mine == theirs
    cells, others = map_cells(store), map_cells(serial)
    assert cells.keys() == others.keys() and len(cells) == report.maps
    assert audit.verify_ledger(store.sf).ok


def test_a_second_pass_finds_nothing_and_a_damaged_file_is_recorded_unscored(store: Store, inputs: list[Path]) -> None:
    # Prepare: stored, then one stored file damaged on disk
    _stored(store, inputs)
    with store.sf() as s:
        victim = next(i for st in studies.list_studies(s, limit=None) for i in studies.list_instances(s, st.study_uid))
    Path(victim.path).write_bytes(Path(victim.path).read_bytes()[:1500])
    # Execute
    with StoredScorer(LIMITS) as scorer:
        (first,) = _predict(store, scorer)
        (second,) = _predict(store, scorer)
    # Assert: recorded once, with no score and the gate's reason; nothing pending afterwards
    with store.sf() as s:
        rows = [p for p in predictions.list_predictions(s) if p.instance_id == victim.id]
    assert len(rows) == 1 and rows[0].score is None
    assert rows[0].fallback is not None and rows[0].fallback.startswith("pixels unreadable: ")
    assert first.scored > 0 and (second.scored, second.skipped, second.maps) == (0, 0, 0)


def test_used_outside_its_block_it_says_how(store: Store) -> None:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    with pytest.raises(RuntimeError, match="context manager"):
        StoredScorer(LIMITS)(store.sf, model, site=None, batch_size=4, actor="t", now=store.now)
