"""Midranks and tie groups: the one sort every rank-based AUC computation shares.

Ties get the mean of the ranks they span (midranks), which is what makes a rank-sum AUC equal
the trapezoidal ROC area scikit-learn computes, ties included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import FloatArray, IntArray

__all__ = ["TieGroups", "midranks", "midranks_sorted", "tie_groups"]


@dataclass(frozen=True, slots=True)
class TieGroups:
    """Distinct values of a sorted array and where each run of equal values starts.

    Attributes
    ----------
    order : ndarray of shape (n_samples,)
        Stable ascending ``argsort`` of the input.
    group : ndarray of shape (n_samples,)
        For every input element (original order), the index of its tie group, 0 for the smallest value.
    starts : ndarray of shape (n_groups,)
        Start of each group in sorted order; group ``g`` spans ``starts[g]:starts[g + 1]``.
    n_groups : int
    """

    order: IntArray
    group: IntArray
    starts: IntArray
    n_groups: int


def tie_groups(x: FloatArray) -> TieGroups:
    """Sort ``x`` once (stable) and label each element with its tie group.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)

    Returns
    -------
    TieGroups

    Examples
    --------
    >>> tie_groups(np.array([0.3, 0.1, 0.3])).group.tolist()
    [1, 0, 1]
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.empty(xs.size, dtype=bool)
    new[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    group_sorted = np.cumsum(new) - 1
    group = np.empty(x.size, dtype=np.int64)
    group[order] = group_sorted
    starts = np.flatnonzero(new)
    return TieGroups(order=order, group=group, starts=starts, n_groups=int(starts.size))


def midranks_sorted(xs: FloatArray) -> FloatArray:
    """Midranks (1-based) of an array that is already sorted ascending.

    Examples
    --------
    >>> midranks_sorted(np.array([1.0, 2.0, 2.0, 5.0])).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    n = xs.size
    if n == 0:
        return np.empty(0, dtype=np.float64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    # Positions start+1 .. end (1-based) average to (start + 1 + end) / 2.
    return np.repeat((starts + ends + 1) / 2.0, ends - starts)


def midranks(x: FloatArray) -> FloatArray:
    """Midranks (1-based) of ``x`` in its original order, in O(n log n).

    Examples
    --------
    >>> midranks(np.array([0.3, 0.1, 0.3])).tolist()
    [2.5, 1.0, 2.5]
    """
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = midranks_sorted(x[order])
    return ranks
