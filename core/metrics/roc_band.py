"""A pointwise bootstrap confidence band of the ROC curve, by vertical averaging on a fixed FPR grid.

Each replicate redraws the positives and the negatives separately, with replacement and keeping
each class's size (so no replicate loses a class), builds its ROC curve and reads the true
positive rate at every point of a fixed false positive rate grid (linear interpolation between
the curve's points, the highest TPR where the curve is vertical). The band at a grid point is the
percentile interval of those TPRs. It is *pointwise*: each grid point is covered with the stated
confidence, the whole curve jointly with less.

References
----------
Macskassy, Provost & Rosset (2005), ROC confidence bands: an empirical evaluation, ICML.
Fawcett (2006), An introduction to ROC analysis, Pattern Recognition Letters 27:861-874 (vertical averaging).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import DEFAULT_CONFIDENCE, check_binary, check_confidence_level, undefined
from core.metrics.roc import roc_curve
from core.types import FloatArray

__all__ = ["RocBand", "roc_band", "tpr_at"]

#: Grid points from FPR 0 to 1: steps of 0.01.
DEFAULT_GRID_POINTS = 101


@dataclass(frozen=True, slots=True, eq=False)
class RocBand:
    """The ROC curve on a fixed FPR grid with a pointwise percentile band of the TPR.

    Attributes
    ----------
    fpr : ndarray of shape (n_grid,)
        The grid, evenly spaced from 0 to 1.
    tpr : ndarray of shape (n_grid,)
        The observed curve's TPR at each grid point.
    lower, upper : ndarray of shape (n_grid,)
        Percentile bounds of the replicates' TPR at each grid point; ``nan`` when undefined.
    confidence_level : float
    n_resamples : int
    """

    fpr: FloatArray = field(repr=False)
    tpr: FloatArray = field(repr=False)
    lower: FloatArray = field(repr=False)
    upper: FloatArray = field(repr=False)
    confidence_level: float
    n_resamples: int
    method: str = "bootstrap-percentile, pointwise, class-stratified, vertical averaging"


def tpr_at(fpr: FloatArray, tpr: FloatArray, grid: FloatArray) -> FloatArray:
    """TPR of the curve ``(fpr, tpr)`` at each grid FPR.

    Parameters
    ----------
    fpr, tpr : ndarray of shape (n_points,)
        A ROC curve from (0, 0) to (1, 1), ``fpr`` non-decreasing.
    grid : ndarray of shape (n_grid,)

    Returns
    -------
    ndarray of shape (n_grid,)
        Linear interpolation between points; where the curve is vertical (one FPR, several TPRs)
        the highest TPR.
    """
    # The last point at or left of each grid value is the top of its vertical run; the line to the
    # next point (the foot of the next run) is the curve there. np.interp would join run tops instead.
    j = np.searchsorted(fpr, grid, side="right") - 1
    k = np.minimum(j + 1, fpr.size - 1)
    step = fpr[k] - fpr[j]
    frac = np.divide(grid - fpr[j], step, out=np.zeros_like(grid), where=step > 0)
    return tpr[j] + frac * (tpr[k] - tpr[j])


def roc_band(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence_level: float = DEFAULT_CONFIDENCE,
    random_state: int = 0,
    n_grid: int = DEFAULT_GRID_POINTS,
) -> RocBand:
    """The ROC curve with a pointwise bootstrap confidence band, reproducible for a seed.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    y_score : array-like of shape (n_samples,)
    n_resamples : int, default 1000
    confidence_level : float, default 0.95
    random_state : int, default 0
        Seed: the same data and seed give the same band.
    n_grid : int, default 101
        Grid points from FPR 0 to 1.

    Returns
    -------
    RocBand
        All-``nan`` (with a warning) when a class has fewer than two cases: a single case of a
        class redrawn gives a band of no width, which would look like certainty.

    Raises
    ------
    BadInputError
        ``n_resamples`` or ``n_grid`` below 2, or a bad confidence level.
    """
    y, s = check_binary(y_true, y_score)
    check_confidence_level(confidence_level)
    if n_resamples < 2 or n_grid < 2:
        raise BadInputError(f"need n_resamples >= 2 and n_grid >= 2, got {n_resamples} and {n_grid}")
    grid = np.linspace(0.0, 1.0, n_grid)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size < 2 or neg.size < 2:
        nan = np.full(n_grid, undefined(f"ROC band: {pos.size} positive, {neg.size} negative (needs 2 of each)"))
        return RocBand(grid, nan, nan, nan, confidence_level, n_resamples)
    curve = roc_curve(y, s)
    observed = tpr_at(curve.fpr, curve.tpr, grid)
    reps = _replicates(pos, neg, grid, n_resamples, np.random.default_rng(random_state))
    alpha = 1.0 - confidence_level
    lower, upper = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return RocBand(grid, observed, lower, upper, confidence_level, n_resamples)


def _replicates(
    pos: FloatArray, neg: FloatArray, grid: FloatArray, n_resamples: int, rng: np.random.Generator
) -> FloatArray:
    """TPR on the grid of every class-stratified replicate, shape (n_resamples, n_grid)."""
    labels = np.r_[np.ones(pos.size, dtype=np.int64), np.zeros(neg.size, dtype=np.int64)]
    out = np.empty((n_resamples, grid.size), dtype=np.float64)
    for r in range(n_resamples):
        scores = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        c = roc_curve(labels, scores)
        out[r] = tpr_at(c.fpr, c.tpr, grid)
    return out
