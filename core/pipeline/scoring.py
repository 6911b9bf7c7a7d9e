"""Score a batch of prepared files with one forward pass, in the main process, on the model's device.

The rows this produces are the ones :func:`core.models.inference.predict_images` produces for
the same images: an image outside the intended use is refused unscored, and every scored image
carries the batch's latency share, device, peak memory and precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.models.inference import ImagePrediction, predict_tensor
from core.models.loading import LoadedModel
from core.pipeline.work import Prepared

__all__ = ["score_prepared"]


def score_prepared(model: LoadedModel, items: Sequence[Prepared]) -> list[ImagePrediction]:
    """One prediction per item, in order; the items with a model input share one forward pass.

    Parameters
    ----------
    model : LoadedModel
        The serving model whose preprocessing made the inputs; never mutated.
    items : sequence of Prepared
        Each with ``model_input`` of shape (1, S, S), or a ``refusal``.

    Returns
    -------
    list of ImagePrediction
    """
    scorable = [i for i, item in enumerate(items) if item.model_input is not None]
    out: dict[int, ImagePrediction] = {}
    if scorable:
        inputs = [items[i].model_input for i in scorable]
        batch = torch.from_numpy(np.stack([x for x in inputs if x is not None]))
        scores = predict_tensor(model, batch)
        share_ms = scores.latency_ms / len(scorable)
        for i, score in zip(scorable, scores.scores, strict=True):
            out[i] = _prediction(
                model,
                items[i],
                score=float(score),
                latency_ms=share_ms,
                device=scores.device,
                peak=scores.peak_memory_bytes,
                amp=scores.amp,
                fallback=scores.fallback,
            )
    return [out[i] if i in out else _refused(model, item) for i, item in enumerate(items)]


def _prediction(  # noqa: PLR0913 - one argument per field the batch shares
    model: LoadedModel,
    item: Prepared,
    *,
    score: float,
    latency_ms: float,
    device: str,
    peak: int,
    amp: bool,
    fallback: str | None,
) -> ImagePrediction:
    return ImagePrediction(
        sop_instance_uid=item.meta.sop_instance_uid,
        study_instance_uid=item.meta.study_instance_uid,
        model_version=model.card.version,
        score=score,
        label=bool(score >= model.card.operating_threshold),
        input_sha256=item.input_sha256,
        latency_ms=latency_ms,
        device=device,
        peak_memory_bytes=peak,
        amp=amp,
        fallback=fallback,
    )


def _refused(model: LoadedModel, item: Prepared) -> ImagePrediction:
    """Outside the intended use: recorded with the reason, never sent to the model."""
    return ImagePrediction(
        sop_instance_uid=item.meta.sop_instance_uid,
        study_instance_uid=item.meta.study_instance_uid,
        model_version=model.card.version,
        score=None,
        label=None,
        input_sha256=None,
        latency_ms=None,
        device=None,
        peak_memory_bytes=None,
        amp=False,
        fallback=f"outside intended use: {item.refusal}",
    )
