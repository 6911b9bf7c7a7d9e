"""Benchmarks of ``core.drift``: BOCPD scales linearly under its cap; batch CUSUM and EWMA beat a Python loop.

Cases (issue 6):

* BOCPD time(100k) / time(10k) <= 13 on a stationary stream (every run length stays plausible,
  the worst case for the state) and <= 12 on a segmented one; guard: the live-hypothesis counter
  never exceeds the cap, and the segmented stream's change points are found.
* batch CUSUM over 1M points / the same recursion as a plain Python loop <= 0.3; guard: identical
  alarms.
* batch EWMA (exact time-varying limits) / plain Python loop <= 0.15; guard: identical alarms.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from core.bench.harness import BenchResult, interleaved_medians
from core.drift.bocpd import Bocpd, bocpd
from core.drift.bocpd_models import GaussianModel
from core.drift.calibration import ChartKind, calibrate
from core.drift.cusum import cusum_batch
from core.drift.ewma import ewma_batch
from core.drift.monitor import MonitorSettings
from core.drift.synthetic import piecewise_gaussian
from core.types import FloatArray

__all__ = ["BOCPD_CAP", "run", "bench_bocpd_scaling", "bench_cusum", "bench_ewma"]

#: Live run-length hypotheses kept by the benchmarked BOCPD.
BOCPD_CAP: Final = 100
_SMALL, _LARGE = 10_000, 100_000
_CHART_POINTS: Final = 1_000_000
_SEGMENT: Final = 1_000  # observations per segment of the segmented stream


def run(*, rounds: int = 5) -> list[BenchResult]:
    """Every drift benchmark case.

    Parameters
    ----------
    rounds : int
        Interleaved timing rounds; BOCPD cases use at most 3 (a 100k run takes seconds).

    Returns
    -------
    list of BenchResult
        ``[BOCPD stationary, BOCPD segmented, CUSUM, EWMA]``.
    """
    return [
        bench_bocpd_scaling(segmented=False, target=13.0, rounds=min(rounds, 3)),
        bench_bocpd_scaling(segmented=True, target=12.0, rounds=min(rounds, 3)),
        bench_cusum(rounds=rounds),
        bench_ewma(rounds=rounds),
    ]


def _segmented(n: int) -> FloatArray:
    n_seg = n // _SEGMENT
    means = (np.arange(n_seg) % 2) * 3.0  # alternate 0 and 3 sigma
    cps = list(range(_SEGMENT, n, _SEGMENT))
    return piecewise_gaussian(n, change_points=cps, means=means.tolist(), seed=11).values


def bench_bocpd_scaling(*, segmented: bool, target: float, rounds: int = 3) -> BenchResult:
    """Time BOCPD on 100k and on 10k observations (same kind of stream); the ratio should be about 10."""
    rng = np.random.default_rng(5)
    small = _segmented(_SMALL) if segmented else rng.normal(size=_SMALL)
    large = _segmented(_LARGE) if segmented else rng.normal(size=_LARGE)
    detectors = {size: Bocpd(model=GaussianModel(), hazard=1 / 250, cap=BOCPD_CAP) for size in (_SMALL, _LARGE)}
    medians = interleaved_medians(
        {
            "large": lambda: bocpd(large, detector=detectors[_LARGE]),
            "small": lambda: bocpd(small, detector=detectors[_SMALL]),
        },
        rounds=rounds,
    )
    result = bocpd(large, detector=detectors[_LARGE])
    live_ok = result.max_live <= BOCPD_CAP
    found = _found_changes(result.change_points, _LARGE) if segmented else 1.0
    kind = "segmented" if segmented else "stationary"
    return BenchResult(
        name=f"BOCPD time(100k) / time(10k), {kind} stream",
        ratio=medians["large"] / medians["small"],
        target=target,
        guard=f"max live hypotheses <= cap {BOCPD_CAP}" + (", >= 95% of change points found" if segmented else ""),
        guard_ok=live_ok and found >= 0.95,
        absolutes={
            "large_s": medians["large"],
            "small_s": medians["small"],
            "us_per_observation": round(medians["large"] / _LARGE * 1e6, 2),
            "max_live": result.max_live,
            "cap": BOCPD_CAP,
            "change_points": int(result.change_points.size),
            "true_change_points": (_LARGE // _SEGMENT - 1) if segmented else 0,
        },
    )


def _found_changes(found: np.ndarray, n: int) -> float:
    truth = np.arange(_SEGMENT, n, _SEGMENT)
    return float(np.mean([np.any(np.abs(found - c) <= 10) for c in truth]))


def _cusum_loop(x: list[float], k: float, h: float) -> list[bool]:
    """The streaming recursion as a plain Python loop (the baseline)."""
    up = lo = 0.0
    out = []
    for v in x:
        up = max(0.0, up + v - k)
        lo = max(0.0, lo - v - k)
        out.append(up > h or lo > h)
    return out


def _ewma_loop(x: list[float], lambda_: float, L: float) -> list[bool]:  # noqa: N803
    """The EWMA recursion with exact time-varying limits as a plain Python loop (the baseline)."""
    w, decay, keep, ratio = 0.0, 1.0, (1.0 - lambda_) ** 2, lambda_ / (2.0 - lambda_)
    out = []
    for v in x:
        w = lambda_ * v + (1.0 - lambda_) * w
        decay *= keep
        out.append(abs(w) > L * math.sqrt(ratio * (1.0 - decay)))
    return out


def _shifted_stream() -> FloatArray:
    # In control, then a 1 sigma shift for the last 1%: alarms exist to compare.
    x = np.random.default_rng(3).normal(size=_CHART_POINTS)
    x[-_CHART_POINTS // 100 :] += 1.0
    return x


def bench_cusum(*, rounds: int = 5) -> BenchResult:
    """Batch CUSUM over 1M points against the Python-loop recursion, at the default ARL0's ``h``."""
    settings = MonitorSettings()
    h = calibrate(ChartKind.CUSUM, parameter=settings.cusum_k, arl0=settings.arl0).threshold
    x = _shifted_stream()
    xs = x.tolist()
    medians = interleaved_medians(
        {
            "batch": lambda: cusum_batch(x, k=settings.cusum_k, h=h),
            "loop": lambda: _cusum_loop(xs, settings.cusum_k, h),
        },
        rounds=rounds,
    )
    batch = cusum_batch(x, k=settings.cusum_k, h=h).alarm
    loop = np.array(_cusum_loop(xs, settings.cusum_k, h))
    return BenchResult(
        name="batch CUSUM (1M points) / Python-loop recursion",
        ratio=medians["batch"] / medians["loop"],
        target=0.3,
        guard="identical alarms at every point",
        guard_ok=bool(np.array_equal(batch, loop)) and bool(batch.any()),
        absolutes={"batch_s": medians["batch"], "loop_s": medians["loop"], "alarms": int(batch.sum()), "h": h},
    )


def bench_ewma(*, rounds: int = 5) -> BenchResult:
    """Batch EWMA (lfilter, exact limits) over 1M points against the Python-loop recursion."""
    settings = MonitorSettings()
    L = calibrate(ChartKind.EWMA, parameter=settings.ewma_lambda, arl0=settings.arl0).threshold  # noqa: N806
    x = _shifted_stream()
    xs = x.tolist()
    lam = settings.ewma_lambda
    medians = interleaved_medians(
        {"batch": lambda: ewma_batch(x, lambda_=lam, L=L), "loop": lambda: _ewma_loop(xs, lam, L)},
        rounds=rounds,
    )
    batch = ewma_batch(x, lambda_=lam, L=L).alarm
    loop = np.array(_ewma_loop(xs, lam, L))
    return BenchResult(
        name="batch EWMA (1M points) / Python-loop recursion",
        ratio=medians["batch"] / medians["loop"],
        target=0.15,
        guard="identical alarms at every point",
        guard_ok=bool(np.array_equal(batch, loop)) and bool(batch.any()),
        absolutes={"batch_s": medians["batch"], "loop_s": medians["loop"], "alarms": int(batch.sum()), "L": L},
    )
