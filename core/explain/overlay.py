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

__all__ = ["COLORMAPS", "DIVERGING_COLORMAPS", "blend", "colormap_lut", "overlay", "overlay_signed"]

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

#: Diverging maps for signed (SHAP) maps, negative end first: blue = evidence against the
#: finding, near-white = none, red = evidence for it. coolwarm is Moreland's (2009) map sampled
#: at five points; rdbu is ColorBrewer's RdBu, reversed so that red is positive.
_DIVERGING: Final[dict[str, tuple[tuple[int, int, int], ...]]] = {
    "coolwarm": ((59, 76, 192), (141, 176, 254), (221, 221, 221), (244, 154, 123), (180, 4, 38)),
    "rdbu": ((5, 48, 97), (67, 147, 195), (247, 247, 247), (214, 96, 77), (103, 0, 31)),
}
DIVERGING_COLORMAPS: Final = tuple(sorted(_DIVERGING))


@cache
def colormap_lut(cmap: str) -> npt.NDArray[np.float32]:
    """Return the 256-entry lookup table of ``cmap``: float32 RGB in [0, 255], shape (256, 3), read-only.

    >>> colormap_lut("gray")[[0, 255]].tolist()
    [[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]
    """
    table = _ANCHORS.get(cmap) or _DIVERGING.get(cmap)
    if table is None:
        choices = ", ".join((*COLORMAPS, *DIVERGING_COLORMAPS))
        raise BadInputError(f"unknown colour map {cmap!r} (choose one of {choices})")
    anchors = np.asarray(table, dtype=np.float64)
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


def _check_signed(a: FloatArray) -> None:
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise BadInputError(f"signed map must be a 2-D float array, got shape {a.shape} dtype {a.dtype}")
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (-1.0 <= lo and hi <= 1.0):
        raise BadInputError(f"signed map must lie in [-1, 1] and be finite, got range [{lo}, {hi}]")


def overlay_signed(
    gray01: FloatArray, signed: FloatArray, *, opacity: float, cmap: str = "coolwarm"
) -> npt.NDArray[np.uint8]:
    """Blend a signed map over ``gray01`` with a diverging colour map, weighted by its magnitude.

    Parameters
    ----------
    gray01 : ndarray of shape (H, W), float in [0, 1]
    signed : ndarray of shape (H, W), float in [-1, 1]
        A SHAP :class:`~core.explain.result.Explanation` heatmap: > 0 evidence for the finding.
    opacity : float in [0, 1]
        Colour weight where ``|signed| = 1``; each pixel's weight is ``opacity * |signed|``, so
        pixels without evidence show the image untouched (unlike :func:`overlay`, whose
        uniform blend would tint them with the map's neutral middle colour).
    cmap : {"coolwarm", "rdbu"} or any name :func:`colormap_lut` knows, default "coolwarm"
        -1 maps to the first entry of the table, 0 to the middle, +1 to the last.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8

    Examples
    --------
    >>> rgb = overlay_signed(np.full((1, 3), 0.5), np.array([[-1.0, 0.0, 1.0]]), opacity=1.0)
    >>> rgb[0, 0].tolist(), rgb[0, 1].tolist(), rgb[0, 2].tolist()
    ([59, 76, 192], [128, 128, 128], [180, 4, 38])
    """
    _check_unit("gray01", gray01)
    _check_signed(signed)
    if gray01.shape != signed.shape:
        raise BadInputError(f"image and map differ in shape: {gray01.shape} vs {signed.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise BadInputError(f"opacity must lie in [0, 1], got {opacity}")
    s = signed.astype(np.float32)
    colour = colormap_lut(cmap)[np.rint((s + 1.0) * 127.5).astype(np.intp)]
    alpha = (np.float32(opacity) * np.abs(s))[..., None]
    base = (np.float32(255.0) * gray01.astype(np.float32))[..., None]
    rgb = (1.0 - alpha) * base + alpha * colour
    out: npt.NDArray[np.uint8] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def blend(gray01: FloatArray, heat: FloatArray, *, opacity: float, cmap: str, signed: bool) -> npt.NDArray[np.uint8]:
    """Blend any method's map: :func:`overlay_signed` for signed maps, :func:`overlay` otherwise.

    A colour map of the wrong kind is replaced by the kind's default ("coolwarm" for signed maps,
    "jet" otherwise), so a reader's sequential choice for Grad-CAM never paints a SHAP map with
    a scale whose middle is not "no evidence".

    >>> blend(np.ones((1, 1)), np.zeros((1, 1)), opacity=1.0, cmap="jet", signed=True).tolist()
    [[[255, 255, 255]]]
    """
    if signed:
        return overlay_signed(gray01, heat, opacity=opacity, cmap=cmap if cmap in _DIVERGING else "coolwarm")
    return overlay(gray01, heat, opacity=opacity, cmap=cmap if cmap in _ANCHORS else "jet")
