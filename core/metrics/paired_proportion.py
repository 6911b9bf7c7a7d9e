"""Difference of two paired proportions (two models' sensitivity on the same positives), Newcombe's interval.

Two models read the same studies, so their hits are paired: a Wald interval that ignores the
pairing is too wide, one on the discordant pairs alone misbehaves near 0 and 1. Newcombe's hybrid
score interval (method 10) combines each proportion's Wilson interval with the phi correlation of
the pairs; it stays inside [-1, 1] and keeps its coverage where good models live.

References
----------
Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions
based on paired data", Statistics in Medicine 17:2635-2650 (method 10).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, undefined
from core.metrics.wilson import wilson_interval

__all__ = ["paired_proportion_difference"]


def paired_proportion_difference(
    first: npt.ArrayLike, second: npt.ArrayLike, *, confidence_level: float = DEFAULT_CONFIDENCE
) -> Interval:
    """``mean(first) - mean(second)`` for paired 0/1 outcomes, with Newcombe's method-10 interval.

    Parameters
    ----------
    first, second : array-like of shape (n,)
        0/1 (or boolean) outcomes of the same n cases, e.g. whether each model found each positive.
    confidence_level : float, default 0.95

    Returns
    -------
    Interval
        ``method="newcombe-paired"``; all NaN (with a warning) when ``n == 0``.

    Raises
    ------
    BadInputError
        Arrays of different shapes or values other than 0 and 1.

    Examples
    --------
    Two readers of 50 positives: 36 found by both, 12 only by the first, 2 only by the second.

    >>> a = [1] * 36 + [1] * 12 + [0] * 2
    >>> b = [1] * 36 + [0] * 12 + [1] * 2
    >>> r = paired_proportion_difference(a, b)
    >>> round(r.estimate, 3), round(r.lower, 3), round(r.upper, 3)
    (0.2, 0.057, 0.34)
    """
    x, y = _binary(first, "first"), _binary(second, "second")
    if x.shape != y.shape:
        raise BadInputError(f"paired outcomes need equal lengths, got {x.size} and {y.size}")
    n = int(x.size)
    if n == 0:
        nan = undefined("difference of paired proportions: no pairs")
        return Interval(nan, nan, nan, confidence_level, "newcombe-paired")
    both, only_first = int(np.sum(x & y)), int(np.sum(x & ~y))
    only_second, neither = int(np.sum(~x & y)), int(np.sum(~x & ~y))
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    w1 = wilson_interval(both + only_first, n, confidence_level=confidence_level)
    w2 = wilson_interval(both + only_second, n, confidence_level=confidence_level)
    phi = _phi(both, only_first, only_second, neither)
    d = p1 - p2
    lower = d - _root(p1 - w1.lower, w2.upper - p2, phi)
    upper = d + _root(w1.upper - p1, p2 - w2.lower, phi)
    return Interval(d, max(lower, -1.0), min(upper, 1.0), confidence_level, "newcombe-paired")


def _root(a: float, b: float, phi: float) -> float:
    """Square-and-add of two one-sided Wilson distances, corrected for the pairs' correlation."""
    return math.sqrt(max(a * a - 2.0 * phi * a * b + b * b, 0.0))


def _binary(values: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1 or not np.isin(arr, (0, 1)).all():
        raise BadInputError(f"{name} must be a 1-D array of 0/1 outcomes")
    return arr.astype(bool)


def _phi(a: int, b: int, c: int, d: int) -> float:
    """Phi correlation of the 2x2 table [[a, b], [c, d]]; 0 when a margin is empty (Newcombe's convention)."""
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    return 0.0 if denominator == 0 else (a * d - b * c) / math.sqrt(denominator)
