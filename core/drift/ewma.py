"""EWMA control chart with exact time-varying limits (Roberts 1959; Lucas & Saccucci 1990).

``w_t = lambda_ * x_t + (1 - lambda_) * w_{t-1}`` with ``w_0 = target``. The standard deviation of
``w_t`` after ``t`` in-control observations is exactly::

    sigma * sqrt(lambda_ / (2 - lambda_) * (1 - (1 - lambda_) ** (2 t)))

so the limits ``target +/- L * sd_t`` are narrow at the start and widen to their asymptote; using
the asymptotic limits from the first point would hide an early shift. ``L`` comes from a target
in-control average run length (:mod:`core.drift.calibration`).

The batch form is the same first-order recursive filter run by ``scipy.signal.lfilter``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from core.drift.base import DetectorTrace, DriftState, finite_view, last_true
from core.types import FloatArray, IntArray

__all__ = ["Ewma", "ewma_batch", "ewma_filter", "ewma_sd_factor", "ewma_normalized"]


def _check(lambda_: float, L: float, sigma: float) -> None:  # noqa: N803 - L is the textbook name
    if not (0.0 < lambda_ <= 1.0):
        raise ValueError(f"EWMA needs 0 < lambda_ <= 1, got lambda_={lambda_}")
    if not (L > 0 and math.isfinite(L)):
        raise ValueError(f"EWMA needs a finite L > 0, got L={L}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"EWMA needs a finite sigma > 0, got sigma={sigma}")


def ewma_sd_factor(t: IntArray | int, lambda_: float) -> FloatArray:
    """Standard deviation of the EWMA after ``t`` observations, in units of one observation's sigma.

    Examples
    --------
    >>> round(float(ewma_sd_factor(1, 0.2)), 12)  # after one observation w_1 = 0.2 x_1
    0.2
    """
    tt = np.asarray(t, dtype=np.float64)
    return np.asarray(np.sqrt(lambda_ / (2.0 - lambda_) * (1.0 - (1.0 - lambda_) ** (2.0 * tt))))


class Ewma:
    """Streaming EWMA chart.

    Parameters
    ----------
    lambda_ : float
        Smoothing weight in (0, 1]; small values detect small persistent shifts.
    L : float
        Limit width in standard deviations of the EWMA statistic.
    target : float, default 0.0
        In-control mean.
    sigma : float, default 1.0
        In-control standard deviation of one observation.
    """

    def __init__(self, *, lambda_: float, L: float, target: float = 0.0, sigma: float = 1.0) -> None:  # noqa: N803
        _check(lambda_, L, sigma)
        self.lambda_, self.L, self.target, self.sigma = lambda_, L, target, sigma
        self.reset()

    def reset(self) -> None:
        """Return to the start: the statistic sits on the target."""
        self.value = self.target
        self._n = 0
        self._skipped = 0

    @property
    def half_width(self) -> float:
        """Current distance from the target to either control limit."""
        return self.L * self.sigma * float(ewma_sd_factor(max(self._n, 1), self.lambda_))

    def update(self, x: float) -> DriftState:
        """Absorb one observation; a NaN is skipped and counted."""
        if not math.isfinite(x):
            self._skipped += 1
        else:
            self.value = self.lambda_ * x + (1.0 - self.lambda_) * self.value
            self._n += 1
        alarm = self._n > 0 and abs(self.value - self.target) > self.half_width
        return DriftState(n_seen=self._n, n_skipped=self._skipped, statistic=self.value, alarm=alarm)


def ewma_filter(d: FloatArray, lambda_: float) -> FloatArray:
    """EWMA of deviations from the target, along the last axis, starting from 0.

    Parameters
    ----------
    d : ndarray of shape (..., n)
        Finite deviations ``x - target``.

    Returns
    -------
    ndarray of shape (..., n)
        ``w_t - target``.

    Examples
    --------
    >>> ewma_filter(np.array([1.0, 1.0]), 0.5).tolist()
    [0.5, 0.75]
    """
    out = lfilter([lambda_], [1.0, -(1.0 - lambda_)], np.asarray(d, dtype=np.float64), axis=-1)
    return np.asarray(out)


def ewma_normalized(z: FloatArray, lambda_: float) -> FloatArray:
    """``|w_t - target| / sd_t`` of standardized observations: the chart alarms when this exceeds ``L``.

    Parameters
    ----------
    z : ndarray of shape (..., n)
        Standardized finite observations.
    """
    zz = np.asarray(z, dtype=np.float64)
    sd = ewma_sd_factor(np.arange(1, zz.shape[-1] + 1), lambda_)
    return np.asarray(np.abs(ewma_filter(zz, lambda_)) / sd)


def _half_widths(m: int, lambda_: float, scale: float) -> FloatArray:
    """``scale * ewma_sd_factor(1..m)``, computing only the first few hundred.

    Past the point where ``(1 - lambda_)**(2 t)`` underflows, the factor equals its asymptote to
    the last bit.
    """
    if lambda_ >= 1.0:
        return np.full(m, scale)
    settle = min(m, int(np.ceil(-40.0 / np.log(1.0 - lambda_))) + 1)
    out = np.full(m, scale * np.sqrt(lambda_ / (2.0 - lambda_)))
    out[:settle] = scale * ewma_sd_factor(np.arange(1, settle + 1), lambda_)
    return out


def ewma_batch(
    x: FloatArray,
    *,
    lambda_: float,
    L: float,  # noqa: N803
    target: float = 0.0,
    sigma: float = 1.0,
) -> DetectorTrace:
    """Run :class:`Ewma` over a whole stream at once; same statistic and alarms, vectorized.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Observations; NaN entries are skipped and counted (statistic and limits carry over them).
    lambda_, L, target, sigma : float
        As in :class:`Ewma`.

    Returns
    -------
    DetectorTrace
        ``statistic`` is ``w_t``; ``upper``/``lower`` the exact time-varying limits; ``change_point``
        at an alarm is the position after the statistic last sat on the other side of the target.

    Examples
    --------
    >>> trace = ewma_batch(np.array([0.0, 0.0, 4.0]), lambda_=0.5, L=2.0)
    >>> trace.alarm.tolist(), int(trace.change_point[2])
    ([False, False, True], 2)
    """
    _check(lambda_, L, sigma)
    fv = finite_view(x)
    # On already-standardized streams (target 0) skip the copies a shift would cost at 1M points.
    dev = ewma_filter(fv.values - target if target else fv.values, lambda_)
    half = _half_widths(fv.values.size, lambda_, L * sigma)
    alarm = np.abs(dev) > half
    hits = np.flatnonzero(alarm)
    # Change point at an alarm: after the statistic last sat on the other side of the target.
    cp = np.where(dev[hits] > 0, last_true(dev <= 0, hits), last_true(dev >= 0, hits)) + 1
    change = np.full(fv.values.size, -1, dtype=np.intp)
    change[hits] = fv.position_of(np.minimum(cp, max(fv.values.size - 1, 0)))
    first_half = L * sigma * float(ewma_sd_factor(1, lambda_))
    half_all = fv.spread(half, before=first_half)
    return DetectorTrace(
        detector="ewma",
        statistic=fv.spread(dev + target if target else dev, before=target),
        upper=target + half_all if target else half_all,
        lower=target - half_all if target else -half_all,
        alarm=fv.spread(alarm, before=False),
        change_point=fv.spread(change, before=-1),
        n_skipped=fv.skipped,
    )
