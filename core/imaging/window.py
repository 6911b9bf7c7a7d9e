"""Linear VOI windowing (DICOM PS3.3 C.11.2.1.2.1) onto [0, 1] for display and model input."""

from __future__ import annotations

from typing import Final

import numpy as np

from core.errors import BadInputError
from core.imaging.image import DicomImage
from core.types import FloatArray

__all__ = ["PERCENTILES", "apply_window", "default_window"]

#: Percentiles of the pixel values that bound the fallback window.
PERCENTILES: Final[tuple[float, float]] = (0.5, 99.5)


def apply_window(pixels: FloatArray, *, center: float, width: float) -> FloatArray:
    """Map modality values to [0, 1] with the DICOM linear VOI function.

    ``y = ((x - (c - 0.5)) / (w - 1) + 0.5)`` clipped to [0, 1]: values at or below
    ``c - 0.5 - (w - 1) / 2`` give 0 and values above ``c - 0.5 + (w - 1) / 2`` give 1. A width
    of exactly 1 is the standard's threshold: 0 at or below ``c - 0.5``, 1 above.

    Parameters
    ----------
    pixels : ndarray of any shape
        Values in modality units (``DicomImage.pixels``).
    center, width : float
        Window centre and width in the same units; ``width >= 1``.

    Returns
    -------
    ndarray of the same shape, float32
        Values in [0, 1]; NaN stays NaN.

    Raises
    ------
    BadInputError
        ``width < 1`` or a non-finite centre or width: the window is undefined.

    Examples
    --------
    >>> apply_window(np.array([0.0, 40.0, 80.0]), center=40.5, width=81.0).tolist()
    [0.0, 0.5, 1.0]
    """
    if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
        raise BadInputError(f"undefined window: need a finite centre and width >= 1, got {center=}, {width=}")
    x = np.asarray(pixels, dtype=np.float32)
    if width == 1:
        return np.where(np.isnan(x), np.float32(np.nan), (x > center - 0.5).astype(np.float32))
    out = (x - np.float32(center - 0.5)) * np.float32(1.0 / (width - 1)) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def default_window(image: DicomImage) -> tuple[float, float]:
    """Choose the window to show an image with: the file's first window, else its percentile range.

    Parameters
    ----------
    image : DicomImage

    Returns
    -------
    (center, width) : tuple of float
        In the units of ``image.pixels``. The file's centre is negated for MONOCHROME1, whose
        pixels ``core.imaging.dicom`` negates. The fallback maps the 0.5th percentile to 0 and the
        99.5th to 1.

    Raises
    ------
    BadInputError
        The image has no finite pixel value, so no window is defined.
    """
    meta = image.meta
    if meta.window_center is not None and meta.window_width is not None and meta.window_width >= 1:
        sign = -1.0 if meta.photometric_interpretation == "MONOCHROME1" else 1.0
        return sign * meta.window_center, meta.window_width
    finite = image.pixels[np.isfinite(image.pixels)]
    if finite.size == 0:
        raise BadInputError(f"image {meta.sop_instance_uid or '(no SOPInstanceUID)'} has no finite pixel value")
    lo, hi = (float(v) for v in np.percentile(finite, PERCENTILES))
    # Solve c - 0.5 -/+ (w - 1) / 2 = lo / hi for the linear VOI function above.
    return (lo + hi) / 2 + 0.5, hi - lo + 1.0
