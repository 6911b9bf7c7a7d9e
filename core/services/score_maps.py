"""Grad-CAM maps stored with the scores: made per batch from the workers' model inputs, recorded in its transaction.

The viewer shows a study's stored map of the version serving its site (``core.services.explanation``
reuses it), so a study that arrives through the pipeline opens with its map already made. Only the
float16 map on the target layer's grid leaves the device and is written (a few hundred bytes a
study); nothing on the image's grid is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from core.explain.gradcam import StoredMap, stored_maps
from core.explain.result import ExplainMethod
from core.models.inference import ImagePrediction
from core.models.loading import LoadedModel
from core.pipeline.work import Prepared
from core.services.explanation import array_sha256, record_explanation, write_artifact
from core.store import predictions
from core.store.explanations import ExplanationIn
from core.store.model_versions import ModelVersionRecord
from core.store.studies import InstanceRecord

__all__ = ["WrittenMap", "record_maps", "write_maps"]


@dataclass(frozen=True, slots=True, eq=False)
class WrittenMap:
    """A scored study's map, its artifact already written (content-addressed, so a rerun rewrites nothing)."""

    map: StoredMap
    digest: str
    path: Path


def write_maps(
    model: LoadedModel, items: Sequence[Prepared], preds: Sequence[ImagePrediction], artifacts_dir: Path
) -> list[WrittenMap | None]:
    """Grad-CAM of every scored item, in one pass per chunk, with its artifact written; None where unscored.

    Written before the batch's transaction, as the DICOM files are: a map whose row never commits
    is an unreferenced file, and the rerun that records the row finds the same bytes in place.
    """
    scored = [i for i, pred in enumerate(preds) if pred.score is not None and items[i].model_input is not None]
    made = stored_maps(
        model,
        [items[i].model_input for i in scored],  # type: ignore[misc]  # checked just above
        [(items[i].meta.rows, items[i].meta.columns) for i in scored],
    )
    out: list[WrittenMap | None] = [None] * len(items)
    for i, m in zip(scored, made, strict=True):
        digest = array_sha256(m.cells)
        out[i] = WrittenMap(m, digest, write_artifact(artifacts_dir, digest, m.cells))
    return out


def record_maps(  # noqa: PLR0913 - the transaction's rows and the run's identity
    session: Session,
    chunk: Sequence[InstanceRecord],
    maps: Sequence[WrittenMap | None],
    fresh: set[int],
    *,
    model: LoadedModel,
    mv: ModelVersionRecord,
    actor: str,
    now: Callable[[], datetime],
) -> int:
    """Record the map of each instance this transaction scored (``fresh``), as ``explain_study`` would; how many.

    An instance scored before (a duplicate, or a resumed run) keeps what it has: its map, if any,
    was recorded with its score.
    """
    n = 0
    for inst, written in zip(chunk, maps, strict=True):
        if written is None or inst.id not in fresh:
            continue
        pred = predictions.prediction_for(session, inst.id, mv.id)
        if pred is None or pred.score is None:
            continue
        params = {**written.map.params, "model_version": model.card.version, "predicted_by": model.card.version}
        row = ExplanationIn(pred.id, ExplainMethod.GRADCAM.value, params, written.digest, str(written.path))
        record_explanation(session, row, study_uid=inst.study_uid, actor=actor, now=now)
        n += 1
    return n
