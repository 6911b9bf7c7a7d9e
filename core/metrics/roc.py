"""The ROC curve: one point per distinct score, ties moving diagonally (for plots and the AUC check)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.metrics.base import check_binary, undefined
from core.metrics.ranks import tie_groups
from core.types import FloatArray

__all__ = ["RocCurve", "roc_curve"]


@dataclass(frozen=True, slots=True, eq=False)
class RocCurve:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1).

    Attributes
    ----------
    fpr, tpr : ndarray of shape (n_points,)
    thresholds : ndarray of shape (n_points,)
        Cases with ``score >= threshold`` are called positive; the first is ``inf``.
    """

    fpr: FloatArray = field(repr=False)
    tpr: FloatArray = field(repr=False)
    thresholds: FloatArray = field(repr=False)

    def thinned(self, max_points: int = 200) -> RocCurve:
        """At most about ``max_points`` points, keeping both ends (for charts of large sites)."""
        if self.fpr.size <= max_points:
            return self
        keep = np.unique(np.linspace(0, self.fpr.size - 1, max_points).round().astype(np.int64))
        return RocCurve(self.fpr[keep], self.tpr[keep], self.thresholds[keep])


def roc_curve(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> RocCurve:
    """ROC curve of binary labels and scores, one point per distinct score.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_score : array-like of shape (n_samples,)

    Returns
    -------
    RocCurve
        All-``nan`` rates (with a warning) when only one class is present.

    Examples
    --------
    >>> c = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> c.tpr.tolist(), c.fpr.tolist()
    ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    y, s = check_binary(y_true, y_score)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    ties = tie_groups(-s)  # descending scores
    pos = np.bincount(ties.group, weights=y, minlength=ties.n_groups)
    cnt = np.bincount(ties.group, minlength=ties.n_groups)
    tps = np.r_[0.0, np.cumsum(pos)]
    fps = np.r_[0.0, np.cumsum(cnt - pos)]
    thresholds = np.r_[np.inf, s[ties.order][ties.starts]]
    if n_pos == 0 or n_neg == 0:
        nan = undefined(f"ROC curve: single class ({n_pos} positive, {n_neg} negative)")
        return RocCurve(np.full(tps.size, nan), np.full(tps.size, nan), thresholds)
    return RocCurve(fps / n_neg, tps / n_pos, thresholds)
