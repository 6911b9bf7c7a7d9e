"""Brier score: mean squared difference between predicted probability and outcome."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.metrics.base import check_binary

__all__ = ["brier_score_loss"]


def brier_score_loss(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Mean of ``(y_prob - y_true) ** 2``; lower is better (a ``*_loss``, as in scikit-learn).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples,)
        Probabilities in [0, 1].

    Returns
    -------
    float
        Defined for one class too (it then measures calibration only).

    Examples
    --------
    >>> round(brier_score_loss([0, 1, 1], [0.1, 0.9, 0.6]), 6)
    0.06
    """
    y, p = check_binary(y_true, y_prob, probability=True)
    return float(np.mean((p - y) ** 2))
