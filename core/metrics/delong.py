"""DeLong's variance of the AUC and the tests built on it, by the fast midrank algorithm.

Sun & Xu (2014) compute DeLong's structural components from three midrankings: of all cases,
of positives only and of negatives only. Here one stable sort of all scores yields the other two
(positives and negatives keep their sorted order), so the whole computation is O(n log n).

References
----------
DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845.
Sun & Xu (2014), IEEE Signal Processing Letters 21(11):1389-1393.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from core.errors import BadInputError
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, check_binary, finite_or_none, undefined, z_critical
from core.metrics.ranks import midranks_sorted
from core.types import FloatArray, IntArray, JSONObject

__all__ = [
    "AucComparison",
    "DelongResult",
    "delong_auc",
    "delong_components",
    "delong_test_paired",
    "delong_test_unpaired",
]


@dataclass(frozen=True, slots=True)
class DelongResult:
    """AUC with DeLong's variance and the resulting normal-theory interval.

    Attributes
    ----------
    auc : float
    variance : float
        DeLong's estimate of Var(AUC); ``nan`` when undefined.
    n_positive, n_negative : int
    ci : Interval
        ``auc ± z * sqrt(variance)``, clipped to [0, 1].
    """

    auc: float
    variance: float
    n_positive: int
    n_negative: int
    ci: Interval

    @property
    def se(self) -> float:
        """Standard error, ``sqrt(variance)``."""
        return math.sqrt(self.variance) if self.variance >= 0 else float("nan")


@dataclass(frozen=True, slots=True)
class AucComparison:
    """A DeLong test of two AUCs: ``difference = auc_a - auc_b``.

    Attributes
    ----------
    auc_a, auc_b : float
    difference : Interval
        ``auc_a - auc_b`` with its normal-theory interval.
    se : float
        Standard error of the difference.
    z : float
        ``(difference - null_difference) / se``.
    p_value : float
        Two-sided p-value of ``H0: auc_a - auc_b == null_difference``.
    paired : bool
        True when both AUCs come from the same cases (the covariance term is used).
    """

    auc_a: float
    auc_b: float
    difference: Interval
    se: float
    z: float
    p_value: float
    paired: bool

    def to_dict(self) -> JSONObject:
        """JSON-ready; undefined values become None."""
        return {
            "auc_a": finite_or_none(self.auc_a),
            "auc_b": finite_or_none(self.auc_b),
            "difference": self.difference.to_dict(),
            "se": finite_or_none(self.se),
            "z": finite_or_none(self.z),
            "p_value": finite_or_none(self.p_value),
            "paired": self.paired,
        }


def delong_components(y: IntArray, s: FloatArray) -> tuple[float, FloatArray, FloatArray]:
    """AUC and DeLong's structural components of checked arrays with both classes present.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        0/1 labels with at least one of each.
    s : ndarray of shape (n_samples,)

    Returns
    -------
    auc : float
    v10 : ndarray of shape (n_positive,)
        For each positive (in input order), the fraction of negatives it outranks (ties count one half).
    v01 : ndarray of shape (n_negative,)
        For each negative (in input order), the fraction of positives that outrank it.
    """
    order = np.argsort(s, kind="stable")
    ss, pos = s[order], y[order] == 1
    m, n = int(pos.sum()), int((~pos).sum())
    tz = midranks_sorted(ss)
    within = np.empty(ss.size, dtype=np.float64)
    within[pos] = midranks_sorted(ss[pos])  # positives stay sorted inside the sorted whole
    within[~pos] = midranks_sorted(ss[~pos])
    auc = (float(tz[pos].sum()) - m * (m + 1) / 2.0) / (m * n)
    # Back to the input order, so that components of two scores of the same cases line up.
    placed = np.empty(ss.size, dtype=np.float64)
    placed[order] = tz - within
    is_pos = y == 1
    v10 = placed[is_pos] / n
    v01 = 1.0 - placed[~is_pos] / m
    return auc, v10, v01


def delong_auc(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, confidence_level: float = DEFAULT_CONFIDENCE
) -> DelongResult:
    """AUC with DeLong's variance and confidence interval.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    y_score : array-like of shape (n_samples,)
    confidence_level : float, default 0.95

    Returns
    -------
    DelongResult
        ``nan`` AUC, variance and bounds (with a warning) when only one class is present; a
        variance of ``nan`` when a class has a single case (its variance needs two).

    Examples
    --------
    >>> r = delong_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(r.auc, 4), round(r.variance, 5)
    (0.8889, 0.02469)
    """
    y, s = check_binary(y_true, y_score)
    z = z_critical(confidence_level)
    m = int(y.sum())
    n = int(y.size) - m
    if m == 0 or n == 0:
        nan = undefined(f"AUC: single class ({m} positive, {n} negative)")
        return DelongResult(nan, nan, m, n, Interval(nan, nan, nan, confidence_level, "delong"))
    auc, v10, v01 = delong_components(y, s)
    var = _component_variance(v10, v01)
    if math.isfinite(var):
        half = z * math.sqrt(var)
        ci = Interval(auc, max(0.0, auc - half), min(1.0, auc + half), confidence_level, "delong")
    else:  # a class with a single case: the AUC exists, its variance does not
        ci = Interval(auc, float("nan"), float("nan"), confidence_level, "delong")
    return DelongResult(auc, var, m, n, ci)


def _component_variance(v10: FloatArray, v01: FloatArray) -> float:
    if v10.size < 2 or v01.size < 2:
        return float("nan")
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


def delong_test_paired(
    y_true: npt.ArrayLike,
    y_score_a: npt.ArrayLike,
    y_score_b: npt.ArrayLike,
    *,
    null_difference: float = 0.0,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> AucComparison:
    """DeLong's test of two correlated AUCs: two scores of the same cases.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_score_a, y_score_b : array-like of shape (n_samples,)
        E.g. a model version and its successor, or raw and recalibrated scores.
    null_difference : float, default 0.0
        The difference under the null hypothesis.
    confidence_level : float, default 0.95

    Returns
    -------
    AucComparison
        ``paired=True``; NaN (with a warning) when a class is missing.
    """
    y, sa = check_binary(y_true, y_score_a)
    _, sb = check_binary(y, y_score_b)
    m = int(y.sum())
    if m == 0 or m == y.size:
        return _undefined_comparison(paired=True, confidence_level=confidence_level)
    auc_a, v10a, v01a = delong_components(y, sa)
    auc_b, v10b, v01b = delong_components(y, sb)
    if v10a.size < 2 or v01a.size < 2:
        var = float("nan")
    else:
        s10 = np.cov(np.vstack([v10a, v10b]), ddof=1)
        s01 = np.cov(np.vstack([v01a, v01b]), ddof=1)
        contrast = np.array([1.0, -1.0])
        var = float(contrast @ s10 @ contrast / v10a.size + contrast @ s01 @ contrast / v01a.size)
    return _comparison(auc_a, auc_b, var, null_difference, confidence_level, paired=True)


def delong_test_unpaired(
    a: DelongResult, b: DelongResult, *, null_difference: float = 0.0, confidence_level: float = DEFAULT_CONFIDENCE
) -> AucComparison:
    """Compare two AUCs of independent samples (a deployment site against the benchmark).

    The samples share no cases, so the variance of the difference is the sum of the two DeLong
    variances.

    Parameters
    ----------
    a, b : DelongResult
        From :func:`delong_auc` on each sample.
    null_difference : float, default 0.0
        E.g. 0 for "no gap", or the target gap for a one-sided reading.
    confidence_level : float, default 0.95

    Returns
    -------
    AucComparison
        ``difference = a.auc - b.auc``, ``paired=False``.
    """
    if math.isnan(a.auc) or math.isnan(b.auc):
        return _undefined_comparison(paired=False, confidence_level=confidence_level, warn=False)
    return _comparison(a.auc, b.auc, a.variance + b.variance, null_difference, confidence_level, paired=False)


def _comparison(
    auc_a: float, auc_b: float, var: float, null_difference: float, confidence_level: float, *, paired: bool
) -> AucComparison:
    if var < 0:  # pragma: no cover - a covariance matrix cannot give this, rounding aside
        raise BadInputError(f"negative variance of an AUC difference: {var!r}")
    diff = auc_a - auc_b
    se = math.sqrt(var) if math.isfinite(var) else float("nan")
    half = z_critical(confidence_level) * se
    if se > 0:
        zstat = (diff - null_difference) / se
        p = float(2.0 * norm.sf(abs(zstat)))
    else:  # identical scores give se == 0: no evidence either way unless the difference is off the null
        zstat = float("nan") if math.isnan(se) else (0.0 if diff == null_difference else math.copysign(math.inf, diff))
        p = float("nan") if math.isnan(se) else (1.0 if diff == null_difference else 0.0)
    ci = Interval(diff, diff - half, diff + half, confidence_level, "delong")
    return AucComparison(auc_a, auc_b, ci, se, zstat, p, paired)


def _undefined_comparison(*, paired: bool, confidence_level: float, warn: bool = True) -> AucComparison:
    nan = undefined("AUC difference: a sample has a single class", stacklevel=4) if warn else float("nan")
    return AucComparison(nan, nan, Interval(nan, nan, nan, confidence_level, "delong"), nan, nan, nan, paired)
