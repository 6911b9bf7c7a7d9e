"""Score a batch of prepared files with one forward pass, in the main process, on the model's device.

The rows this produces are the ones :func:`core.models.inference.predict_images` produces for
the same images: an image outside the intended use is refused unscored, and every scored image
carries the batch's latency share, device, peak memory and precision.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.models.inference import ImagePrediction, refused_prediction, score_inputs
from core.models.loading import LoadedModel
from core.pipeline.work import Prepared
from core.services.score_maps import MapInput

__all__ = ["map_input", "score_prepared"]


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
    inputs = [(i, item.meta, item.model_input, item.input_sha256) for i, item in enumerate(items)]
    scorable = [(i, meta, x, digest) for i, meta, x, digest in inputs if x is not None and digest is not None]
    scored = score_inputs(model, [(meta, x, digest) for _, meta, x, digest in scorable]) if scorable else []
    out = {i: pred for (i, *_), pred in zip(scorable, scored, strict=True)}
    return [out.get(i) or refused_prediction(model, item.meta, str(item.refusal)) for i, item in enumerate(items)]


def map_input(item: Prepared) -> MapInput | None:
    """What the item's Grad-CAM map is made from; None when it has no model input (refused)."""
    if item.model_input is None:
        return None
    return MapInput(item.model_input, (item.meta.rows, item.meta.columns))
