"""Area under the ROC curve from midranks (the Mann-Whitney statistic), ties counted as one half.

Equal to scikit-learn's ``roc_auc_score`` (the trapezoidal area under the tie-aware ROC curve):
both count a tied positive/negative pair as one half. The rank sum of half-integer midranks is
exact in float64 for any realistic size, so the two agree to rounding.
"""

from __future__ import annotations

import numpy.typing as npt

from core.metrics.base import check_binary, undefined
from core.metrics.ranks import midranks
from core.types import FloatArray, IntArray

__all__ = ["roc_auc_score", "auc_from_arrays"]


def roc_auc_score(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Area under the ROC curve of binary labels and scores.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels, 1 = finding present.
    y_score : array-like of shape (n_samples,)
        Scores; higher means the finding is more likely.

    Returns
    -------
    float
        P(score of a random positive > score of a random negative) + 0.5 P(tie); ``nan`` with an
        :class:`~core.errors.UndefinedMetricWarning` when only one class is present.

    Raises
    ------
    EmptySampleError
        No cases.

    Examples
    --------
    >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = check_binary(y_true, y_score)
    return auc_from_arrays(y, s)


def auc_from_arrays(y: IntArray, s: FloatArray, *, what: str = "sample") -> float:
    """:func:`roc_auc_score` on arrays already checked by :func:`~core.metrics.base.check_binary`."""
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        return undefined(f"AUC: {what} has a single class ({n_pos} positive, {n_neg} negative)", stacklevel=4)
    rank_sum = float(midranks(s)[y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
