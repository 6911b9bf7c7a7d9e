"""Put a model-grid map on the image's own pixel grid and scale it for display.

Grad-CAM maps are min-max scaled to [0, 1] (see :mod:`core.explain.gradcam`). Signed maps
(the SHAP methods) are divided by their largest magnitude, so they lie in [-1, 1] with the sign
kept: 0 still means "no evidence", and +0.5 is half the strongest evidence for the finding.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.types import FloatArray

__all__ = ["signed_unit_scale", "signed_on_image_grid"]

#: A map whose largest magnitude is at most this is treated as flat (no evidence anywhere).
_FLAT_ATOL: Final = 1e-12


def signed_unit_scale(raw: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Divide ``raw`` by its largest magnitude; a flat (all-zero) map stays zeros.

    Parameters
    ----------
    raw : Tensor of any shape, float

    Returns
    -------
    scaled : Tensor of the same shape, values in [-1, 1]
    flat : bool
        True when ``max |raw| <= 1e-12``: nothing moved the score, there is nothing to show.

    Examples
    --------
    >>> s, flat = signed_unit_scale(torch.tensor([-2.0, 1.0, 4.0]))
    >>> s.tolist(), flat
    ([-0.5, 0.25, 1.0], False)
    """
    peak = float(raw.abs().max()) if raw.numel() else 0.0
    if not np.isfinite(peak) or peak <= _FLAT_ATOL:
        return torch.zeros_like(raw), True
    return (raw / peak).clamp_(-1.0, 1.0), False


def signed_on_image_grid(
    raw: torch.Tensor, rows: int, cols: int, *, mode: Literal["bilinear", "nearest"] = "bilinear"
) -> tuple[FloatArray, bool]:
    """Resample one signed (S, S) map to (rows, cols), then scale it to [-1, 1].

    Parameters
    ----------
    raw : Tensor of shape (S, S)
    rows, cols : int
        The image's pixel grid.
    mode : {"bilinear", "nearest"}
        ``"nearest"`` keeps the edges of piecewise-constant (superpixel) maps.

    Returns
    -------
    heatmap : ndarray of shape (rows, cols), float32 in [-1, 1]
    flat : bool
    """
    src = raw.detach().float().cpu()[None, None]
    if mode == "nearest":
        grid = F.interpolate(src, size=(rows, cols), mode="nearest")
    else:
        grid = F.interpolate(src, size=(rows, cols), mode="bilinear", align_corners=False)
    scaled, flat = signed_unit_scale(grid[0, 0])
    heat: FloatArray = scaled.numpy().astype(np.float32, copy=False)
    return heat, flat
