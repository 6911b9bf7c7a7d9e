"""How many labelled cases a site needs before its AUC gap to the benchmark can be judged.

The variance of an AUC estimate with ``n_pos`` positives and ``n_neg`` negatives is taken from
Hanley & McNeil (exponential approximation) or Obuchowski (binormal model). The site needs ``n``
cases, at its prevalence, so that a one-sample test of ``H0: AUC = A0`` (the benchmark AUC)
against ``H1: AUC = A0 - gap`` has the requested power:

``z_(1 - alpha/2) * sqrt(V(A0; n)) + z_(power) * sqrt(V(A1; n)) <= gap``.

With ``reference_variance`` the benchmark's own uncertainty is added to both variances; a
benchmark that is too small on its own then makes the target unreachable at any site size.

References
----------
Hanley & McNeil (1982), Radiology 143:29-36. Obuchowski (1994), Academic Radiology 1:1-7;
Obuchowski (1998), Academic Radiology 5:S96-S97.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from scipy.stats import norm

from core.errors import BadInputError
from core.types import JSONObject

__all__ = [
    "SampleSizeMethod",
    "SampleSizeResult",
    "hanley_mcneil_variance",
    "obuchowski_variance",
    "required_sample_size",
]

#: Never plan for more cases than this; beyond it the answer is "unreachable".
MAX_CASES: Final = 10_000_000


class SampleSizeMethod(StrEnum):
    """Which variance approximation of the AUC plans the sample size."""

    HANLEY_MCNEIL = "hanley-mcneil"
    OBUCHOWSKI = "obuchowski"


@dataclass(frozen=True, slots=True)
class SampleSizeResult:
    """Labelled cases a site needs, at its prevalence.

    Attributes
    ----------
    n_total, n_positive, n_negative : int or None
        None when the target cannot be reached (see ``reachable``).
    reachable : bool
        False when no site size suffices (the benchmark's own variance is too large, or the
        answer exceeds ``MAX_CASES``).
    """

    n_total: int | None
    n_positive: int | None
    n_negative: int | None
    reachable: bool
    auc_reference: float
    gap: float
    prevalence: float
    alpha: float
    power: float
    method: SampleSizeMethod

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "n_total": self.n_total,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "reachable": self.reachable,
            "auc_reference": self.auc_reference,
            "gap": self.gap,
            "prevalence": self.prevalence,
            "alpha": self.alpha,
            "power": self.power,
            "method": str(self.method),
        }


def hanley_mcneil_variance(auc: float, n_positive: float, n_negative: float) -> float:
    """Hanley & McNeil's variance of an AUC estimate.

    Examples
    --------
    >>> round(hanley_mcneil_variance(0.9, 50, 50), 6)
    0.001032
    """
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    a2 = auc * auc
    return (auc * (1.0 - auc) + (n_positive - 1.0) * (q1 - a2) + (n_negative - 1.0) * (q2 - a2)) / (
        n_positive * n_negative
    )


def obuchowski_variance(auc: float, n_positive: float, n_negative: float) -> float:
    """Obuchowski's binormal approximation of the variance of an AUC estimate.

    Examples
    --------
    >>> round(obuchowski_variance(0.9, 50, 50), 6)
    0.001368
    """
    a = math.sqrt(2.0) * float(norm.ppf(auc))
    kappa = n_negative / n_positive
    return 0.0099 * math.exp(-a * a / 2.0) * ((5.0 * a * a + 8.0) + (a * a + 8.0) / kappa) / n_positive


def required_sample_size(
    *,
    auc_reference: float,
    gap: float,
    prevalence: float,
    alpha: float = 0.05,
    power: float = 0.8,
    method: SampleSizeMethod | str = SampleSizeMethod.HANLEY_MCNEIL,
    reference_variance: float = 0.0,
) -> SampleSizeResult:
    """Smallest number of labelled cases that detects an AUC drop of ``gap``.

    Parameters
    ----------
    auc_reference : float
        The benchmark AUC, in (0.5, 1).
    gap : float
        The AUC drop to detect (the target), in (0, auc_reference - 0.5].
    prevalence : float
        Share of positives at the site, in (0, 1).
    alpha : float, default 0.05
        Two-sided significance level.
    power : float, default 0.8
    method : {"hanley-mcneil", "obuchowski"}
    reference_variance : float, default 0.0
        Variance of the benchmark AUC to add (0 treats the benchmark as known).

    Returns
    -------
    SampleSizeResult

    Raises
    ------
    BadInputError
        A parameter outside its range, naming it.

    Examples
    --------
    >>> r = required_sample_size(auc_reference=0.9, gap=0.05, prevalence=0.2)
    >>> r.n_total, r.n_positive
    (783, 157)
    """
    _check(auc_reference, gap, prevalence, alpha, power)
    chosen = SampleSizeMethod(method)
    variance = hanley_mcneil_variance if chosen is SampleSizeMethod.HANLEY_MCNEIL else obuchowski_variance
    z_a, z_b = float(norm.ppf(1.0 - alpha / 2.0)), float(norm.ppf(power))
    alternative = auc_reference - gap

    def enough(n: int) -> bool:
        n_pos, n_neg = prevalence * n, (1.0 - prevalence) * n
        v0 = variance(auc_reference, n_pos, n_neg) + reference_variance
        v1 = variance(alternative, n_pos, n_neg) + reference_variance
        return z_a * math.sqrt(v0) + z_b * math.sqrt(v1) <= gap

    n = _smallest(enough, lowest=_minimum_cases(prevalence))
    result = SampleSizeResult(None, None, None, False, auc_reference, gap, prevalence, alpha, power, chosen)
    if n is None:
        return result
    n_pos = math.ceil(prevalence * n)
    return SampleSizeResult(n, n_pos, n - n_pos, True, auc_reference, gap, prevalence, alpha, power, chosen)


def _minimum_cases(prevalence: float) -> int:
    # At least two cases of each class, or the variance formulas say nothing.
    return max(4, math.ceil(2.0 / min(prevalence, 1.0 - prevalence)))


def _smallest(enough: Callable[[int], bool], *, lowest: int) -> int | None:
    """Smallest ``n >= lowest`` with ``enough(n)`` (monotone), by doubling then bisection."""
    hi = lowest
    while not enough(hi):
        if hi >= MAX_CASES:
            return None
        hi = min(hi * 2, MAX_CASES)
    lo = lowest - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _check(auc_reference: float, gap: float, prevalence: float, alpha: float, power: float) -> None:
    if not 0.5 < auc_reference < 1.0:
        raise BadInputError(f"auc_reference must be in (0.5, 1), got {auc_reference!r}")
    if not 0.0 < gap <= auc_reference - 0.5:
        raise BadInputError(f"gap must be in (0, {auc_reference - 0.5:.4f}], got {gap!r}")
    if not 0.0 < prevalence < 1.0:
        raise BadInputError(f"prevalence must be in (0, 1), got {prevalence!r}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise BadInputError(f"alpha and power must be in (0, 1), got alpha={alpha!r}, power={power!r}")
