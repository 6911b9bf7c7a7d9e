"""Grad-CAM maps are stored on the layer grid as float16 and upsampled on load; old artifacts still load.

The tolerance a reader is promised: on the committed cohort, the map upsampled from the stored
float16 layer grid differs from the full-resolution float32 map computed before this change by
at most ``READER_TOL`` (2**-11 is float16's rounding on [0, 1]; bilinear weights sum to 1 and the
final min-max scaling keeps 0 and 1, so the error cannot grow past it, and 1e-3 leaves margin).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from core.config import SAMPLE_DATA_DIR
from core.explain.gradcam import _grad_cam_maps, _on_image_grid, explain_images
from core.explain.result import ExplainMethod
from core.imaging.dicom import read_dicom
from core.models.card import read_card
from core.models.loading import BUNDLED_DIR, load_model
from core.models.networks import resolve_layer
from core.models.preprocess import preprocess
from core.sampledata import MANIFEST_NAME, read_manifest
from core.services import explanation
from core.store import explanations, studies
from core.store.explanations import ExplanationIn
from core.types import JSONValue
from tests.core.services.conftest import Env, fixed_clock
from tests.core.services.test_explanation_service import _explain, _ready

READER_TOL = 1e-3


def _full_float32_maps(images: list) -> list[np.ndarray]:  # type: ignore[type-arg]
    """The maps as stored before compact storage: float32 upsampled on the device, then to the image grid."""
    model = load_model(read_card(BUNDLED_DIR / "card.json"), BUNDLED_DIR)
    layer = resolve_layer(model.network, model.card.target_layer)
    batch = torch.from_numpy(np.stack([preprocess(im.pixels, model.preprocessing) for im in images]))
    maps, _ = _grad_cam_maps(model.network, layer, batch.to(model.device), target=0)
    return [_on_image_grid(cam, *im.pixels.shape)[0] for cam, im in zip(maps, images, strict=True)]


def test_reader_map_from_compact_storage_matches_the_full_float32_map_on_the_committed_cohort() -> None:
    # Prepare: a handful of committed studies, positives and negatives
    rows = read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME)
    chosen = [r for r in rows if r.label == 1][:4] + [r for r in rows if r.label == 0][:4]
    images = [read_dicom(SAMPLE_DATA_DIR / r.path) for r in chosen]
    model = load_model(read_card(BUNDLED_DIR / "card.json"), BUNDLED_DIR)
    # Execute
    before = _full_float32_maps(images)
    after = explain_images(model, images, batch_size=8)
    # Assert
    for old, new in zip(before, after, strict=True):
        assert new.stored is not None and new.stored.dtype == np.float16
        assert list(new.stored.shape) == new.params["stored_shape"]
        assert new.heatmap.shape == old.shape
        assert float(np.abs(new.heatmap - old).max()) <= READER_TOL
        assert np.unravel_index(new.heatmap.argmax(), old.shape) == np.unravel_index(old.argmax(), old.shape)


def test_stored_artifact_is_the_layer_grid_and_loads_back_as_the_map_shown(env: Env, small_cohort: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    # Execute
    shown = _explain(env, uid)
    rec = _only_explanation(env, uid)
    loaded = explanation._load_artifact(rec)
    # Assert
    stored = np.load(shown.artifact_path)["heatmap"]
    assert stored.dtype == np.float16 and list(stored.shape) == rec.params["stored_shape"]
    assert explanation.array_sha256(stored) == rec.artifact_sha256 == shown.sha256
    assert rec.params["image_shape"] == list(shown.heatmap.shape)
    assert loaded is not None and np.array_equal(loaded, shown.heatmap)


def test_full_resolution_artifact_written_before_still_loads(env: Env, small_cohort: Path) -> None:
    # Prepare: a row and artifact as written before compact storage (no stored_shape in params)
    uid = _ready(env, small_cohort)
    old_map = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    digest = explanation.array_sha256(old_map)
    path = env.settings.artifacts_dir / "explanations" / f"{digest}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, heatmap=old_map)
    path.write_bytes(buf.getvalue())
    params: dict[str, JSONValue] = {
        "layer": "x",
        "input_size": 64,
        "model_version": env.card.version,
        "predicted_by": env.card.version,
    }
    with env.sf.begin() as s:
        rec = explanations.add_explanation(
            s, ExplanationIn(_prediction_id(env, uid), ExplainMethod.GRADCAM.value, params, digest, str(path)),
            now=fixed_clock(),
        )  # fmt: skip
    # Execute
    loaded = explanation._load_artifact(rec)
    # Assert
    assert loaded is not None and loaded.dtype == np.float32 and np.array_equal(loaded, old_map)


def test_damaged_compact_artifact_is_not_shown(env: Env, small_cohort: Path) -> None:
    # Prepare
    uid = _ready(env, small_cohort)
    shown = _explain(env, uid)
    stored = np.load(shown.artifact_path)["heatmap"].copy()
    stored[0, 0] = np.float16(0.5) if stored[0, 0] != np.float16(0.5) else np.float16(0.25)
    buf = io.BytesIO()
    np.savez_compressed(buf, heatmap=stored)
    shown.artifact_path.write_bytes(buf.getvalue())
    with env.sf() as s:
        rec = explanations.list_explanations(s, _prediction_id(env, uid))[0]
    # Execute / Assert
    assert explanation._load_artifact(rec) is None


def _prediction_id(env: Env, uid: str) -> int:
    from core.store import explanations as ex

    with env.sf() as s:
        inst = studies.list_instances(s, uid)[0]
        return ex.scored_predictions_of_instance(s, inst.id)[0][0].id


def _only_explanation(env: Env, uid: str) -> explanations.ExplanationRecord:
    pid = _prediction_id(env, uid)
    with env.sf() as s:
        return explanations.list_explanations(s, pid)[0]
