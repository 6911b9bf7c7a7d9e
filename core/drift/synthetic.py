"""Seeded piecewise-constant test streams (after ``ruptures.datasets.pw_constant``), for tests and demos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.types import FloatArray, IntArray

__all__ = ["PiecewiseStream", "piecewise_gaussian", "piecewise_bernoulli", "random_segments"]


@dataclass(frozen=True, slots=True, eq=False)
class PiecewiseStream:
    """A stream whose parameter is constant between known change points.

    Attributes
    ----------
    values : ndarray of shape (n,)
    change_points : ndarray of shape (m,), int
        Index of the first observation of every segment but the first.
    levels : ndarray of shape (m + 1,)
        The mean (Gaussian) or rate (Bernoulli) of each segment.
    """

    values: FloatArray
    change_points: IntArray
    levels: FloatArray


def _bounds(n: int, change_points: Sequence[int], levels: Sequence[float]) -> IntArray:
    cps = np.asarray(change_points, dtype=np.intp)
    if len(levels) != cps.size + 1:
        raise ValueError(f"need one level per segment: {cps.size} change points, {len(levels)} levels")
    if cps.size and (cps[0] <= 0 or cps[-1] >= n or np.any(np.diff(cps) <= 0)):
        raise ValueError(f"change points must increase strictly inside (0, {n}), got {cps.tolist()}")
    return np.concatenate([[0], cps, [n]])


def piecewise_gaussian(
    n: int, *, change_points: Sequence[int], means: Sequence[float], sigma: float = 1.0, seed: int = 0
) -> PiecewiseStream:
    """Gaussian noise around a piecewise-constant mean.

    Parameters
    ----------
    n : int
        Length.
    change_points : sequence of int
        Where each new segment starts (strictly increasing, inside ``(0, n)``).
    means : sequence of float
        One mean per segment (``len(change_points) + 1``).
    sigma : float, default 1.0
        Noise standard deviation, the same in every segment.
    seed : int

    Examples
    --------
    >>> s = piecewise_gaussian(400, change_points=[200], means=[0.0, 1.0], seed=1)
    >>> s.values.shape, s.change_points.tolist()
    ((400,), [200])
    """
    bounds = _bounds(n, change_points, means)
    mean = np.repeat(np.asarray(means, dtype=np.float64), np.diff(bounds))
    noise = np.random.default_rng(seed).normal(0.0, sigma, n)
    return PiecewiseStream(mean + noise, bounds[1:-1].copy(), np.asarray(means, dtype=np.float64))


def piecewise_bernoulli(
    n: int, *, change_points: Sequence[int], rates: Sequence[float], seed: int = 0
) -> PiecewiseStream:
    """0/1 outcomes with a piecewise-constant success rate.

    Examples
    --------
    >>> s = piecewise_bernoulli(100, change_points=[50], rates=[0.1, 0.9], seed=0)
    >>> sorted(set(s.values.tolist()))
    [0.0, 1.0]
    """
    if any(not (0.0 <= r <= 1.0) for r in rates):
        raise ValueError(f"rates must lie in [0, 1], got {list(rates)}")
    bounds = _bounds(n, change_points, rates)
    p = np.repeat(np.asarray(rates, dtype=np.float64), np.diff(bounds))
    values = (np.random.default_rng(seed).random(n) < p).astype(np.float64)
    return PiecewiseStream(values, bounds[1:-1].copy(), np.asarray(rates, dtype=np.float64))


def random_segments(
    n: int, *, n_changes: int, min_size: int, jump: float, sigma: float = 1.0, seed: int = 0
) -> PiecewiseStream:
    """A Gaussian stream with ``n_changes`` change points at random, each a jump of +/- ``jump`` sigma.

    Segments are at least ``min_size`` long. Like ``ruptures.pw_constant`` but with a fixed jump
    size, so that a detector's difficulty does not vary from seed to seed.

    Raises
    ------
    ValueError
        If ``n_changes + 1`` segments of ``min_size`` do not fit in ``n``.
    """
    if (n_changes + 1) * min_size > n:
        raise ValueError(f"{n_changes + 1} segments of at least {min_size} do not fit in {n}")
    rng = np.random.default_rng(seed)
    # Spread the slack at random over the segments, then give each its minimum size.
    slack = n - (n_changes + 1) * min_size
    cuts = np.sort(rng.integers(0, slack + 1, n_changes))
    sizes = np.diff(np.concatenate([[0], cuts, [slack]])) + min_size
    cps = np.cumsum(sizes)[:-1]
    signs = rng.choice([-1.0, 1.0], n_changes)
    means = np.concatenate([[0.0], np.cumsum(signs * jump)])
    return piecewise_gaussian(n, change_points=cps.tolist(), means=means.tolist(), sigma=sigma, seed=seed + 1)
