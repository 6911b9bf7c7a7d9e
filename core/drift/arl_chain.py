"""In-control average run length (ARL0) of CUSUM and EWMA charts by Markov chain, and the threshold for a target.

Simulation (:mod:`core.drift.calibration`) costs ``n_streams * 3 * ARL0`` normal draws, so a
chart calibrated for one false alarm in millions of windows (a busy site, windows of a few
studies, many of them a day) takes hours. The Markov chain approximation of Brook & Evans (1972)
for CUSUM and of Lucas & Saccucci (1990) for EWMA costs the same at any ARL0: the chart's
statistic is discretised into ``states`` intervals between the reflecting barrier (or ``-limit``)
and the limit, a step is a transition matrix ``Q`` between them (the rest of each row is the
alarm), and the ARL from the start state is ``((I - Q)^-1 1)[start]``.

* **CUSUM** (``max(C+, C-) > h``, both sides from zero): one side's ARL by the chain, the two-sided
  ARL by ``1/ARL = 1/ARL+ + 1/ARL-`` (Lucas & Crosier 1982), which for in-control symmetric
  streams is ``ARL+ / 2``. The rule is exact when the sides cannot both be above zero and very
  close otherwise (Woodall 1984); the tests hold it to simulation and to Montgomery's table.
* **EWMA** (``|w_t| / sd_t > L`` with the exact time-varying ``sd_t``, ``w_0 = 0``): the early
  windows, whose limits are narrower, are stepped through one by one on the chain (a state
  is an alarm at ``t`` when its centre lies beyond ``L * sd_t``); once ``sd_t`` has reached its
  asymptote to the last bit the rest is one linear solve.

With a few hundred states the discretisation error is far below the simulation's own (a few
per cent at 1,000 streams); ``tests/core/drift/test_arl_chain.py`` measures both.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from core.drift.ewma import ewma_sd_factor
from core.types import FloatArray

__all__ = ["CUSUM_STATES", "EWMA_STATES", "cusum_arl", "ewma_arl", "threshold_for"]

#: Intervals of one CUSUM side between 0 and ``h`` (the atom at zero is one of them).
CUSUM_STATES: Final = 400
#: Intervals of the EWMA statistic between ``-L * sd`` and ``+L * sd`` (odd: one is centred on 0).
EWMA_STATES: Final = 401
#: Relative tolerance of the threshold search on log ARL (far below the chain's own error).
_XTOL: Final = 1e-7


def cusum_arl(k: float, h: float, *, states: int = CUSUM_STATES) -> float:
    """ARL0 of the two-sided CUSUM ``max(C+, C-) > h`` on in-control standard normal observations.

    Parameters
    ----------
    k : float
        Reference value (>= 0), in standard deviations.
    h : float
        Decision limit (> 0), in standard deviations.
    states : int
        Chain states of one side.

    Returns
    -------
    float
        Observations until the first alarm, on average, starting from ``C+ = C- = 0``.

    Examples
    --------
    >>> round(cusum_arl(0.5, 5.0))  # Montgomery, Table 9.3: 465
    465
    """
    if not (k >= 0 and h > 0 and math.isfinite(k) and math.isfinite(h)):
        raise ValueError(f"CUSUM needs k >= 0 and h > 0, got k={k}, h={h}")
    # Brook & Evans: state 0 is C = 0; state i (1..m-1) is the interval centred on i * w, and the
    # last one ends at h (w = 2h / (2m - 1)).
    w = 2.0 * h / (2 * states - 1)
    centres = np.arange(states) * w
    upper_edges = centres + w / 2.0  # the interval of state j is (j w - w/2, j w + w/2]
    # P(i -> j) for j >= 1: centre_i + z - k lands in state j's interval; P(i -> 0): it is <= w/2.
    shift = upper_edges[None, :] - centres[:, None] + k
    cdf = ndtr(shift)
    q = np.empty((states, states))
    q[:, 0] = cdf[:, 0]
    q[:, 1:] = cdf[:, 1:] - cdf[:, :-1]
    one_side = _absorption_time(q)[0]
    return float(one_side / 2.0)


def ewma_arl(lambda_: float, L: float, *, states: int = EWMA_STATES, time_varying: bool = True) -> float:  # noqa: N803
    """ARL0 of the two-sided EWMA chart on in-control standard normal observations, ``w_0 = 0``.

    Parameters
    ----------
    lambda_ : float
        Smoothing weight, ``0 < lambda_ <= 1``.
    L : float
        Limit, in standard deviations of ``w_t`` (> 0).
    states : int
        Chain states (made odd, so that one is centred on zero).
    time_varying : bool
        Limits ``L * sd_t`` with the exact ``sd_t`` of window ``t`` (Vigil's chart); False uses the
        asymptotic ``sd`` from the first window (the textbook chart of Lucas & Saccucci's tables).

    Returns
    -------
    float
        Observations until the first alarm, on average.

    Examples
    --------
    >>> round(ewma_arl(0.1, 2.814, time_varying=False))  # Lucas & Saccucci (1990), Table 3: 500
    500
    """
    if not (0 < lambda_ <= 1 and L > 0 and math.isfinite(L)):
        raise ValueError(f"EWMA needs 0 < lambda <= 1 and L > 0, got lambda={lambda_}, L={L}")
    states += 1 - states % 2
    half = L * math.sqrt(lambda_ / (2.0 - lambda_))
    w = 2.0 * half / states
    centres = (np.arange(states) - states // 2) * w
    # w_t = (1 - lambda) w_{t-1} + lambda z_t: from centre i into the interval around centre j.
    edges = np.concatenate([centres - w / 2.0, centres[-1:] + w / 2.0])
    cdf = ndtr((edges[None, :] - (1.0 - lambda_) * centres[:, None]) / lambda_)
    q = cdf[:, 1:] - cdf[:, :-1]
    start = states // 2
    if not time_varying or lambda_ == 1.0:
        return float(_absorption_time(q)[start])
    return _time_varying_ewma_arl(q, centres, lambda_, L, start)


def _time_varying_ewma_arl(q: FloatArray, centres: FloatArray, lambda_: float, L: float, start: int) -> float:  # noqa: N803
    """Step through the windows whose limits still cut off states, then solve the rest at once.

    Once ``L * sd_t`` is past the outermost centre no state is cut off any more, and the chain is
    the asymptotic one to the last bit: that is about ``log(states) / (2 lambda)`` windows.
    """
    outermost = float(np.abs(centres).max())
    alive = np.zeros(centres.size)
    alive[start] = 1.0  # P(no alarm yet, w_t in state j), t = 0
    expected = 1.0  # P(RL > 0)
    t = 1
    while (limit := L * float(ewma_sd_factor(np.array([t]), lambda_)[0])) < outermost:
        alive = (alive @ q) * (np.abs(centres) <= limit)
        expected += float(alive.sum())  # P(RL > t)
        t += 1
    # From here the limits cut nothing: the expected remaining windows from this distribution.
    return expected + float(alive @ _absorption_time(q)) - float(alive.sum())


def _absorption_time(q: FloatArray) -> FloatArray:
    """Expected steps to absorption from each transient state: ``(I - Q)^-1 1``."""
    return np.asarray(np.linalg.solve(np.eye(q.shape[0]) - q, np.ones(q.shape[0])))


def threshold_for(chart: str, parameter: float, arl0: float) -> tuple[float, float]:
    """The limit whose chain ARL0 equals ``arl0``, and that ARL0.

    Parameters
    ----------
    chart : {"cusum", "ewma"}
    parameter : float
        CUSUM ``k`` or EWMA ``lambda_``.
    arl0 : float
        Target in-control ARL (> 1).

    Returns
    -------
    threshold, achieved : float
    """
    if chart not in ("cusum", "ewma"):
        raise ValueError(f"no Markov chain for chart {chart!r}; expected 'cusum' or 'ewma'")
    if not (arl0 > 1 and math.isfinite(arl0)):
        raise ValueError(f"the target ARL0 must be a finite number above 1, got ARL0 {arl0}")

    def arl(c: float) -> float:
        return cusum_arl(parameter, c) if chart == "cusum" else ewma_arl(parameter, c)

    def gap(c: float) -> float:
        return math.log(arl(c)) - target

    target = math.log(arl0)
    lo, hi = 0.05, 1.0
    while arl(hi) < arl0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e3:
            raise ValueError(f"{chart} with parameter {parameter} cannot reach ARL0 {arl0}")
    found = float(brentq(gap, lo, hi, xtol=_XTOL * hi, rtol=_XTOL))
    return found, arl(found)
