"""Windowed streams: per-study observations grouped per day or per N studies, and standardized.

Detectors expect standardized observations: in control, independent with mean 0 and standard
deviation 1, so that limits calibrated on N(0, 1) (:mod:`core.drift.calibration`) keep their
in-control run length. The in-control distribution is not known, and a short baseline estimates
it poorly (a baseline mean off by a third of a standard deviation is a persistent "shift" to a
CUSUM), so every window is standardized *self-starting* against everything before it in its
segment (Hawkins 1987; Hawkins & Olwell, *Cumulative Sum Charts*, 1998, ch. 7), in the way that
holds for the stream's kind of data:

* ``MEAN`` streams of scores and embedding distances, and every ``DISTANCE`` stream (PSI, KS,
  AUC per window of N studies), are **ranked** (:mod:`core.drift.ranks`): each value's sequential
  normal score, summed over the window and divided by the square root of the summed in-control
  variances. Distribution-free: a model's scores are a mixture (negatives near 0, positives near
  1) that no normal approximation fits, and one positive on a quiet day must not be a "three
  sigma" window.
* ``MEAN`` streams of pixel statistics (intensity mean and spread, noise) are averages over
  hundreds of thousands of pixels and close to normal, so they keep the **self-starting t**
  (``Standardization.STUDENT``): with ``N`` earlier values of mean ``m`` and standard deviation
  ``s``, a window of ``n`` values with mean ``x`` gives ``T = (x - m) / (s sqrt(1/n + 1/N))``,
  Student-t(``N - 1``), mapped to the normal quantile of the same probability. Unlike a rank, it
  is not bounded, so a scanner change that moves every film far outside the past is seen on its
  first day.
* ``RATE`` streams (positive rate, sensitivity, specificity, disagreement) are counts: ``s``
  successes of ``n`` trials. Their standardized value is the **randomized quantile residual**
  (Dunn & Smyth 1996, *J. Comput. Graph. Stat.* 5: 236-244) of ``s`` under the beta-binomial
  predictive distribution given every earlier trial (Jeffreys prior): a uniform draw inside the
  count's probability interval, mapped to the normal quantile. That is exactly N(0, 1) under the
  predictive, where ``(s - n p) / sqrt(n p (1 - p))`` for a 10 % rate and one study a day is a
  two-point variable (+3 or -0.33) that a CUSUM reads as a run of large shifts. The draw is seeded
  by the stream and segment, so a rerun gives the same chart.

A segment's **baseline** is the shortest run of its first windows that carries enough
information for the stream's kind (:func:`estimate_baseline`): a number of values for ranked and
t-standardized streams, and a number of events *and* of non-events for rates (a 10 % positive
rate is not judged on one positive). Until then the stream is *warming up* and says how far
along it is. NaN per-study values are skipped and counted, never averaged in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.special import ndtri, stdtr
from scipy.stats import betabinom

from core.drift.ranks import sequential_normal_scores
from core.types import FloatArray, IntArray

__all__ = [
    "WindowKind",
    "Windowing",
    "Standardization",
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


class Standardization(StrEnum):
    """How a MEAN or DISTANCE stream's values are put on the unit scale (RATE streams use their own)."""

    RANKS = "ranks"
    STUDENT = "student"


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
    samples : ndarray of shape (k,)
        The finite per-study values of complete windows in arrival order (0/1 outcomes for
        RATE; the window values for DISTANCE), uncentered: what sequential ranks are taken of.
    sample_window : ndarray of shape (k,), int
        Window index of each sample (non-decreasing).
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
    samples: FloatArray
    sample_window: IntArray
    standardization: Standardization = Standardization.RANKS

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


def _samples(window: IntArray, x: FloatArray) -> tuple[FloatArray, IntArray]:
    keep = (window >= 0) & np.isfinite(x)
    return np.asarray(x[keep], dtype=np.float64), np.asarray(window[keep], dtype=np.intp)


def _sums(window: IntArray, m: int, x: FloatArray) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
    inside = window >= 0
    w, v = window[inside], x[inside]
    ok = np.isfinite(v)
    counts = np.bincount(w[ok], minlength=m).astype(np.intp)
    sums = np.bincount(w[ok], weights=v[ok], minlength=m).astype(np.float64)
    sumsq = np.bincount(w[ok], weights=v[ok] ** 2, minlength=m).astype(np.float64)
    missing = np.bincount(w[~ok], minlength=m).astype(np.intp)
    return counts, sums, sumsq, missing


def mean_stream(
    name: str,
    dates: DateArray,
    values: FloatArray,
    windowing: Windowing,
    *,
    standardization: Standardization = Standardization.RANKS,
) -> WindowedStream:
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
        name,
        StreamKind.MEAN,
        windowing,
        wdates,
        means,
        counts,
        sums,
        sumsq,
        center,
        missing,
        pending,
        *_samples(window, x),
        standardization,
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
    return WindowedStream(
        name, StreamKind.RATE, windowing, wdates, rates, counts, sums, sums, 0.0, missing, pending, *_samples(window, x)
    )


