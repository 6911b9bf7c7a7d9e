"""Windowed streams: per-study observations grouped per day or per N studies, and standardized.

Detectors expect standardized observations (in-control mean 0, standard deviation 1). The
in-control mean and spread are not known, and a short baseline estimates them poorly: a chart
run against a baseline mean that is off by a third of a standard deviation alarms within weeks
however high its nominal ARL0. So every window is standardized *self-starting* (Hawkins 1987;
Hawkins & Olwell, *Cumulative Sum Charts*, 1998, ch. 7) against everything before it in its
segment, which for normal data makes the standardized values exactly independent N(0, 1) and
the simulated ARL0 calibration exact:

* ``MEAN`` (scores, image statistics): with ``N`` earlier per-study values of mean ``m`` and
  standard deviation ``s``, a window of ``n`` values with mean ``x`` gives
  ``T = (x - m) / (s * sqrt(1/n + 1/N))``, Student-t with ``N - 1`` degrees of freedom, mapped to
  the normal quantile of the same probability. A quiet day with one study and a busy day with
  twenty are on the same scale, so per-day windows work at sparse sites too.
* ``RATE`` (positive rate, sensitivity, disagreement): ``s`` successes of ``n`` against the
  earlier rate ``p`` (with a Jeffreys half-count, so a rate of 0 or 1 so far still has a
  variance): ``(s - n p) / sqrt(n p (1 - p) (1 + n / N))``.
* ``DISTANCE`` (PSI, KS, AUC per window of N studies): each window's value is one observation,
  standardized like ``MEAN`` with ``n = 1``.

The first ``warmup`` windows of a segment (and at least ``min_observations`` values) are its
baseline: standardized too, but not monitored. With fewer, the stream is *warming up* and says
how far along it is. NaN per-study values are skipped and counted, never averaged in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.special import ndtri, stdtr

from core.types import FloatArray, IntArray

__all__ = [
    "WindowKind",
    "Windowing",
    "StreamKind",
    "WindowedStream",
    "Baseline",
    "WarmingUp",
    "assign_windows",
    "mean_stream",
    "rate_stream",
    "distance_stream",
    "estimate_baseline",
    "against_baseline",
    "self_starting",
]

DateArray = np.ndarray  # datetime64[D]


class WindowKind(StrEnum):
    """How studies are grouped into windows."""

    DAY = "day"
    STUDIES = "studies"


@dataclass(frozen=True, slots=True)
class Windowing:
    """A window definition: one calendar day, or ``size`` consecutive studies.

    Examples
    --------
    >>> Windowing.parse("studies:25")
    Windowing(kind=<WindowKind.STUDIES: 'studies'>, size=25)
    >>> Windowing.parse("day").label
    'day'
    """

    kind: WindowKind
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or (self.kind is WindowKind.DAY and self.size != 1):
            raise ValueError(f"bad window: {self.kind} of size {self.size}")

    @property
    def label(self) -> str:
        """``"day"`` or ``"studies:N"`` (what :meth:`parse` reads back)."""
        return "day" if self.kind is WindowKind.DAY else f"studies:{self.size}"

    @classmethod
    def parse(cls, text: str) -> Windowing:
        """Read ``"day"`` or ``"studies:N"``.

        Raises
        ------
        ValueError
            Anything else, naming the text.
        """
        if text == "day":
            return cls(WindowKind.DAY)
        kind, _, size = text.partition(":")
        if kind == "studies" and size.isdigit() and int(size) >= 1:
            return cls(WindowKind.STUDIES, int(size))
        raise ValueError(f"unknown window {text!r}: use 'day' or 'studies:N' with N >= 1")


class StreamKind(StrEnum):
    """How a window's observations become one standardized value (see the module docstring)."""

    MEAN = "mean"
    RATE = "rate"
    DISTANCE = "distance"


