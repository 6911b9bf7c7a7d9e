from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import BadInputError, UnknownMethodError, UnknownStudyError
from core.explain.result import ExplainMethod
from core.imaging.dicom import read_dicom
from core.services import explanation, ingestion, models, prediction
from core.store import audit_log, studies
from tests.core.services.conftest import Env


def _ready(env: Env, cohort: Path, *, predict: bool = True) -> str:
    files = sorted((cohort / "dicom").rglob("*.dcm"))[:2]
    ingestion.ingest_paths(env.sf, files, site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    if predict:
        model = models.load_serving(env.sf, models_dir=env.models_dir)
        prediction.predict_pending(env.sf, model, site=None, batch_size=2, actor="t", now=env.now)
    with env.sf() as s:
        return studies.list_studies(s, limit=1)[0].study_uid


def _explain(env: Env, study_uid: str) -> explanation.StoredExplanation:
    model = models.load_serving(env.sf, models_dir=env.models_dir)
    return explanation.explain_study(
        env.sf,
        model,
        study_uid,
        method=ExplainMethod.GRADCAM,
        artifacts_dir=env.settings.artifacts_dir,
        lock=None,
        actor="t",
        now=env.now,
    )


def test_explanation_is_on_the_pixel_grid_stored_and_audited(env: Env, small_cohort: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    with env.sf() as s:
        inst = studies.list_instances(s, uid)[0]
    # Execute
    res = _explain(env, uid)
    # Assert
    assert res.heatmap.shape == read_dicom(Path(inst.path)).pixels.shape
    assert res.heatmap.dtype == np.float32 and 0.0 <= res.heatmap.min() and res.heatmap.max() <= 1.0
    stored = np.load(res.artifact_path)["heatmap"]
    assert explanation.array_sha256(stored) == res.sha256
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.action == "explanation_created" and last.payload["artifact_sha256"] == res.sha256


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(UnknownMethodError, match="'lime'.*gradcam"):
        explanation.parse_method("lime")


def test_unknown_study(env: Env) -> None:
    with pytest.raises(UnknownStudyError, match="1.2.3.4"):
        _explain(env, "1.2.3.4")


def test_study_without_prediction_is_refused(env: Env, small_cohort: Path) -> None:
    uid = _ready(env, small_cohort, predict=False)
    with env.sf() as s:
        before = audit_log.count_entries(s)
    with pytest.raises(BadInputError, match="no prediction"):
        _explain(env, uid)
    with env.sf() as s:
        assert audit_log.count_entries(s) == before
