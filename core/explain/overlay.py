"""Blend a heat map over a greyscale image into an RGB picture, with numpy only.

Drawing libraries stay out of ``core`` (rule R2): the colour maps are small built-in tables,
linear between published anchor colours, expanded once to 256 entries.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.types import FloatArray

__all__ = ["COLORMAPS", "colormap_lut", "overlay"]

#: Anchor colours (RGB, 0-255), evenly spaced from 0 to 1. inferno and viridis are the 11-step
#: samples of the matplotlib maps (as in viridisLite); jet is the classic piecewise-linear map.
_ANCHORS: Final[dict[str, tuple[tuple[int, int, int], ...]]] = {
    "jet": ((0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128),
            (255, 255, 0), (255, 128, 0), (255, 0, 0), (128, 0, 0)),
    "inferno": ((0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
                (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164)),
    "viridis": ((68, 1, 84), (72, 37, 118), (65, 68, 135), (53, 96, 141), (42, 120, 142), (33, 144, 140),
                (34, 168, 132), (67, 191, 113), (122, 209, 81), (187, 223, 39), (253, 231, 37)),
    "gray": ((0, 0, 0), (255, 255, 255)),
}  # fmt: skip

COLORMAPS: Final = tuple(sorted(_ANCHORS))


@cache
def colormap_lut(cmap: str) -> npt.NDArray[np.float32]:
    """Return the 256-entry lookup table of ``cmap``: float32 RGB in [0, 255], shape (256, 3), read-only.

    >>> colormap_lut("gray")[[0, 255]].tolist()
    [[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]
    """
    if cmap not in _ANCHORS:
        raise BadInputError(f"unknown colour map {cmap!r} (choose one of {', '.join(COLORMAPS)})")
    anchors = np.asarray(_ANCHORS[cmap], dtype=np.float64)
    at = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, at, anchors[:, c]) for c in range(3)], axis=1).astype(np.float32)
    lut.setflags(write=False)
    return lut


def _check_unit(name: str, a: FloatArray) -> None:
    if a.ndim != 2:
        raise BadInputError(f"{name} must be 2-D (H, W), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise BadInputError(f"{name} must be a float array in [0, 1], got dtype {a.dtype}")
    lo, hi = float(np.min(a)), float(np.max(a))  # NaN propagates, so the check below catches it
    if not (0.0 <= lo and hi <= 1.0):
        raise BadInputError(f"{name} must lie in [0, 1] and be finite, got range [{lo}, {hi}]")


def overlay(gray01: FloatArray, heat01: FloatArray, *, opacity: float, cmap: str = "jet") -> npt.NDArray[np.uint8]:
    """Colour ``heat01`` with ``cmap`` and blend it over ``gray01``.

    Parameters
    ----------
    gray01 : ndarray of shape (H, W), float
        The image, windowed to [0, 1].
    heat01 : ndarray of shape (H, W), float
        The heat map in [0, 1] (an :class:`~core.explain.result.Explanation` heatmap).
    opacity : float
        Weight of the colour in [0, 1]: 0 shows only the image, 1 only the heat map. Applied
        uniformly, so the colour of a zero heat value also shows (as in the original Grad-CAM
        figures); readers learn the colour bar once.
    cmap : {"jet", "inferno", "viridis", "gray"}, default "jet"

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        RGB, ``round((1 - opacity) * 255 * gray + opacity * lut[round(255 * heat)])``.

    Examples
    --------
    >>> overlay(np.ones((1, 1)), np.zeros((1, 1)), opacity=0.5, cmap="gray").tolist()
    [[[128, 128, 128]]]
    """
    _check_unit("gray01", gray01)
    _check_unit("heat01", heat01)
    if gray01.shape != heat01.shape:
        raise BadInputError(f"image and heat map differ in shape: {gray01.shape} vs {heat01.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise BadInputError(f"opacity must lie in [0, 1], got {opacity}")
    lut = colormap_lut(cmap)
    colour = lut[np.rint(heat01 * 255.0).astype(np.intp)]
    base = (np.float32(1.0 - opacity) * np.float32(255.0)) * gray01.astype(np.float32)
    rgb = base[..., None] + np.float32(opacity) * colour
    out: npt.NDArray[np.uint8] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out