@dataclass(frozen=True, slots=True, eq=False)
class WindowedStream:
    """One stream of one site, one value per window, before standardization.

    Attributes
    ----------
    name : str
        Stream name (``"noise"``, ``"mean_score"``, ...).
    kind : StreamKind
    windowing : Windowing
    dates : ndarray of shape (m,), datetime64[D]
        Window dates: the day, or the date of the window's last study.
    values : ndarray of shape (m,)
        Window mean (MEAN), success share (RATE) or distance (DISTANCE); NaN when undefined.
    counts : ndarray of shape (m,), int
        Finite per-study values in the window (trials for RATE; 1 or 0 for DISTANCE).
    sums, sumsq : ndarray of shape (m,)
        Sum and sum of squares of those values minus ``center`` (successes for RATE; the
        window's value minus ``center`` for DISTANCE). Centering keeps running variances exact.
    center : float
        The first finite value (0 for RATE).
    missing : ndarray of shape (m,), int
        NaN per-study values skipped in each window.
    pending : int
        Studies after the last complete window of ``size`` studies (not yet a window).
    """

    name: str
    kind: StreamKind
    windowing: Windowing
    dates: DateArray
    values: FloatArray
    counts: IntArray
    sums: FloatArray
    sumsq: FloatArray
    center: float
    missing: IntArray
    pending: int

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return int(self.values.size)

    @property
    def n_missing(self) -> int:
        """NaN per-study values skipped over the whole stream."""
        return int(self.missing.sum())


