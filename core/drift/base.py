"""What every online drift detector shares: the per-observation state, the protocol, batch traces.

A detector sees a stream of standardized observations (in-control mean 0, standard deviation 1,
see :mod:`core.drift.streams`). NaN observations are *skipped and counted*: the state does not
move, so an undefined value never leaks into a statistic (rule R9).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.types import BoolArray, FloatArray, IntArray

__all__ = [
    "DriftState",
    "DriftDetector",
    "DetectorTrace",
    "run_detector",
    "FiniteView",
    "finite_view",
    "last_true",
    "alarm_onsets",
]


@dataclass(frozen=True, slots=True)
class DriftState:
    """Detector state after one observation.

    Attributes
    ----------
    n_seen : int
        Finite observations absorbed so far.
    n_skipped : int
        NaN (or infinite) observations skipped so far; they never enter the statistic.
    statistic : float
        The detector's statistic (CUSUM: the larger side; EWMA: the smoothed value).
    alarm : bool
        Whether the statistic is outside its control limit after this observation.
    """

    n_seen: int
    n_skipped: int
    statistic: float
    alarm: bool


class DriftDetector(Protocol):
    """An online detector: one observation in, one state out."""

    def update(self, x: float) -> DriftState:
        """Absorb ``x`` (NaN is skipped and counted) and return the new state."""
        ...

    def reset(self) -> None:
        """Forget everything seen."""
        ...


def run_detector(detector: DriftDetector, xs: Iterable[float]) -> list[DriftState]:
    """Feed ``xs`` to a freshly reset ``detector`` and return every state.

    Examples
    --------
    >>> from core.drift.cusum import TabularCusum
    >>> [s.alarm for s in run_detector(TabularCusum(k=0.5, h=2.0), [0.0, 3.0, 3.0])]
    [False, True, True]
    """
    detector.reset()
    return [detector.update(float(x)) for x in xs]


@dataclass(frozen=True, slots=True, eq=False)
class DetectorTrace:
    """A detector run over a whole stream at once (the batch form), aligned with the input.

    Attributes
    ----------
    detector : str
        ``"cusum"``, ``"ewma"`` or ``"bocpd"``.
    statistic : ndarray of shape (n,)
        The plotted statistic; at a skipped (NaN) position it repeats the previous value.
    upper, lower : ndarray of shape (n,)
        Control limits of ``statistic`` at each position (``lower`` is ``-inf`` when one-sided).
    alarm : ndarray of shape (n,), bool
        Outside the limits at that position.
    change_point : ndarray of shape (n,), int
        At an alarm, the estimated index of the first out-of-control observation; -1 elsewhere.
    n_skipped : int
        Non-finite observations skipped.
    """

    detector: str
    statistic: FloatArray
    upper: FloatArray
    lower: FloatArray
    alarm: BoolArray
    change_point: IntArray
    n_skipped: int

    @property
    def first_alarm(self) -> int | None:
        """Index of the first alarm, or None when the stream never alarmed."""
        hits = np.flatnonzero(self.alarm)
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True, slots=True, eq=False)
class FiniteView:
    """A stream's finite values, and how to put per-value results back on every position.

    Attributes
    ----------
    values : ndarray of shape (m,)
        The finite entries, in order.
    positions : ndarray of shape (m,), int, or None
        Where each value sits in the stream; None when every entry is finite (the fast path:
        results are already aligned and nothing is copied).
    last : ndarray of shape (n,), int, or None
        For each position, the index into ``values`` of the latest finite entry at or before
        it (-1 before the first); None when every entry is finite.
    skipped : int
        Non-finite entries (``n - m``).
    """

    values: FloatArray
    positions: IntArray | None
    last: IntArray | None
    skipped: int

    def spread(self, per_value: np.ndarray, *, before: float | bool | int) -> np.ndarray:
        """Per-value results on every position, carried forward across skipped entries."""
        if self.last is None:
            return per_value
        padded = np.concatenate([np.array([before], dtype=per_value.dtype), per_value])
        return padded[self.last + 1]

    def position_of(self, index: IntArray) -> IntArray:
        """Stream positions of value indices."""
        return index if self.positions is None else self.positions[index]


def finite_view(x: FloatArray) -> FiniteView:
    """Split a stream into its finite values and the map back (see :class:`FiniteView`).

    Examples
    --------
    >>> fv = finite_view(np.array([np.nan, 1.0, np.nan, 2.0]))
    >>> fv.values.tolist(), fv.last.tolist(), fv.skipped
    ([1.0, 2.0], [-1, 0, 0, 1], 2)
    >>> fv.spread(np.array([10.0, 20.0]), before=0.0).tolist()
    [0.0, 10.0, 10.0, 20.0]
    """
    arr = np.asarray(x, dtype=np.float64)
    mask = np.isfinite(arr)
    if mask.all():
        return FiniteView(arr, None, None, 0)
    return FiniteView(arr[mask], np.flatnonzero(mask), np.cumsum(mask) - 1, int(arr.size - mask.sum()))


def last_true(mask: BoolArray, at: IntArray) -> IntArray:
    """For each index in ``at``, the last index ``<=`` it where ``mask`` is True (-1 when none).

    Examples
    --------
    >>> last_true(np.array([True, False, False, True, False]), np.array([2, 4])).tolist()
    [0, 3]
    """
    idx = np.flatnonzero(mask)
    pos = np.searchsorted(idx, at, side="right") - 1
    return np.where(pos >= 0, idx[np.maximum(pos, 0)] if idx.size else -1, -1)


def alarm_onsets(alarm: BoolArray) -> IntArray:
    """Indices where an alarm episode starts (alarm now, no alarm just before).

    Examples
    --------
    >>> alarm_onsets(np.array([False, True, True, False, True])).tolist()
    [1, 4]
    """
    a = np.asarray(alarm, dtype=bool)
    prev = np.concatenate([[False], a[:-1]])
    return np.flatnonzero(a & ~prev)
