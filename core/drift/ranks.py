"""Sequential ranks and sequential normal scores: a distribution-free way to standardize a stream (pure).

A model's scores live in [0, 1] and are a mixture (most studies near 0, the positives near 1);
image statistics mix departmental PA and portable AP films. Standardizing such values as if they
were normal gives a chart tails it was not calibrated for: one positive study on a quiet day is a
"three sigma" window, and the false-alarm rate is several times the design. Ranks avoid the
question of the distribution altogether.

The *sequential rank* of ``x_i`` is its rank among ``x_1 .. x_i`` (itself included). When the
values are exchangeable (in control, whatever their distribution), sequential ranks are
independent and ``r_i`` is uniform on ``1 .. i`` (Barndorff-Nielsen 1963, "On the limit
behaviour of extreme order statistics", *Ann. Math. Statist.* 34; Parent 1965). Mapping
``(r_i - 1/2) / i`` through the standard normal quantile gives the *sequential normal score*
(Conover, Tercero-Gomez & Cordero-Franco 2017, "The sequential normal scores transformation",
*Sequential Analysis* 36(3): 397-414): independent, mean 0, symmetric, variance just under 1, so
CUSUM and EWMA limits calibrated on N(0, 1) keep their in-control run length on any continuous
distribution. Ties get the mid-rank.

The price is a bounded score: a value above everything seen so far scores
``ndtri(1 - 1/(2 i))`` (2.58 after 100 values), so a huge shift is detected after a few
observations rather than one.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
from scipy.special import ndtri

from core.types import FloatArray

__all__ = ["sequential_ranks", "sequential_normal_scores", "normal_score_variance"]

#: Beyond this many values the variance of a normal score is 1 to within 0.5 %.
_EXACT_VARIANCE_UP_TO: Final = 2048


def sequential_ranks(x: FloatArray) -> FloatArray:
    """Mid-rank of every value among itself and the values before it.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Finite values, in arrival order.

    Returns
    -------
    ndarray of shape (n,)
        ``1 + #{j < i: x_j < x_i} + #{j < i: x_j == x_i} / 2``; between 1 and ``i`` (1-based ``i``).

    Notes
    -----
    Counted level by level as in merge sort: at block size ``s`` every element of the right half
    of a ``2s`` block is looked up in its left half, sorted, with one vectorized ``searchsorted``.
    ``O(n log^2 n)`` time, ``O(n)`` memory, no Python loop over elements.

    Examples
    --------
    >>> sequential_ranks(np.array([3.0, 1.0, 2.0, 2.0, 5.0])).tolist()
    [1.0, 1.0, 2.0, 2.5, 5.0]
    """
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"sequential ranks need a 1-D array, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("sequential ranks need finite values: drop NaN before ranking")
    n = v.size
    less = np.zeros(n, dtype=np.int64)
    equal = np.zeros(n, dtype=np.int64)
    if n < 2:
        return np.ones(n)
    dense = np.unique(v, return_inverse=True)[1].astype(np.int64)
    span = int(dense.max()) + 1  # keys block * span + value never collide across blocks
    idx = np.arange(n, dtype=np.int64)
    size = 1
    while size < n:
        block = idx // (2 * size)
        right = (idx % (2 * size)) >= size
        left_keys = np.sort(block[~right] * span + dense[~right])
        base = block[right] * span
        key = base + dense[right]
        start = np.searchsorted(left_keys, base, side="left")
        below = np.searchsorted(left_keys, key, side="left")
        upto = np.searchsorted(left_keys, key, side="right")
        less[right] += below - start
        equal[right] += upto - below
        size *= 2
    return np.asarray(1.0 + less + 0.5 * equal)


def normal_score_variance(i: np.ndarray) -> FloatArray:
    """Variance of ``ndtri((r - 1/2) / i)`` for ``r`` uniform on ``1 .. i`` (mean 0 by symmetry).

    Exact up to :data:`_EXACT_VARIANCE_UP_TO` values, 1 beyond (it is the midpoint rule for
    ``integral of ndtri(u)**2 du = 1``).

    Parameters
    ----------
    i : ndarray of int
        Number of values ranked (>= 1).

    Examples
    --------
    >>> normal_score_variance(np.array([1, 2])).round(4).tolist()
    [0.0, 0.4549]
    """
    ii = np.asarray(i, dtype=np.int64)
    table = _variance_table()
    return np.where(ii <= _EXACT_VARIANCE_UP_TO, table[np.clip(ii, 0, _EXACT_VARIANCE_UP_TO)], 1.0)


@functools.cache
def _variance_table() -> FloatArray:
    # Every (m, r) pair at once: m repeated m times, r = 1..m within each group.
    m = np.arange(1, _EXACT_VARIANCE_UP_TO + 1)
    starts = np.concatenate([[0], np.cumsum(m)[:-1]])
    group = np.repeat(m, m)
    r = np.arange(group.size) - np.repeat(starts, m) + 1
    table = np.zeros(_EXACT_VARIANCE_UP_TO + 1)
    table[1:] = np.add.reduceat(ndtri((r - 0.5) / group) ** 2, starts) / m
    table.setflags(write=False)
    return table


def sequential_normal_scores(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Sequential normal scores of finite values in arrival order, and the variance of each.

    Parameters
    ----------
    x : ndarray of shape (n,)

    Returns
    -------
    scores : ndarray of shape (n,)
        ``ndtri((r_i - 1/2) / i)``; the first is 0.
    variances : ndarray of shape (n,)
        In-control variance of each score (:func:`normal_score_variance`), so that a sum of
        scores can be put on the unit scale exactly.

    Examples
    --------
    >>> z, var = sequential_normal_scores(np.array([0.2, 0.9, 0.1]))
    >>> z.round(3).tolist(), var.round(3).tolist()
    ([0.0, 0.674, -0.967], [0.0, 0.455, 0.624])
    """
    ranks = sequential_ranks(x)
    i = np.arange(1, ranks.size + 1)
    return np.asarray(ndtri((ranks - 0.5) / i)), normal_score_variance(i)