def assign_windows(dates: DateArray, windowing: Windowing) -> tuple[IntArray, DateArray, int]:
    """Window index of every study (studies sorted by date), and each window's date.

    Parameters
    ----------
    dates : ndarray of shape (n,), datetime64[D]
        Study dates in non-decreasing order.
    windowing : Windowing

    Returns
    -------
    window : ndarray of shape (n,), int
        Window of each study; -1 for studies after the last complete window of N studies.
    window_dates : ndarray of shape (m,), datetime64[D]
    pending : int
        Studies marked -1.

    Examples
    --------
    >>> d = np.array(["2025-01-01", "2025-01-01", "2025-01-03"], dtype="datetime64[D]")
    >>> w, wd, p = assign_windows(d, Windowing(WindowKind.DAY))
    >>> w.tolist(), [str(x) for x in wd], p
    ([0, 0, 1], ['2025-01-01', '2025-01-03'], 0)
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    if d.size and np.any(d[1:] < d[:-1]):
        raise ValueError("study dates must be sorted before windowing")
    if windowing.kind is WindowKind.DAY:
        window_dates, window = np.unique(d, return_inverse=True)
        return window.astype(np.intp), window_dates, 0
    n_full = d.size // windowing.size
    window = np.full(d.size, -1, dtype=np.intp)
    window[: n_full * windowing.size] = np.arange(n_full * windowing.size) // windowing.size
    last = np.arange(1, n_full + 1) * windowing.size - 1
    return window, d[last], int(d.size - n_full * windowing.size)


def _sums(window: IntArray, m: int, x: FloatArray) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
    inside = window >= 0
    w, v = window[inside], x[inside]
    ok = np.isfinite(v)
    counts = np.bincount(w[ok], minlength=m).astype(np.intp)
    sums = np.bincount(w[ok], weights=v[ok], minlength=m).astype(np.float64)
    sumsq = np.bincount(w[ok], weights=v[ok] ** 2, minlength=m).astype(np.float64)
    missing = np.bincount(w[~ok], minlength=m).astype(np.intp)
    return counts, sums, sumsq, missing


def mean_stream(name: str, dates: DateArray, values: FloatArray, windowing: Windowing) -> WindowedStream:
    """Window means of per-study values (NaN values skipped and counted).

    Parameters
    ----------
    dates : ndarray of shape (n,), datetime64[D]
        Sorted study dates.
    values : ndarray of shape (n,)
        One value per study; NaN when missing.
    """
    window, wdates, pending = assign_windows(dates, windowing)
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    center = float(finite[0]) if finite.size else 0.0
    counts, sums, sumsq, missing = _sums(window, wdates.size, x - center)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, center + sums / np.maximum(counts, 1), np.nan)
    return WindowedStream(
        name, StreamKind.MEAN, windowing, wdates, means, counts, sums, sumsq, center, missing, pending
    )


def rate_stream(name: str, dates: DateArray, outcomes: FloatArray, windowing: Windowing) -> WindowedStream:
    """Success shares of per-study 0/1 outcomes (NaN outcomes skipped and counted).

    Raises
    ------
    ValueError
        If a finite outcome is neither 0 nor 1.
    """
    x = np.asarray(outcomes, dtype=np.float64)
    finite = x[np.isfinite(x)]
    bad = finite[(finite != 0.0) & (finite != 1.0)]
    if bad.size:
        raise ValueError(f"rate stream {name!r} needs 0/1 outcomes, got e.g. {bad[0]}")
    window, wdates, pending = assign_windows(dates, windowing)
    counts, sums, _, missing = _sums(window, wdates.size, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return WindowedStream(name, StreamKind.RATE, windowing, wdates, rates, counts, sums, sums, 0.0, missing, pending)


def distance_stream(
    name: str,
    dates: DateArray,
    windowing: Windowing,
    distance: Callable[[IntArray], float],
) -> WindowedStream:
    """One distance per window of N studies, computed by ``distance(study_indices)``.

    Parameters
    ----------
    dates : ndarray of shape (n,), datetime64[D]
        Sorted study dates.
    windowing : Windowing
        Must be ``studies:N``: distances between distributions need a fixed sample size.
    distance : callable
        Given the indices of a window's studies, returns its distance (NaN when undefined:
        the window is then skipped and counted).
    """
    if windowing.kind is not WindowKind.STUDIES:
        raise ValueError(f"distance stream {name!r} needs windows of N studies, not {windowing.label}")
    window, wdates, pending = assign_windows(dates, windowing)
    values = np.array([distance(np.flatnonzero(window == i)) for i in range(wdates.size)], dtype=np.float64)
    ok = np.isfinite(values)
    center = float(values[ok][0]) if ok.any() else 0.0
    dev = np.where(ok, values - center, 0.0)
    counts, missing = ok.astype(np.intp), (~ok).astype(np.intp)
    return WindowedStream(
        name, StreamKind.DISTANCE, windowing, wdates, values, counts, dev, dev * dev, center, missing, pending
    )


@dataclass(frozen=True, slots=True)
class Baseline:
    """A segment's baseline: its first windows, which are standardized but not monitored.

    Attributes
    ----------
    mean, sd : float
        Per-study mean and standard deviation (MEAN), rate and binomial sd (RATE), or the
        windows' mean and sd (DISTANCE), over the baseline windows; shown to people (later
        windows are standardized against everything before them, see the module docstring).
    windows : int
        Baseline windows.
    observations : int
        Values (per-study values, trials, or windows for DISTANCE) in them.
    last_window : int
        Index of the last baseline window; monitoring starts after it.
    """

    mean: float
    sd: float
    windows: int
    observations: int
    last_window: int


@dataclass(frozen=True, slots=True)
class WarmingUp:
    """Not enough data yet for a baseline.

    Attributes
    ----------
    have_windows, need_windows : int
    have_observations, need_observations : int
    reason : str
        One sentence, with the counts.
    """

    have_windows: int
    need_windows: int
    have_observations: int
    need_observations: int
    reason: str


def estimate_baseline(
    stream: WindowedStream, selection: IntArray, *, warmup: int, min_observations: int
) -> Baseline | WarmingUp:
    """The baseline: the first ``warmup`` windows with values among ``selection``.

    Parameters
    ----------
    selection : ndarray of int
        Window indices of the segment, in order.
    warmup : int
        Windows the baseline needs.
    min_observations : int
        Values (per-study values, trials, or windows for DISTANCE) the baseline needs at least.
    """
    usable = selection[stream.counts[selection] > 0][:warmup]
    nobs = int(stream.counts[usable].sum())
    if usable.size < warmup or nobs < min_observations:
        unit = "windows" if stream.kind is StreamKind.DISTANCE else "values"
        return WarmingUp(
            have_windows=int(usable.size),
            need_windows=warmup,
            have_observations=nobs,
            need_observations=min_observations,
            reason=f"warming up: {usable.size}/{warmup} baseline windows, {nobs}/{min_observations} {unit}",
        )
    n = float(nobs)
    total = float(stream.sums[usable].sum())
    if stream.kind is StreamKind.RATE:
        p = (total + 0.5) / (n + 1.0)
        return Baseline(p, math.sqrt(p * (1.0 - p)), int(usable.size), nobs, int(usable[-1]))
    mean = total / n
    var = max(float(stream.sumsq[usable].sum()) - n * mean * mean, 0.0) / max(n - 1.0, 1.0)
    return Baseline(stream.center + mean, math.sqrt(var), int(usable.size), nobs, int(usable[-1]))


def _t_to_normal(t: FloatArray, df: FloatArray) -> FloatArray:
    """The standard normal quantile with the same probability as ``t`` under Student-t(``df``).

    Computed from the nearer tail so that far-out values keep their size (no rounding to 1).
    """
    upper = t > 0
    z = ndtri(stdtr(df, np.where(upper, -t, t)))
    return np.asarray(np.where(upper, -z, z))


def self_starting(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Standardize each window of a segment against all values before it in the segment.

    Parameters
    ----------
    stream : WindowedStream
    selection : ndarray of int
        Window indices of the segment, in order.

    Returns
    -------
    ndarray of shape (m,)
        Standardized values at the positions in ``selection``; NaN where a window has no value,
        where fewer than 3 values (1 trial for RATE) came before it, or where those had no
        spread; NaN outside ``selection``.

    Examples
    --------
    >>> d = np.arange(5).astype("datetime64[D]")
    >>> s = mean_stream("x", d, np.array([0.0, 1.0, 2.0, 1.0, 9.0]), Windowing(WindowKind.DAY))
    >>> z = self_starting(s, np.arange(5))
    >>> bool(np.isnan(z[:3]).all()), round(float(z[3]), 6), round(float(z[4]), 2)
    (True, 0.0, 2.95)
    """
    out = np.full(stream.n_windows, np.nan)
    if selection.size == 0:
        return out
    c = stream.counts[selection].astype(np.float64)
    s = stream.sums[selection]
    # Totals of everything strictly before each window of the segment.
    n_prev = np.cumsum(c) - c
    s_prev = np.cumsum(s) - s
    z: FloatArray
    with np.errstate(invalid="ignore", divide="ignore"):
        if stream.kind is StreamKind.RATE:
            p = (s_prev + 0.5) / (n_prev + 1.0)
            z = (s - c * p) / np.sqrt(c * p * (1.0 - p) * (1.0 + c / np.maximum(n_prev, 1.0)))
            ok = (c > 0) & (n_prev >= 1)
        else:
            q_prev = np.cumsum(stream.sumsq[selection]) - stream.sumsq[selection]
            mean_prev = s_prev / n_prev
            var_prev = np.maximum(q_prev - n_prev * mean_prev**2, 0.0) / (n_prev - 1.0)
            t = (s / c - mean_prev) / np.sqrt(var_prev * (1.0 / c + 1.0 / n_prev))
            z = _t_to_normal(t, n_prev - 1.0)
            ok = (c > 0) & (n_prev >= 3) & (var_prev > 0)
    out[selection] = np.where(ok, z, np.nan)
    return out


def against_baseline(stream: WindowedStream, baseline: Baseline) -> FloatArray:
    """Every window standardized against one fixed baseline (what BOCPD segments).

    Self-starting values suit the control charts but slowly absorb a lasting shift, which a
    change-point model would read as a second change; against a fixed baseline a lasting shift
    stays one level. ``(x - mean) * sqrt(n) / sd`` (MEAN, RATE) or ``(x - mean) / sd`` (DISTANCE).

    Returns
    -------
    ndarray of shape (m,)
        NaN where a window has no value, and everywhere when the baseline has no spread.
    """
    if not baseline.sd > 0:
        return np.full(stream.n_windows, np.nan)
    scale = np.sqrt(stream.counts) if stream.kind is not StreamKind.DISTANCE else np.ones(stream.n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (stream.values - baseline.mean) * scale / baseline.sd
    return np.where(stream.counts > 0, z, np.nan)
