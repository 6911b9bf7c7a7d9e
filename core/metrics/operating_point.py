"""Sensitivity, specificity, PPV and NPV at the model's operating threshold, with Wilson intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy.typing as npt

from core.metrics.base import DEFAULT_CONFIDENCE, Interval, check_binary
from core.metrics.wilson import wilson_interval
from core.types import JSONObject

__all__ = [
    "OperatingPointResult",
    "negative_predictive_value",
    "operating_point",
    "positive_predictive_value",
    "sensitivity_score",
    "specificity_score",
]


@dataclass(frozen=True, slots=True)
class OperatingPointResult:
    """The confusion matrix at one threshold and the four rates read from it.

    A case is called positive when ``score >= threshold`` (as ``PredictionRecord.label``).

    Attributes
    ----------
    threshold : float
    tp, fp, tn, fn : int
    sensitivity, specificity, ppv, npv : Interval
        Wilson intervals; all ``nan`` when the denominator is empty.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Interval
    specificity: Interval
    ppv: Interval
    npv: Interval

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "ppv": self.ppv.to_dict(),
            "npv": self.npv.to_dict(),
        }


def operating_point(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    threshold: float,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> OperatingPointResult:
    """Confusion matrix and Wilson intervals of the four rates at ``threshold``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_score : array-like of shape (n_samples,)
    threshold : float
        The model card's operating threshold; ``score >= threshold`` is called positive.
    confidence_level : float, default 0.95

    Returns
    -------
    OperatingPointResult

    Examples
    --------
    >>> r = operating_point([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.2], threshold=0.5)
    >>> r.tp, r.fp, r.tn, r.fn, r.sensitivity.estimate
    (1, 1, 1, 1, 0.5)
    """
    tp, fp, tn, fn = _confusion(y_true, y_score, threshold)
    level = confidence_level
    return OperatingPointResult(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=wilson_interval(tp, tp + fn, confidence_level=level, what="sensitivity"),
        specificity=wilson_interval(tn, tn + fp, confidence_level=level, what="specificity"),
        ppv=wilson_interval(tp, tp + fp, confidence_level=level, what="PPV"),
        npv=wilson_interval(tn, tn + fn, confidence_level=level, what="NPV"),
    )


def _confusion(y_true: npt.ArrayLike, y_score: npt.ArrayLike, threshold: float) -> tuple[int, int, int, int]:
    """``tp, fp, tn, fn`` with ``score >= threshold`` called positive."""
    y, s = check_binary(y_true, y_score)
    called = s >= threshold
    pos = y == 1
    return (
        int((called & pos).sum()),
        int((called & ~pos).sum()),
        int((~called & ~pos).sum()),
        int((~called & pos).sum()),
    )


def _rate(successes: int, trials: int, what: str) -> float:
    return wilson_interval(successes, trials, what=what).estimate


def sensitivity_score(y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, threshold: float) -> float:
    """True positive rate at ``threshold`` (``nan`` with a warning when there are no positives)."""
    tp, _, _, fn = _confusion(y_true, y_score, threshold)
    return _rate(tp, tp + fn, "sensitivity")


def specificity_score(y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, threshold: float) -> float:
    """True negative rate at ``threshold`` (``nan`` with a warning when there are no negatives)."""
    _, fp, tn, _ = _confusion(y_true, y_score, threshold)
    return _rate(tn, tn + fp, "specificity")


def positive_predictive_value(y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, threshold: float) -> float:
    """Precision at ``threshold`` (``nan`` with a warning when nothing is called positive)."""
    tp, fp, _, _ = _confusion(y_true, y_score, threshold)
    return _rate(tp, tp + fp, "PPV")


def negative_predictive_value(y_true: npt.ArrayLike, y_score: npt.ArrayLike, *, threshold: float) -> float:
    """NPV at ``threshold`` (``nan`` with a warning when nothing is called negative)."""
    _, _, tn, fn = _confusion(y_true, y_score, threshold)
    return _rate(tn, tn + fn, "NPV")