def _members(window: IntArray, n_windows: int) -> list[IntArray]:
    """The study indices of each window, ascending: one sort, not one scan of every study per window.

    ``window`` holds each study's window (-1: after the last complete one, in none). Scanning for
    each window made a stream quadratic in its studies: minutes at a busy site's 300,000.
    """
    order = np.argsort(window, kind="stable")  # stable: ascending study indices within a window
    bounds = np.searchsorted(window[order], np.arange(n_windows + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_windows)]


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
    values = np.array([distance(members) for members in _members(window, wdates.size)], dtype=np.float64)
    ok = np.isfinite(values)
    center = float(values[ok][0]) if ok.any() else 0.0
    dev = np.where(ok, values - center, 0.0)
    counts, missing = ok.astype(np.intp), (~ok).astype(np.intp)
    return WindowedStream(
        name,
        StreamKind.DISTANCE,
        windowing,
        wdates,
        values,
        counts,
        dev,
        dev * dev,
        center,
        missing,
        pending,
        values[ok],
        np.flatnonzero(ok).astype(np.intp),
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
    """Not enough information yet for a baseline.

    Attributes
    ----------
    have, need : int
        Values (MEAN, DISTANCE) or the scarcer outcome's count (RATE) so far, and what the
        baseline needs.
    reason : str
        One sentence, with the counts.
    """

    have: int
    need: int
    reason: str


def _first_reaching(cumulative: np.ndarray, need: int) -> int | None:
    hits = np.flatnonzero(cumulative >= need)
    return int(hits[0]) if hits.size else None


def estimate_baseline(
    stream: WindowedStream, selection: IntArray, *, min_values: int, min_events: int, max_trials: int = 200
) -> Baseline | WarmingUp:
    """The baseline: the shortest run of the segment's first windows that carries enough information.

    Parameters
    ----------
    selection : ndarray of int
        Window indices of the segment, in order.
    min_values : int
        MEAN and DISTANCE streams: values (per-study values; window values for DISTANCE) the
        baseline needs. Ranks need a reference: after ``n`` values the most extreme normal score
        is ``ndtri(1 - 1/(2n))``.
    min_events : int
        RATE streams: the baseline needs at least this many of *each* outcome (successes and
        failures), so that a rate of 10 % is not judged on one positive. With ``e`` events the
        rate's relative standard error is about ``1 / sqrt(e)``.
    max_trials : int
        RATE streams: ... or this many trials, whichever comes first, so that a rate near 0 or 1
        (a sensitivity with no miss yet) is still watched: after ``n`` trials without a failure
        the failure rate is below ``3 / n`` with 95 % confidence (the "rule of three").
    """
    counts = stream.counts[selection]
    if stream.kind is StreamKind.RATE:
        successes = np.cumsum(stream.sums[selection])
        failures = np.cumsum(counts) - successes
        scarcer = np.minimum(successes, failures)
        by_events = _first_reaching(scarcer, min_events)
        by_trials = _first_reaching(np.cumsum(counts), max_trials)
        last = min((x for x in (by_events, by_trials) if x is not None), default=None)
        if last is None:
            have = int(scarcer[-1]) if scarcer.size else 0
            s_have = int(successes[-1]) if successes.size else 0
            f_have = int(failures[-1]) if failures.size else 0
            return WarmingUp(
                have,
                min_events,
                f"warming up: {s_have} events and {f_have} non-events so far, "
                f"{min_events} of each (or {max_trials} in all) needed",
            )
    else:
        cumulative = np.cumsum(counts)
        last = _first_reaching(cumulative, min_values)
        if last is None:
            have = int(cumulative[-1]) if cumulative.size else 0
            unit = "windows" if stream.kind is StreamKind.DISTANCE else "values"
            return WarmingUp(have, min_values, f"warming up: {have}/{min_values} baseline {unit}")
    base = selection[: last + 1]
    usable = base[stream.counts[base] > 0]
    n = float(stream.counts[usable].sum())
    total = float(stream.sums[usable].sum())
    if stream.kind is StreamKind.RATE:
        p = (total + 0.5) / (n + 1.0)  # Jeffreys: a rate with no failure yet still has a spread
        return Baseline(p, math.sqrt(p * (1.0 - p)), int(usable.size), int(n), int(base[-1]))
    mean = total / n
    var = max(float(stream.sumsq[usable].sum()) - n * mean * mean, 0.0) / max(n - 1.0, 1.0)
    return Baseline(stream.center + mean, math.sqrt(var), int(usable.size), int(n), int(base[-1]))


def _segment_samples(stream: WindowedStream, selection: IntArray) -> tuple[FloatArray, IntArray]:
    """Samples of the windows in ``selection`` (a contiguous run of window indices)."""
    lo = int(np.searchsorted(stream.sample_window, selection[0], side="left"))
    hi = int(np.searchsorted(stream.sample_window, selection[-1], side="right"))
    return stream.samples[lo:hi], stream.sample_window[lo:hi]


def _rank_scores(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Sequential normal scores summed per window and put on the unit scale (MEAN, DISTANCE)."""
    out = np.full(stream.n_windows, np.nan)
    if selection.size == 0:
        return out
    values, window = _segment_samples(stream, selection)
    if values.size == 0:
        return out
    z, var = sequential_normal_scores(values)
    zsum = np.bincount(window, weights=z, minlength=stream.n_windows)
    vsum = np.bincount(window, weights=var, minlength=stream.n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = zsum / np.sqrt(vsum)
    out[selection] = np.where(vsum[selection] > 0, scaled[selection], np.nan)
    return out


def _tie_breakers(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Uniform draws that spread a discrete count over its probability interval, one per window.

    Seeded by the stream's name and the segment's first window date, and drawn in window order,
    so a rerun, or a later run with more windows, gives every window the same draw.
    """
    first = str(stream.dates[selection[0]]) if selection.size else ""
    digest = hashlib.sha256(f"{stream.name}|{first}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.random(selection.size)


def _rate_scores(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Randomized quantile residuals of each window's count under the beta-binomial predictive (RATE)."""
    out = np.full(stream.n_windows, np.nan)
    if selection.size == 0:
        return out
    c = stream.counts[selection].astype(np.int64)
    s = np.rint(stream.sums[selection]).astype(np.int64)
    n_prev = np.cumsum(c) - c
    s_prev = np.cumsum(s) - s
    # Jeffreys prior Beta(1/2, 1/2) updated by everything before the window.
    a, b = s_prev + 0.5, n_prev - s_prev + 0.5
    ok = (c > 0) & (n_prev >= 1)
    cc = np.maximum(c, 1)
    below = np.where(s > 0, betabinom.cdf(s - 1, cc, a, b), 0.0)
    at = betabinom.pmf(s, cc, a, b)
    u = np.clip(below + _tie_breakers(stream, selection) * at, 1e-300, 1.0 - 1e-16)
    out[selection] = np.where(ok, ndtri(u), np.nan)
    return out


def _t_to_normal(t: FloatArray, df: FloatArray) -> FloatArray:
    """The standard normal quantile with the same probability as ``t`` under Student-t(``df``).

    Computed from the nearer tail so that far-out values keep their size (no rounding to 1).
    """
    upper = t > 0
    z = ndtri(stdtr(df, np.where(upper, -t, t)))
    return np.asarray(np.where(upper, -z, z))


def _student_scores(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Self-starting t of each window's mean against every value before it (MEAN, normal data)."""
    out = np.full(stream.n_windows, np.nan)
    if selection.size == 0:
        return out
    c = stream.counts[selection].astype(np.float64)
    s = stream.sums[selection]
    n_prev = np.cumsum(c) - c
    s_prev = np.cumsum(s) - s
    q_prev = np.cumsum(stream.sumsq[selection]) - stream.sumsq[selection]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prev = s_prev / n_prev
        var_prev = np.maximum(q_prev - n_prev * mean_prev**2, 0.0) / (n_prev - 1.0)
        t = (s / c - mean_prev) / np.sqrt(var_prev * (1.0 / c + 1.0 / n_prev))
        z = _t_to_normal(t, n_prev - 1.0)
    ok = (c > 0) & (n_prev >= 3) & (var_prev > 0)
    out[selection] = np.where(ok, z, np.nan)
    return out


def self_starting(stream: WindowedStream, selection: IntArray) -> FloatArray:
    """Standardize each window of a segment against everything before it in the segment.

    Parameters
    ----------
    stream : WindowedStream
    selection : ndarray of int
        Window indices of the segment, in order.

    Returns
    -------
    ndarray of shape (m,)
        In-control independent, mean 0 and variance 1 values at the positions in ``selection``
        (see the module docstring); NaN where a window has no value, where nothing came before
        it, and outside ``selection``.

    Examples
    --------
    >>> d = np.arange(5).astype("datetime64[D]")
    >>> s = mean_stream("x", d, np.array([0.0, 1.0, 2.0, 1.0, 9.0]), Windowing(WindowKind.DAY))
    >>> self_starting(s, np.arange(5)).round(2).tolist()
    [nan, 1.0, 1.22, 0.0, 1.46]
    """
    if stream.kind is StreamKind.RATE:
        return _rate_scores(stream, selection)
    if stream.standardization is Standardization.STUDENT:
        return _student_scores(stream, selection)
    return _rank_scores(stream, selection)


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
