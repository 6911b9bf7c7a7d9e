"""Choosing CUSUM ``h`` and EWMA ``L`` from a target in-control average run length (ARL0), by simulation.

The textbook ``k = 0.5, h = 5`` (or ``L = 3``) fixes a threshold and lets the false-alarm rate
fall where it may; Vigil fixes the false-alarm rate instead. For a target ARL0 (the mean number
of in-control observations before a false alarm) the threshold is found on simulated standard
normal streams:

1. simulate ``n_streams`` in-control streams of ``horizon = 3 * arl0`` observations;
2. compute each stream's alarm statistic (CUSUM: ``max(C+, C-)``; EWMA: ``|w_t| / sd_t`` with the
   exact time-varying ``sd_t``) and keep only its running-maximum records;
3. the run length at threshold ``c`` is the time of the first record above ``c``, so the run
   lengths are known on the sample for any ``c``, and bisection finds the ``c`` where the ARL
   meets the target.

About 5% of the streams never alarm within the horizon. Their run lengths are censored, and the
ARL is estimated as ``mean(min(RL, horizon)) / (1 - censored share)``, which is exact for a
geometric run-length distribution (the in-control run length of both charts is close to
geometric once past the first few observations). The estimator is checked against fully observed
run lengths in the tests (1,000 fresh streams of ``8 * arl0`` observations).

Simulation costs ``n_streams * horizon`` draws, which grows with the ARL0: a busy site's windows
of a few studies, many a day, ask for ARL0s in the millions and hours of simulation. Past
:data:`MAX_SIMULATED_VALUES` the threshold comes from the Markov chain approximation instead
(:mod:`core.drift.arl_chain`), whose cost does not depend on the ARL0; the two agree within the
simulation's own error where both run (``tests/core/drift/test_arl_chain.py``), and the
calibration records which method found it.

Everything is seeded: the same arguments give the same threshold. Results are cached per process.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np

from core.drift import arl_chain
from core.drift.cusum import cusum_sides
from core.drift.ewma import ewma_normalized
from core.types import FloatArray, IntArray

__all__ = [
    "ChartKind",
    "Calibration",
    "DelayReport",
    "calibrate",
    "run_lengths",
    "detection_delay",
    "HORIZON_FACTOR",
    "MAX_SIMULATED_VALUES",
]

#: Calibration streams are this many target ARL0s long (see the censoring correction above).
HORIZON_FACTOR: Final = 3
_CHUNK: Final = 100  # streams simulated at once (memory: a few chunk x horizon arrays of doubles)
_CHUNK_VALUES: Final = 6_000_000  # at most this many simulated values at once (a few 48 MB arrays)


def _chunk(horizon: int) -> int:
    """Streams per simulated block: fewer for long horizons, so memory stays bounded.

    The normal draws come out of the generator in the same order whatever the block shape, so
    the threshold does not depend on it.
    """
    return max(1, min(_CHUNK, _CHUNK_VALUES // max(horizon, 1)))


_BISECTION_STEPS: Final = 60
#: Largest simulation (streams x horizon draws, about 20 s here) before the Markov chain takes over;
#: the default budget's daily charts (ARL0 17,532 days at 1,000 streams) stay just under it.
MAX_SIMULATED_VALUES: Final = 60_000_000
#: How a calibration found its threshold (:attr:`Calibration.method`).
SIMULATION: Final = "simulation"
MARKOV_CHAIN: Final = "markov chain"


class ChartKind(StrEnum):
    """The control charts calibrated here."""

    CUSUM = "cusum"
    EWMA = "ewma"


@dataclass(frozen=True, slots=True)
class Calibration:
    """A control chart's threshold for a target in-control ARL, and how it was found.

    Attributes
    ----------
    chart : ChartKind
    parameter : float
        CUSUM ``k`` or EWMA ``lambda_`` (given).
    threshold : float
        CUSUM ``h`` or EWMA ``L`` (found).
    arl0 : float
        Target in-control average run length, in observations.
    simulated_arl0 : float
        ARL0 at ``threshold``: on the calibration streams (censoring-corrected), or the chain's.
    n_streams, horizon, seed : int
        Simulation settings (``n_streams`` and ``horizon`` are 0 for the Markov chain).
    censored : float
        Share of calibration streams with no alarm within ``horizon`` at ``threshold`` (0 for the chain).
    method : str
        :data:`SIMULATION` or :data:`MARKOV_CHAIN`.
    """

    chart: ChartKind
    parameter: float
    threshold: float
    arl0: float
    simulated_arl0: float
    n_streams: int
    horizon: int
    seed: int
    censored: float
    method: str = SIMULATION

    @property
    def false_alarm_rate(self) -> float:
        """Expected false alarms per in-control observation, ``1 / arl0``."""
        return 1.0 / self.arl0


def _alarm_statistic(chart: ChartKind, parameter: float, z: FloatArray) -> FloatArray:
    if chart is ChartKind.CUSUM:
        upper, lower = cusum_sides(z, k=parameter)
        return np.maximum(upper, lower)
    return ewma_normalized(z, parameter)


def run_lengths(chart: ChartKind, parameter: float, threshold: float, z: FloatArray) -> IntArray:
    """First alarm time (1-based) of each stream; ``n + 1`` for a stream that never alarms.

    Parameters
    ----------
    chart : ChartKind
    parameter, threshold : float
        ``k, h`` (CUSUM) or ``lambda_, L`` (EWMA).
    z : ndarray of shape (n_streams, n)
        Standardized observations.

    Returns
    -------
    ndarray of shape (n_streams,), int
    """
    over = _alarm_statistic(ChartKind(chart), parameter, z) > threshold
    n = over.shape[-1]
    return np.asarray(np.where(over.any(axis=-1), over.argmax(axis=-1) + 1, n + 1), dtype=np.intp)


@dataclass(frozen=True, slots=True, eq=False)
class _Records:
    """Running-maximum records of every stream, padded with NaN values (never above a threshold)."""

    values: FloatArray  # (n_streams, max_records)
    times: IntArray  # (n_streams, max_records), 0-based index of the record
    horizon: int

    def arl(self, threshold: float) -> tuple[float, float]:
        """Censoring-corrected ARL at ``threshold`` and the share of censored streams."""
        over = self.values > threshold
        hit = over.any(axis=1)
        first = over.argmax(axis=1)
        observed = np.where(hit, self.times[np.arange(first.size), first] + 1, self.horizon)
        censored = float(1.0 - hit.mean())
        if censored >= 1.0:
            return math.inf, censored
        return float(observed.mean()) / (1.0 - censored), censored


def _records(chart: ChartKind, parameter: float, *, n_streams: int, horizon: int, seed: int) -> _Records:
    rng = np.random.default_rng(seed)
    vals: list[FloatArray] = []
    times: list[IntArray] = []
    chunk = _chunk(horizon)
    for start in range(0, n_streams, chunk):
        m = min(chunk, n_streams - start)
        running = np.maximum.accumulate(_alarm_statistic(chart, parameter, rng.standard_normal((m, horizon))), axis=1)
        rises = np.ones_like(running, dtype=bool)
        rises[:, 1:] = running[:, 1:] > running[:, :-1]
        for row in range(m):
            idx = np.flatnonzero(rises[row])
            vals.append(running[row, idx])
            times.append(idx)
    width = max(v.size for v in vals)
    values = np.full((n_streams, width), np.nan)
    at = np.full((n_streams, width), horizon, dtype=np.int64)
    for i, (v, t) in enumerate(zip(vals, times, strict=True)):
        values[i, : v.size] = v
        at[i, : t.size] = t
    return _Records(values, at, horizon)


@functools.lru_cache(maxsize=64)
def calibrate(
    chart: ChartKind | str, *, parameter: float, arl0: float, n_streams: int = 1000, seed: int = 20240601
) -> Calibration:
    """Find the threshold that gives ``arl0`` in-control, by simulation (cached per process).

    Parameters
    ----------
    chart : ChartKind or str
        ``"cusum"`` (threshold ``h`` for reference value ``k = parameter``) or ``"ewma"``
        (threshold ``L`` for ``lambda_ = parameter``).
    parameter : float
        ``k >= 0`` or ``0 < lambda_ <= 1``.
    arl0 : float
        Target in-control average run length, in observations (> 1).
    n_streams : int, default 1000
        Simulated streams; the relative standard error of the simulated ARL0 is about
        ``1 / sqrt(n_streams)``.
    seed : int
        Random seed of the simulation.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError
        A target ARL0 that the search range cannot reach, or bad settings.
    """
    kind = ChartKind(chart)
    if not (arl0 > 1 and math.isfinite(arl0)):
        raise ValueError(f"target ARL0 must be a finite number > 1, got {arl0}")
    if n_streams < 10:
        raise ValueError(f"calibration needs at least 10 simulated streams, got {n_streams}")
    horizon = int(math.ceil(HORIZON_FACTOR * arl0))
    if n_streams * horizon > MAX_SIMULATED_VALUES:
        threshold, achieved = arl_chain.threshold_for(kind.value, parameter, arl0)
        return Calibration(kind, parameter, threshold, arl0, achieved, 0, 0, seed, 0.0, MARKOV_CHAIN)
    rec = _records(kind, parameter, n_streams=n_streams, horizon=horizon, seed=seed)
    lo, hi = 0.0, float(np.nanmax(rec.values))
    if rec.arl(hi)[1] < 0.5 and rec.arl(hi)[0] < arl0:
        raise ValueError(f"{kind} with parameter {parameter} cannot reach ARL0 {arl0} within {horizon} observations")
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if rec.arl(mid)[0] >= arl0:
            hi = mid
        else:
            lo = mid
    achieved, censored = rec.arl(hi)
    return Calibration(kind, parameter, hi, arl0, achieved, n_streams, horizon, seed, censored)


@dataclass(frozen=True, slots=True)
class DelayReport:
    """How fast a calibrated chart detects a sustained shift that is present from the start.

    Attributes
    ----------
    shift : float
        Size of the shift, in standard deviations of one observation.
    mean_delay, median_delay : float
        Observations from the first shifted one to the alarm (1 = alarm on the first shifted
        observation): the zero-state out-of-control ARL (ARL1) and its median.
    n_streams : int
    never : float
        Share of streams with no alarm within the simulated horizon.
    """

    shift: float
    mean_delay: float
    median_delay: float
    n_streams: int
    never: float


def detection_delay(
    calibration: Calibration, *, shift: float = 1.0, n_streams: int = 1000, horizon: int = 2000, seed: int = 7
) -> DelayReport:
    """Simulate the detection delay of a calibrated chart for a sustained ``shift`` (in sigma).

    Examples
    --------
    >>> cal = calibrate("cusum", parameter=0.5, arl0=200.0, n_streams=200)
    >>> detection_delay(cal, shift=3.0, n_streams=200).median_delay <= 3
    True
    """
    rng = np.random.default_rng(seed)
    rl = np.concatenate(
        [
            run_lengths(
                calibration.chart,
                calibration.parameter,
                calibration.threshold,
                rng.standard_normal((min(_CHUNK, n_streams - s), horizon)) + shift,
            )
            for s in range(0, n_streams, _CHUNK)
        ]
    )
    hit = rl <= horizon
    return DelayReport(
        shift=shift,
        mean_delay=float(rl.mean()),
        median_delay=float(np.median(rl)),
        n_streams=n_streams,
        never=float(1.0 - hit.mean()),
    )
