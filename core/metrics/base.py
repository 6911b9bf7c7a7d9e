"""What every metric shares: input checks at the public boundary, intervals, and "undefined".

Every public metric takes ``y_true`` then ``y_score`` (or ``y_prob``), options keyword-only, as
in scikit-learn. Undefined stays undefined (ARCHITECTURE.md, "Habits"): a value that the data
cannot define is ``nan`` with an :class:`~core.errors.UndefinedMetricWarning`, never 0; no cases
at all is an :class:`~core.errors.EmptySampleError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from core.errors import BadInputError, EmptySampleError, UndefinedMetricWarning
from core.types import FloatArray, IntArray, JSONObject

__all__ = [
    "DEFAULT_CONFIDENCE",
    "BinaryMetric",
    "Interval",
    "check_binary",
    "check_confidence_level",
    "finite_or_none",
    "undefined",
    "z_critical",
]

#: Two-sided confidence level used when a caller does not choose one.
DEFAULT_CONFIDENCE: Final = 0.95


class BinaryMetric(Protocol):
    """A scalar metric of binary labels and scores: ``metric(y_true, y_score) -> float``."""

    def __call__(self, y_true: npt.ArrayLike, y_score: npt.ArrayLike, /) -> float:
        """Return the metric; ``nan`` (with a warning) when the data cannot define it."""
        ...


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes
    ----------
    estimate, lower, upper : float
        ``nan`` when undefined.
    confidence_level : float
        E.g. 0.95.
    method : str
        How the bounds were computed (``"delong"``, ``"bootstrap-percentile"``, ``"wilson"``).
    """

    estimate: float
    lower: float
    upper: float
    confidence_level: float
    method: str

    @property
    def defined(self) -> bool:
        """True when the estimate and both bounds are numbers."""
        return not (math.isnan(self.estimate) or math.isnan(self.lower) or math.isnan(self.upper))

    def to_dict(self) -> JSONObject:
        """JSON-ready; undefined values become ``None`` (canonical JSON has no NaN)."""
        return {
            "estimate": finite_or_none(self.estimate),
            "lower": finite_or_none(self.lower),
            "upper": finite_or_none(self.upper),
            "confidence_level": self.confidence_level,
            "method": self.method,
        }


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (for JSON and audit payloads)."""
    return float(value) if math.isfinite(value) else None


def undefined(reason: str, *, stacklevel: int = 3) -> float:
    """Warn that a metric is undefined and return ``nan``.

    Parameters
    ----------
    reason : str
        Names the metric and the offending data, e.g. ``"AUC: site 'north' has one class (0)"``.
    stacklevel : int, default 3
        Points the warning at the caller of the public metric.
    """
    warnings.warn(f"{reason}; the value is undefined (NaN)", UndefinedMetricWarning, stacklevel=stacklevel)
    return float("nan")


def check_confidence_level(confidence_level: float) -> float:
    """Return ``confidence_level`` if it lies strictly between 0 and 1.

    Raises
    ------
    BadInputError
        Otherwise, naming the value.
    """
    if not 0.0 < confidence_level < 1.0:
        raise BadInputError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    return float(confidence_level)


def z_critical(confidence_level: float) -> float:
    """Two-sided standard normal critical value, e.g. 1.959964 for 0.95."""
    return float(norm.ppf(0.5 + check_confidence_level(confidence_level) / 2.0))


def check_binary(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, what: str = "sample", probability: bool = False
) -> tuple[IntArray, FloatArray]:
    """Validate binary labels and scores at a metric's public boundary.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 or boolean labels, 1 = finding present.
    y_score : array-like of shape (n_samples,)
        Finite scores; probabilities in [0, 1] when ``probability`` is True.
    what : str, default "sample"
        Names the data in error messages (a site, a stratum).
    probability : bool, default False
        Also require ``0 <= y_score <= 1``.

    Returns
    -------
    y_true : ndarray of shape (n_samples,), int64
    y_score : ndarray of shape (n_samples,), float64

    Raises
    ------
    EmptySampleError
        No cases.
    BadInputError
        Shapes differ, a label is not 0/1, or a score is not finite (or outside [0, 1]).
    """
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise BadInputError(f"{what}: y_true and y_score must be 1-d of equal length, got {y.shape} and {s.shape}")
    if y.size == 0:
        raise EmptySampleError(what)
    if y.dtype != np.bool_ and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise BadInputError(f"{what}: y_true must hold only 0 and 1, found {bad.tolist()}")
    if not np.isfinite(s).all():
        raise BadInputError(f"{what}: y_score holds {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if probability and ((s < 0.0) | (s > 1.0)).any():
        raise BadInputError(f"{what}: probabilities must lie in [0, 1], found {float(s.min())}..{float(s.max())}")
    return y.astype(np.int64), s
