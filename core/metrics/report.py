"""The pilot-drift report's records: per site, per stratum, and the whole report with its gate verdict.

Pure data: :mod:`core.metrics.pilot_drift` fills them, services and the UI read them. A site or
stratum without enough labelled cases carries ``status="not enough data"`` with its counts and no
numbers at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.metrics.base import Interval, finite_or_none
from core.metrics.calibration.reliability import ReliabilityCurve
from core.metrics.operating_point import OperatingPointResult
from core.metrics.roc import RocCurve
from core.metrics.sample_size import SampleSizeResult
from core.types import JSONObject

__all__ = ["CalibrationSummary", "GapStatus", "PilotDriftReport", "SiteSummary", "StratumSummary"]


class GapStatus(StrEnum):
    """Where a site or stratum stands against the target gap."""

    REFERENCE = "reference"  # the benchmark itself
    WITHIN = "within target"
    OUTSIDE = "outside target"
    NOT_ENOUGH_DATA = "not enough data"


@dataclass(frozen=True, slots=True)
class CalibrationSummary:
    """Calibration of the model's probabilities at one site.

    Attributes
    ----------
    ece : float
        Expected calibration error, 10 equal-width bins.
    slope, intercept : float
        Calibration slope and calibration-in-the-large (``nan`` when undefined).
    brier : float
    reliability : ReliabilityCurve
    """

    ece: float
    slope: float
    intercept: float
    brier: float
    reliability: ReliabilityCurve

    def to_dict(self) -> JSONObject:
        """JSON-ready (the reliability curve included)."""
        return {
            "ece": finite_or_none(self.ece),
            "slope": finite_or_none(self.slope),
            "intercept": finite_or_none(self.intercept),
            "brier": finite_or_none(self.brier),
            "reliability": self.reliability.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """One site's discrimination, gap to the benchmark, operating point and calibration.

    Attributes
    ----------
    site : str
    n_labelled, n_positive, n_negative : int
        Labelled cases the figures rest on.
    status : GapStatus
    reason : str
        Why the status is what it is, in words (counts for "not enough data").
    auc, auc_bootstrap : Interval or None
        DeLong and percentile-bootstrap intervals; None when there is not enough data.
    gap, gap_bootstrap : Interval or None
        ``benchmark AUC - site AUC``; positive means the site does worse. None for the benchmark.
    p_value : float or None
        Two-sided DeLong test (unpaired) of "no gap".
    p_within_target : float or None
        One-sided test of ``H0: gap >= target``; small means the site is demonstrably within target.
    required : SampleSizeResult or None
        Labelled cases needed to detect the target gap at this site's prevalence.
    """

    site: str
    n_labelled: int
    n_positive: int
    n_negative: int
    status: GapStatus
    reason: str
    auc: Interval | None = None
    auc_bootstrap: Interval | None = None
    gap: Interval | None = None
    gap_bootstrap: Interval | None = None
    p_value: float | None = None
    p_within_target: float | None = None
    operating_point: OperatingPointResult | None = None
    calibration: CalibrationSummary | None = None
    roc: RocCurve | None = field(default=None, repr=False)
    required: SampleSizeResult | None = None

    @property
    def enough_cases(self) -> bool:
        """True when the labelled cases reach the planned sample size."""
        return (
            self.required is not None
            and self.required.n_total is not None
            and (self.n_labelled >= self.required.n_total)
        )

    def to_dict(self) -> JSONObject:
        """JSON-ready; curves are left out (the UI reads them from the dataclass)."""
        return {
            "site": self.site,
            "n_labelled": self.n_labelled,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "status": str(self.status),
            "reason": self.reason,
            "auc": None if self.auc is None else self.auc.to_dict(),
            "auc_bootstrap": None if self.auc_bootstrap is None else self.auc_bootstrap.to_dict(),
            "gap": None if self.gap is None else self.gap.to_dict(),
            "gap_bootstrap": None if self.gap_bootstrap is None else self.gap_bootstrap.to_dict(),
            "p_value": _num(self.p_value),
            "p_within_target": _num(self.p_within_target),
            "operating_point": None if self.operating_point is None else self.operating_point.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "required": None if self.required is None else self.required.to_dict(),
            "enough_cases": self.enough_cases,
        }


@dataclass(frozen=True, slots=True)
class StratumSummary:
    """One harmonized stratum (e.g. ``software = "DigitalDiagnost 5.1.0"``) at one site.

    Attributes
    ----------
    site, dimension, level : str
        E.g. ``"riverside"``, ``"software"``, ``"DigitalDiagnost 5.1.0 UNIQUE2"``.
    gap : Interval or None
        Against the benchmark's overall AUC; at the benchmark itself the cases overlap, so only
        the estimate is given (``nan`` bounds) and ``p_value`` is None.
    """

    site: str
    dimension: str
    level: str
    n_labelled: int
    n_positive: int
    n_negative: int
    status: GapStatus
    reason: str
    auc: Interval | None = None
    gap: Interval | None = None
    p_value: float | None = None

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "site": self.site,
            "dimension": self.dimension,
            "level": self.level,
            "n_labelled": self.n_labelled,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "status": str(self.status),
            "reason": self.reason,
            "auc": None if self.auc is None else self.auc.to_dict(),
            "gap": None if self.gap is None else self.gap.to_dict(),
            "p_value": _num(self.p_value),
        }


@dataclass(frozen=True, slots=True)
class PilotDriftReport:
    """Every site against the benchmark, with the gate verdict.

    Attributes
    ----------
    benchmark : SiteSummary
        Status ``reference`` (or ``not enough data``).
    sites : tuple of SiteSummary
        Deployment sites, sorted by name.
    strata : tuple of StratumSummary
    max_gap : float
        The target: a site passes when its gap is at most this.
    use_ci_bound : bool
        Judge the gap's upper confidence bound instead of its point estimate.
    confidence_level : float
    """

    benchmark: SiteSummary
    sites: tuple[SiteSummary, ...]
    strata: tuple[StratumSummary, ...]
    max_gap: float
    use_ci_bound: bool
    confidence_level: float
    n_resamples: int
    random_state: int | None

    @property
    def failing_sites(self) -> tuple[str, ...]:
        """Deployment sites outside the target."""
        return tuple(s.site for s in self.sites if s.status is GapStatus.OUTSIDE)

    @property
    def insufficient_sites(self) -> tuple[str, ...]:
        """Sites (the benchmark included) without enough labelled cases to be judged."""
        every = (self.benchmark, *self.sites)
        return tuple(s.site for s in every if s.status is GapStatus.NOT_ENOUGH_DATA)

    @property
    def passed(self) -> bool:
        """The gate: no deployment site outside the target (sites without enough data do not fail it)."""
        return not self.failing_sites

    def to_dict(self) -> JSONObject:
        """JSON-ready: what ``vigil validate --json`` prints under its report keys."""
        return {
            "passed": self.passed,
            "max_gap": self.max_gap,
            "gap_judged_on": "upper confidence bound" if self.use_ci_bound else "point estimate",
            "confidence_level": self.confidence_level,
            "n_resamples": self.n_resamples,
            "random_state": self.random_state,
            "failing_sites": list(self.failing_sites),
            "insufficient_sites": list(self.insufficient_sites),
            "benchmark": self.benchmark.to_dict(),
            "sites": [s.to_dict() for s in self.sites],
            "strata": [s.to_dict() for s in self.strata],
        }


def _num(value: float | None) -> float | None:
    return None if value is None else finite_or_none(value)
