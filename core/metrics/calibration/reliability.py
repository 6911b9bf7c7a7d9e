"""Reliability curve: observed frequency of the finding against mean predicted probability, per bin."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import check_binary
from core.types import FloatArray, IntArray, JSONObject

__all__ = ["BinStrategy", "ReliabilityCurve", "bin_indices", "reliability_curve"]


class BinStrategy(StrEnum):
    """How probability bins are cut: equal width on [0, 1], or equal counts (quantiles)."""

    UNIFORM = "uniform"
    QUANTILE = "quantile"


@dataclass(frozen=True, slots=True, eq=False)
class ReliabilityCurve:
    """One point per non-empty bin.

    Attributes
    ----------
    mean_predicted : ndarray of shape (n_nonempty_bins,)
    fraction_positive : ndarray of shape (n_nonempty_bins,)
    count : ndarray of shape (n_nonempty_bins,)
        Cases in each bin.
    edges : ndarray of shape (n_bins + 1,)
        Bin edges, including empty bins.
    """

    mean_predicted: FloatArray = field(repr=False)
    fraction_positive: FloatArray = field(repr=False)
    count: IntArray = field(repr=False)
    edges: FloatArray = field(repr=False)

    def to_dict(self) -> JSONObject:
        """JSON-ready lists."""
        return {
            "mean_predicted": [float(v) for v in self.mean_predicted],
            "fraction_positive": [float(v) for v in self.fraction_positive],
            "count": [int(v) for v in self.count],
        }


def bin_indices(p: FloatArray, *, n_bins: int, strategy: BinStrategy | str) -> tuple[IntArray, FloatArray]:
    """Bin of every probability and the edges used (scikit-learn's ``calibration_curve`` binning).

    A probability on an inner edge falls in the lower bin.
    """
    if n_bins < 1:
        raise BadInputError(f"n_bins must be at least 1, got {n_bins}")
    strategy = BinStrategy(strategy)
    if strategy is BinStrategy.QUANTILE:
        edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], p).astype(np.int64), edges


def reliability_curve(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, *, n_bins: int = 10, strategy: BinStrategy | str = "uniform"
) -> ReliabilityCurve:
    """Observed frequency against mean prediction in each non-empty bin.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples,)
        Probabilities in [0, 1].
    n_bins : int, default 10
    strategy : {"uniform", "quantile"}, default "uniform"

    Returns
    -------
    ReliabilityCurve
        Equal to scikit-learn's ``calibration_curve`` (which returns ``prob_true, prob_pred``).

    Examples
    --------
    >>> c = reliability_curve([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], n_bins=2)
    >>> c.mean_predicted.round(2).tolist(), c.fraction_positive.tolist()
    ([0.15, 0.8], [0.0, 1.0])
    """
    y, p = check_binary(y_true, y_prob, probability=True)
    bins, edges = bin_indices(p, n_bins=n_bins, strategy=strategy)
    n = edges.size - 1
    count = np.bincount(bins, minlength=n)
    sum_p = np.bincount(bins, weights=p, minlength=n)
    sum_y = np.bincount(bins, weights=y, minlength=n)
    keep = count > 0
    return ReliabilityCurve(sum_p[keep] / count[keep], sum_y[keep] / count[keep], count[keep], edges)
