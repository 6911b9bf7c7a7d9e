"""Does a heat map point at the lesion? The pointing game (Zhang et al., ECCV 2016).

A hit is a heat-map maximum that falls inside the lesion mask dilated by a tolerance of
``dilate_px`` pixels (a disk), which forgives the coarse resolution of a Grad-CAM layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from core.errors import BadInputError
from core.types import BoolArray, FloatArray

__all__ = ["peak_in_mask", "pointing_hit_rate"]


def peak_in_mask(heatmap: FloatArray, mask: BoolArray, *, dilate_px: int = 3) -> bool:
    """Whether the heat map's maximum lies within ``dilate_px`` pixels of the lesion mask.

    Parameters
    ----------
    heatmap : ndarray of shape (H, W), float
    mask : ndarray of shape (H, W), bool
        The lesion; must contain at least one pixel.
    dilate_px : int, default 3
        Tolerance radius in pixels (Euclidean disk); 0 asks for the peak inside the mask itself.

    Returns
    -------
    bool
        The first maximum in raster order (``np.argmax``) is within the mask dilated by a disk
        of radius ``dilate_px``. A flat map points nowhere: it is a miss, with a warning.

    Notes
    -----
    Equal to ``scipy.ndimage.binary_dilation(mask, structure=disk)[peak]`` (the disk is
    symmetric), but only the (2r+1)^2 window around the peak is read, not the whole image.

    Examples
    --------
    >>> heat = np.zeros((5, 5)); heat[0, 0] = 1.0
    >>> mask = np.zeros((5, 5), dtype=bool); mask[2, 2] = True
    >>> peak_in_mask(heat, mask, dilate_px=2), peak_in_mask(heat, mask, dilate_px=3)
    (False, True)
    """
    if heatmap.ndim != 2 or heatmap.shape != mask.shape:
        raise BadInputError(f"heatmap {heatmap.shape} and mask {mask.shape} must be 2-D and of the same shape")
    if dilate_px < 0:
        raise BadInputError(f"dilate_px must be >= 0, got {dilate_px}")
    if not mask.any():
        raise BadInputError("the mask is empty: the pointing game needs a lesion to point at")
    if not np.isfinite(heatmap).all():
        raise BadInputError("heatmap contains NaN or infinite values")
    if float(heatmap.max()) == float(heatmap.min()):
        warnings.warn("heat map is flat: it points nowhere, counted as a miss", stacklevel=2)
        return False
    r0, c0 = (int(i) for i in np.unravel_index(int(np.argmax(heatmap)), heatmap.shape))
    r = dilate_px
    rows = slice(max(0, r0 - r), min(heatmap.shape[0], r0 + r + 1))
    cols = slice(max(0, c0 - r), min(heatmap.shape[1], c0 + r + 1))
    yy, xx = np.ogrid[rows, cols]
    near = (yy - r0) ** 2 + (xx - c0) ** 2 <= r * r
    return bool((mask[rows, cols].astype(bool) & near).any())


def pointing_hit_rate(heatmaps: Sequence[FloatArray], masks: Sequence[BoolArray], dilate_px: int = 3) -> float:
    """Fraction of (heat map, mask) pairs whose peak hits the dilated mask.

    Parameters
    ----------
    heatmaps, masks : sequences of equal length of 2-D arrays
        Pairs of the same shape; each mask has a lesion (positive cases only).
    dilate_px : int, default 3

    Returns
    -------
    float
        Hits / pairs in [0, 1]; NaN with a warning when there are no pairs.
    """
    if len(heatmaps) != len(masks):
        raise BadInputError(f"{len(heatmaps)} heat maps but {len(masks)} masks")
    if not heatmaps:
        warnings.warn("no heat maps: the pointing hit rate is undefined, returning NaN", stacklevel=2)
        return float("nan")
    hits = 0
    for i, (heat, mask) in enumerate(zip(heatmaps, masks, strict=True)):
        try:
            hits += peak_in_mask(heat, mask, dilate_px=dilate_px)
        except BadInputError as exc:
            raise BadInputError(f"pair {i}: {exc}") from exc
    return hits / len(heatmaps)
