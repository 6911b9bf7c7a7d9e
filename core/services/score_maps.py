"""Grad-CAM maps stored with the scores: made per batch from the model inputs just scored, recorded in its transaction.

The viewer shows a study's stored map of the version serving its site (``core.services.explanation``
reuses it), so a study scored by the streaming pipeline (:mod:`core.pipeline`), ``vigil predict``,
a PACS pull or ``vigil init`` opens with its map already made. Only the float16 map on the target
layer's grid leaves the device and is written (a few hundred bytes a study); nothing on the
image's grid is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from core.explain.gradcam import StoredMap, scored_maps, stored_maps
from core.explain.result import ExplainMethod
from core.imaging.image import DicomMeta
from core.models.inference import BatchScorer, ImagePrediction, predictions_from, score_inputs
from core.models.loading import LoadedModel
from core.services.explanation import array_sha256, record_explanations, write_artifact
from core.store.explanations import ExplanationIn
from core.store.studies import InstanceRecord
from core.types import FloatArray

__all__ = ["MapInput", "WrittenMap", "map_scorer", "record_maps", "write_maps"]


@dataclass(frozen=True, slots=True, eq=False)
class MapInput:
    """What a study's map is made from: the model input just scored and the DICOM image's size.

    Attributes
    ----------
    model_input : ndarray of shape (1, S, S), float32
        :func:`core.models.preprocess.preprocess` of the pixels.
    image_shape : (int, int)
        The image's (rows, columns), recorded to rebuild the map on its grid.
    made : StoredMap or None
        The map, when the forward pass that scored the input made it too
        (:func:`core.explain.gradcam.scored_maps`); None: :func:`write_maps` makes it.
    """

    model_input: FloatArray
    image_shape: tuple[int, int]
    made: StoredMap | None = None


def map_scorer(model: LoadedModel, kept: dict[int, MapInput]) -> BatchScorer:
    """A batch scorer that makes each scored input's map in the scoring forward pass, keeping it in ``kept``.

    Where the card serves float32 on the model's device, the forward pass Grad-CAM makes is the
    scoring pass too (:func:`core.explain.gradcam.scored_maps`), and each kept map input carries
    its map; elsewhere the batch is scored as :func:`core.models.inference.score_inputs` scores
    it, and :func:`write_maps` makes the maps from the kept inputs.

    Parameters
    ----------
    model : LoadedModel
    kept : dict of int to MapInput
        Filled as batches are scored: each scored item's index (as the batch names it) to its
        map input.

    Returns
    -------
    BatchScorer
        For :func:`core.models.inference.predict_images`, or called directly with one batch.
    """

    def score(batch: Sequence[tuple[int, DicomMeta, FloatArray, str]]) -> list[ImagePrediction]:
        shapes = [(meta.rows, meta.columns) for _, meta, _, _ in batch]
        both = scored_maps(model, [x for _, _, x, _ in batch], shapes)
        if both is None:
            preds = score_inputs(model, [(meta, x, digest) for _, meta, x, digest in batch])
            made: Sequence[StoredMap | None] = [None] * len(batch)
        else:
            scores, made = both
            preds = predictions_from(model, [(meta, digest) for _, meta, _, digest in batch], scores)
        for (i, _, x, _), shape, stored in zip(batch, shapes, made, strict=True):
            kept[i] = MapInput(x, shape, stored)
        return preds

    return score


@dataclass(frozen=True, slots=True, eq=False)
class WrittenMap:
    """A scored study's map, its artifact already written (content-addressed, so a rerun rewrites nothing)."""

    map: StoredMap
    digest: str
    path: Path


def write_maps(
    model: LoadedModel,
    inputs: Sequence[MapInput | None],
    preds: Sequence[ImagePrediction],
    artifacts_dir: Path,
) -> list[WrittenMap | None]:
    """Grad-CAM of every scored item, in one pass per chunk, with its artifact written; None where unscored.

    Parameters
    ----------
    inputs : sequence of MapInput or None
        One per prediction, in the same order; None where no model input was made (refused).
    preds : sequence of ImagePrediction
        The predictions made from ``inputs``; only those with a score get a map.

    Written before the batch's transaction, as the DICOM files are: a map whose row never commits
    is an unreferenced file, and the rerun that records the row finds the same bytes in place.
    """
    pairs = enumerate(zip(inputs, preds, strict=True))
    scored = {i: x for i, (x, pred) in pairs if pred.score is not None and x is not None}
    todo = [x for x in scored.values() if x.made is None]
    fresh = iter(stored_maps(model, [x.model_input for x in todo], [x.image_shape for x in todo]))
    out: list[WrittenMap | None] = [None] * len(preds)
    for i, x in scored.items():  # in order, so the fresh maps come back in the order they were made
        m = x.made if x.made is not None else next(fresh)
        digest = array_sha256(m.cells)
        out[i] = WrittenMap(m, digest, write_artifact(artifacts_dir, digest, m.cells))
    return out


def record_maps(
    session: Session,
    scored: Sequence[tuple[InstanceRecord, int, WrittenMap | None]],
    *,
    model: LoadedModel,
    actor: str,
    now: Callable[[], datetime],
) -> int:
    """Record the map of each prediction this transaction just made, as ``explain_study`` would; how many.

    Parameters
    ----------
    scored : sequence of (InstanceRecord, int, WrittenMap or None)
        Each instance scored in this transaction, its new prediction's id and its written map
        (None: no map was made for it, and none is recorded). An instance scored before (a
        duplicate, or a resumed run) is not here: its map, if any, was recorded with its score.
    """
    params = {"model_version": model.card.version, "predicted_by": model.card.version}
    rows = [
        (
            ExplanationIn(
                prediction_id,
                ExplainMethod.GRADCAM.value,
                {**written.map.params, **params},
                written.digest,
                str(written.path),
            ),
            inst.study_uid,
        )  # fmt: skip
        for inst, prediction_id, written in scored
        if written is not None
    ]
    return len(record_explanations(session, rows, actor=actor, now=now))
