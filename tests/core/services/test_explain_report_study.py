"""Explaining a stored study with every method: stored, audited, viewed, exported; bad input writes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch

from core.cli import main
from core.errors import BadInputError, PixelsUnreadableError
from core.explain.dispatch import ExplainOptions
from core.explain.gradient_shap import GradientShapOptions
from core.explain.kernel_shap import KernelShapOptions
from core.explain.result import ExplainMethod
from core.models.card import read_card
from core.models.loading import LoadedModel
from core.services import explanation, ingestion, models, outcomes, prediction
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, explanations, studies
from tests.core.services.conftest import Env
from tests.factories import write_random_model

torch.set_num_threads(2)

SMALL = ExplainOptions(
    gradient_shap=GradientShapOptions(n_samples=2, batch_size=2),
    kernel_shap=KernelShapOptions(n_samples=4, batch_size=4, n_segments=8),
)
READER = SignedInUser("reader1", Role.RADIOLOGIST)


def _ready(env: Env, cohort: Path) -> str:
    files = sorted((cohort / "dicom" / "benchmark").glob("*.dcm"))
    ingestion.ingest_paths(env.sf, files, site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    model = models.load_serving(env.sf, models_dir=env.models_dir)
    prediction.predict_pending(env.sf, model, site=None, batch_size=4, actor="t", now=env.now)
    outcomes.load_ground_truth(env.sf, cohort / "manifest.csv", actor="t", now=env.now)  # the negatives
    with env.sf() as s:
        return studies.list_studies(s, limit=1)[0].study_uid


def _explain(
    env: Env, uid: str, method: ExplainMethod, model: LoadedModel | None = None
) -> explanation.StoredExplanation:
    loaded = model or models.load_serving(env.sf, models_dir=env.models_dir)
    return explanation.explain_study(
        env.sf,
        loaded,
        uid,
        method=method,
        artifacts_dir=env.settings.artifacts_dir,
        lock=None,
        actor="t",
        now=env.now,
        options=SMALL,
    )


def _counts(env: Env) -> tuple[int, int]:
    art = env.settings.artifacts_dir / "explanations"
    with env.sf() as s:
        return audit_log.count_entries(s), len(list(art.glob("*.npz"))) if art.exists() else 0


@pytest.mark.parametrize("method", [ExplainMethod.GRADIENTSHAP, ExplainMethod.KERNELSHAP])
def test_shap_maps_are_stored_signed_linked_and_audited(env: Env, small_cohort: Path, method: ExplainMethod) -> None:
    # Prepare
    uid = _ready(env, small_cohort)

    # Execute
    res = _explain(env, uid, method)

    # Assert
    assert res.signed and res.heatmap.min() >= -1.0 and res.heatmap.max() <= 1.0
    assert explanation.array_sha256(np.load(res.artifact_path)["heatmap"]) == res.sha256
    assert res.predicted_by == res.model_version == env.card.version and res.notice is None
    with env.sf() as s:
        last = audit_log.last_entry(s)
        inst = studies.list_instances(s, uid)[0]
        (row,) = [
            r
            for p, _ in explanations.scored_predictions_of_instance(s, inst.id)
            for r in explanations.list_explanations(s, p.id)
        ]
    assert last is not None and last.action == "explanation_created"
    assert last.payload["artifact_sha256"] == res.sha256 and last.payload["method"] == method.value
    assert row.method == method.value and row.params["model_version"] == env.card.version
    if method is ExplainMethod.GRADIENTSHAP:
        assert row.params["baseline_site"] == "benchmark" and row.params["baseline_instances"]


def test_explanation_by_another_version_than_the_predicting_one_says_so(
    env: Env, small_cohort: Path, tmp_path: Path
) -> None:
    # Prepare: v2 is registered but never predicted.
    uid = _ready(env, small_cohort)
    card2 = write_random_model(tmp_path / "v2", version="test-random-0.0.2", seed=1)
    models.register_model(env.sf, card2, source_dir=tmp_path / "v2", models_dir=env.models_dir, actor="t", now=env.now)
    from core.services.explain_report import load_version

    v2 = load_version(env.sf, card2.version, models_dir=env.models_dir)

    # Execute
    res = _explain(env, uid, ExplainMethod.GRADCAM, model=v2)

    # Assert
    assert res.version_mismatch and res.predicted_by == env.card.version and res.model_version == card2.version
    assert res.notice is not None and env.card.version in res.notice and card2.version in res.notice


def test_a_card_whose_target_layer_is_gone_writes_nothing(env: Env, small_cohort: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    model = models.load_serving(env.sf, models_dir=env.models_dir)
    broken = replace(model, card=replace(model.card, target_layer="layer9"))
    before = _counts(env)

    # Execute / Assert
    with pytest.raises(BadInputError, match="'layer9' does not exist"):
        _explain(env, uid, ExplainMethod.KERNELSHAP, model=broken)
    assert _counts(env) == before


def test_a_study_without_pixels_writes_nothing(env: Env, small_cohort: Path) -> None:
    # Prepare: the stored file lost its pixel data.
    uid = _ready(env, small_cohort)
    with env.sf() as s:
        path = Path(studies.list_instances(s, uid)[0].path)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    before = _counts(env)

    # Execute / Assert
    with pytest.raises(PixelsUnreadableError, match=uid):
        _explain(env, uid, ExplainMethod.GRADCAM)
    assert _counts(env) == before


def test_the_review_page_reuses_stored_maps_and_audits_views(env: Env, small_cohort: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    loads = []

    def provider(version: str) -> tuple[LoadedModel, object]:
        loads.append(1)
        import threading

        return models.load_named(env.sf, version, models_dir=env.models_dir), threading.Lock()

    def case() -> explanation.StoredExplanation:
        return explanation.explain_case(
            env.sf,
            READER,
            uid,
            method="gradcam",
            model=provider,
            artifacts_dir=env.settings.artifacts_dir,
            now=env.now,  # type: ignore[arg-type]
        )

    # Execute
    first, second = case(), case()
    explanation.record_viewed(env.sf, READER, second, now=env.now)

    # Assert
    assert not first.reused and second.reused and second.sha256 == first.sha256 and len(loads) == 1
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.action == "explanation_viewed" and last.actor == "reader1"
    assert last.payload["artifact_sha256"] == first.sha256 and last.payload["method"] == "gradcam"


def test_dicom_export_re_reads_and_references_the_study(env: Env, small_cohort: Path, tmp_path: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    res = _explain(env, uid, ExplainMethod.KERNELSHAP)
    with env.sf() as s:
        source = pydicom.dcmread(studies.list_instances(s, uid)[0].path)

    # Execute
    sc, seg = explanation.export_dicom(env.sf, res, out_dir=tmp_path / "out", actor="t", now=env.now)

    # Assert
    sc_ds, seg_ds = pydicom.dcmread(sc.path), hd.seg.segread(seg.path)
    for ds in (sc_ds, seg_ds):
        assert ds.StudyInstanceUID == uid and ds.PatientID == source.PatientID
        assert f"model {env.card.version}" in list(ds.SoftwareVersions)
    assert sc_ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc_ds.pixel_array.shape == (source.Rows, source.Columns, 3)
    assert seg_ds.number_of_segments == 2
    assert seg_ds.get_segment_description(1).algorithm_identification[0].AlgorithmVersion == env.card.version
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.action == "explanation_exported"
    assert last.payload["sop_instance_uids"] == [sc.sop_instance_uid, seg.sop_instance_uid]


def test_cli_exports_dicom_and_refuses_a_file_as_folder(
    env: Env, small_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    monkeypatch.setenv("VIGIL_HOME", str(env.settings.home))
    monkeypatch.setenv("VIGIL_DATABASE_URL", env.settings.database_url)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    before = _counts(env)

    # Execute
    bad = main(["explain", uid, "--method", "gradcam", "--export-dicom", str(a_file), "--json"])
    bad_err = capsys.readouterr().err
    good = main(["explain", uid, "--method", "gradcam", "--export-dicom", str(tmp_path / "dcm"), "--json"])
    data = json.loads(capsys.readouterr().out)

    # Assert
    assert bad == 2 and "must name a folder" in bad_err
    assert good == 0 and [d["kind"] for d in data["dicom"]] == ["secondary_capture", "segmentation"]
    assert pydicom.dcmread(data["dicom"][0]["path"]).StudyInstanceUID == uid
    assert _counts(env)[0] == before[0] + 2  # explanation_created + explanation_exported only
    assert read_card(env.models_dir / env.card.version / "card.json").version == data["model_version"]
