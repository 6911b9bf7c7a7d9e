"""AUC per calendar month with DeLong's interval, every month between the first and the last shown.

A month with fewer than ``min_per_class`` positives or negatives gets no number: its counts and
the reason are reported instead, so a chart can say "not enough data" rather than plot a value
resting on two cases. Months without any case in the span are listed the same way, so a gap in
the data is visible as a gap on the time axis.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, check_binary
from core.metrics.delong import delong_auc
from core.types import JSONObject

__all__ = ["PeriodAuc", "monthly_auc", "month_span"]

_MONTH: Final = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class PeriodAuc:
    """One month's AUC, or why there is none.

    Attributes
    ----------
    month : str
        ``YYYY-MM``.
    n_positive, n_negative : int
    auc : Interval or None
        AUC with its DeLong interval; None when the month has too few cases of a class.
    reason : str
        Why ``auc`` is None ("" when it is not).
    """

    month: str
    n_positive: int
    n_negative: int
    auc: Interval | None
    reason: str = ""

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "month": self.month,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "auc": None if self.auc is None else self.auc.to_dict(),
            "reason": self.reason,
        }


def _parse(month: str) -> tuple[int, int]:
    m = _MONTH.match(month)
    if m is None:
        raise BadInputError(f"month must be YYYY-MM, got {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_span(first: str, last: str) -> tuple[str, ...]:
    """Every month from ``first`` to ``last`` inclusive, as ``YYYY-MM``.

    Examples
    --------
    >>> month_span("2025-11", "2026-02")
    ('2025-11', '2025-12', '2026-01', '2026-02')
    """
    (y0, m0), (y1, m1) = _parse(first), _parse(last)
    return tuple(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(y0 * 12 + m0 - 1, y1 * 12 + m1))


def monthly_auc(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    months: Sequence[str],
    *,
    min_per_class: int = 5,
    confidence_level: float = DEFAULT_CONFIDENCE,
) -> tuple[PeriodAuc, ...]:
    """AUC with its DeLong interval for each month from the earliest to the latest in ``months``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    y_score : array-like of shape (n_samples,)
    months : sequence of str, length n_samples
        Each case's month, ``YYYY-MM`` (e.g. of its study date).
    min_per_class : int, default 5
        A month with fewer positives or negatives than this is "not enough data".
    confidence_level : float, default 0.95

    Returns
    -------
    tuple of PeriodAuc
        In calendar order, one per month of the span (empty when there are no cases).

    Raises
    ------
    BadInputError
        ``months`` has another length than the labels, a month is not ``YYYY-MM``, or
        ``min_per_class`` is below 2 (DeLong's variance needs two of each class).
    """
    if len(months) == 0 and np.size(y_true) == 0 and np.size(y_score) == 0:
        return ()  # no cases, no months (check_binary refuses an empty sample)
    y, s = check_binary(y_true, y_score)
    if len(months) != y.size:
        raise BadInputError(f"months has {len(months)} entries for {y.size} cases")
    if min_per_class < 2:
        raise BadInputError(f"min_per_class must be at least 2, got {min_per_class}")
    for month in set(months):
        _parse(month)
    labels = np.asarray(months, dtype=object)
    span = month_span(min(months), max(months))  # valid YYYY-MM sorts as text sorts
    return tuple(_one(month, y[labels == month], s[labels == month], min_per_class, confidence_level) for month in span)


def _one(month: str, y: npt.NDArray[np.int64], s: npt.NDArray[np.float64], minimum: int, level: float) -> PeriodAuc:
    """One month's entry."""
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    if n_pos < minimum or n_neg < minimum:
        reason = f"not enough data: {n_pos} positive, {n_neg} negative (needs {minimum} of each)"
        return PeriodAuc(month, n_pos, n_neg, None, reason)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)  # cannot happen with both classes present
        result = delong_auc(y, s, confidence_level=level)
    return PeriodAuc(month, n_pos, n_neg, result.ci)
