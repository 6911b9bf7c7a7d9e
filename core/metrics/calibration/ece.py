"""Expected calibration error: the count-weighted gap between prediction and observation per bin.

References
----------
Naeini, Cooper & Hauskrecht (2015), AAAI. Guo et al. (2017), ICML.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.metrics.calibration.reliability import BinStrategy, reliability_curve

__all__ = ["expected_calibration_error"]


def expected_calibration_error(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, *, n_bins: int = 10, strategy: BinStrategy | str = "uniform"
) -> float:
    """``sum_b (n_b / n) * |mean_predicted_b - fraction_positive_b|`` over non-empty bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples,)
        Probabilities in [0, 1].
    n_bins : int, default 10
    strategy : {"uniform", "quantile"}, default "uniform"

    Returns
    -------
    float
        In [0, 1]; lower is better. Defined for one class too.

    Examples
    --------
    >>> round(expected_calibration_error([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], n_bins=2), 3)
    0.175
    """
    curve = reliability_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy)
    weights = curve.count / curve.count.sum()
    return float(np.sum(weights * np.abs(curve.mean_predicted - curve.fraction_positive)))
