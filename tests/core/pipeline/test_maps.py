"""Grad-CAM maps stored by the pipeline with each score: the maps ``vigil explain`` / the viewer store, made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.explain.result import ExplainMethod
from core.pipeline import FlowLimits, PipelineReport, StreamingPipeline
from core.services import audit, explanation, ingestion, models, prediction
from core.services.permissions import Role, SignedInUser
from core.store import explanations, predictions, studies
from tests.core.pipeline.conftest import Store, make_store, map_cells, snapshot


def _pipeline(store: Store, inputs: list[Path], *, maps: bool = True) -> PipelineReport:
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    limits = FlowLimits(workers=2, batch_size=4, max_in_flight=8)
    with StreamingPipeline(
        store.sf, dicom_dir=store.dicom_dir, model=model, limits=limits, actor="t", now=store.now,
        maps_dir=store.settings.artifacts_dir if maps else None,
    ) as pipe:  # fmt: skip
        return pipe.run(inputs, site="benchmark")


def _explained_one_by_one(store: Store, inputs: list[Path]) -> None:
    """``vigil ingest``, ``vigil predict``, then ``vigil explain --method gradcam`` for every scored study."""
    ingestion.ingest_paths(store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now)
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    prediction.predict_pending(store.sf, model, site=None, batch_size=4, actor="t", now=store.now)
    with store.sf() as s:
        scored = [
            st.study_uid
            for st in studies.list_studies(s, limit=None)
            if any(p.score is not None for p, _ in explanations.scored_predictions_of_instance(
                s, studies.list_instances(s, st.study_uid)[0].id))
        ]  # fmt: skip
    for uid in scored:
        explanation.explain_study(
            store.sf, model, uid, method=ExplainMethod.GRADCAM, artifacts_dir=store.settings.artifacts_dir,
            lock=None, actor="t", now=store.now,
        )  # fmt: skip


def _assert_same_cells(store: Store, other: Store) -> None:
    """The same studies mapped, each within two float16 steps (different batches round apart)."""
    cells, expected = map_cells(store), map_cells(other)
    assert cells.keys() == expected.keys()
    for uid, c in cells.items():
        np.testing.assert_allclose(c, expected[uid], rtol=0, atol=2 * 2.0**-11, err_msg=uid)


def test_each_scored_study_gets_the_map_explain_would_store(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare
    serial = make_store(tmp_path / "serial", random_model_dir)
    _explained_one_by_one(serial, inputs)
    # Execute
    report = _pipeline(store, inputs)
    # Assert: the same parameters and audit entries, one map per scored study, and the same cells
    # within two float16 steps (the pipeline's batch of 4 and explain's batch of 1 round apart)
    mine, theirs = snapshot(store), snapshot(serial)
    assert mine["maps"] == theirs["maps"] and len(mine["maps"]) == report.scored > 0  # type: ignore[arg-type]
    assert mine["audit"] == theirs["audit"]
    _assert_same_cells(store, serial)
    assert audit.verify_ledger(store.sf).ok


def test_predicting_stored_studies_stores_the_maps_the_pipeline_stores(
    store: Store, inputs: list[Path], tmp_path: Path, random_model_dir: Path
) -> None:
    # Prepare: the same files through the pipeline, and stored only (as a PACS pull or `vigil init` stores them)
    piped = make_store(tmp_path / "piped", random_model_dir)
    _pipeline(piped, inputs)
    ingestion.ingest_paths(store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now)
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    # Execute
    report = prediction.predict_pending(
        store.sf, model, site=None, batch_size=4, actor="t", now=store.now, maps_dir=store.settings.artifacts_dir
    )
    # Assert: the same rows and audit entries as the pipeline's, the same cells within two float16 steps
    mine, theirs = snapshot(store), snapshot(piped)
    assert mine["maps"] == theirs["maps"] and len(mine["maps"]) == report.maps == report.scored > 0  # type: ignore[arg-type]
    assert mine["audit"] == theirs["audit"]
    _assert_same_cells(store, piped)
    assert audit.verify_ledger(store.sf).ok


@pytest.mark.parametrize("maps", [True, False])
def test_predicting_stored_studies_runs_one_forward_pass_per_batch(
    store: Store, inputs: list[Path], maps: bool
) -> None:
    # Prepare: a hook counts the network's forward passes (Grad-CAM's included)
    ingestion.ingest_paths(store.sf, inputs, site="benchmark", dicom_dir=store.dicom_dir, actor="t", now=store.now)
    model = models.load_serving(store.sf, models_dir=store.models_dir)
    calls: list[int] = []
    handle = model.network.register_forward_pre_hook(lambda _m, args: calls.append(len(args[0])))
    # Execute
    try:
        report = prediction.predict_pending(
            store.sf, model, site=None, batch_size=4, actor="t", now=store.now,
            maps_dir=store.settings.artifacts_dir if maps else None,
        )  # fmt: skip
    finally:
        handle.remove()
    # Assert: each batch's scores, and its maps when asked, came from one forward pass over it
    assert sum(calls) == report.scored > 0
    assert all(n <= 4 for n in calls) and len(calls) == -(-report.scored // 4)
    assert report.maps == (report.scored if maps else 0)


def test_a_second_run_stores_no_second_map(store: Store, inputs: list[Path]) -> None:
    # Prepare
    first = _pipeline(store, inputs)
    before = snapshot(store)
    # Execute
    second = _pipeline(store, inputs)
    # Assert
    assert first.maps == first.scored and second.maps == 0
    assert snapshot(store)["maps"] == before["maps"]


def test_studies_scored_before_keep_what_they_have(store: Store, inputs: list[Path]) -> None:
    # Prepare: scored without maps first
    _pipeline(store, inputs, maps=False)
    # Execute
    again = _pipeline(store, inputs)
    # Assert: nothing is explained after the fact by an ingest (the viewer makes the map on first open)
    assert again.maps == 0 and snapshot(store)["maps"] == []


def test_the_viewer_shows_the_stored_map_without_loading_the_model(store: Store, inputs: list[Path]) -> None:
    # Prepare
    _pipeline(store, inputs)
    with store.sf() as s:
        pred = next(p for p in predictions.list_predictions(s) if p.score is not None)
        inst = next(
            i for st in studies.list_studies(s, limit=None) for i in studies.list_instances(s, st.study_uid)
            if i.id == pred.instance_id
        )  # fmt: skip
    reader = SignedInUser("dr.a", Role.RADIOLOGIST)

    def no_model(version: str) -> object:
        raise AssertionError(f"the model {version} was loaded for a map the pipeline stored")

    # Execute
    shown = explanation.explain_case(
        store.sf, reader, inst.study_uid, method="gradcam", model=no_model,  # type: ignore[arg-type]
        artifacts_dir=store.settings.artifacts_dir, now=store.now,
    )  # fmt: skip
    # Assert: the stored map, on the image's grid, in [0, 1]
    assert shown.reused and shown.heatmap.shape == (inst.rows, inst.columns)
    assert np.isfinite(shown.heatmap).all() and 0.0 <= shown.heatmap.min() <= shown.heatmap.max() <= 1.0


def test_stored_maps_refuses_inputs_and_shapes_that_do_not_pair(store: Store) -> None:
    from core.errors import BadInputError
    from core.explain.gradcam import stored_maps

    model = models.load_serving(store.sf, models_dir=store.models_dir)
    x = np.zeros((1, 8, 8), dtype=np.float32)
    with pytest.raises(BadInputError, match="2 inputs but 1 image shapes"):
        stored_maps(model, [x, x], [(8, 8)])
