"""One entry point for every explanation method, so callers name a method instead of a module."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from core.errors import BadInputError, UnknownMethodError
from core.explain.gradcam import explain_images
from core.explain.result import ExplainMethod, Explanation
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel

__all__ = ["explain", "parse_method"]


def parse_method(method: str | ExplainMethod) -> ExplainMethod:
    """Turn a method name into an :class:`ExplainMethod`, naming the choices when it is unknown.

    >>> parse_method("GradCAM")
    <ExplainMethod.GRADCAM: 'gradcam'>
    """
    try:
        return ExplainMethod(str(method).strip().lower())
    except ValueError:
        raise UnknownMethodError(str(method), tuple(m.value for m in ExplainMethod)) from None


def explain(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    method: str | ExplainMethod = ExplainMethod.GRADCAM,
    lock: threading.Lock | None = None,
    batch_size: int = 16,
) -> list[Explanation]:
    """Explain the model's score for each image with ``method``.

    Raises
    ------
    UnknownMethodError
        ``method`` is not an :class:`ExplainMethod`.
    BadInputError
        ``method`` is named but not implemented yet (the SHAP methods).
    OutsideIntendedUseError
        An image the model does not score.
    """
    chosen = parse_method(method)
    if chosen is not ExplainMethod.GRADCAM:
        raise BadInputError(f"method {chosen.value!r} is not available yet")
    return explain_images(model, images, lock=lock, batch_size=batch_size)
