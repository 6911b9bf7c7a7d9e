"""Pilot drift: every deployment site's AUC against the retrospective benchmark, with honest uncertainty.

For each site: the AUC with DeLong and bootstrap intervals, the gap ``benchmark AUC - site AUC``
with its interval (DeLong, unpaired: the sites share no cases; and bootstrap, each site
resampled on its own), the two-sided p-value of "no gap", a one-sided p-value of "the gap
reaches the target", sensitivity/specificity/PPV/NPV at the operating threshold, calibration,
and the labelled cases needed to detect the target gap at the site's prevalence. The same per
harmonized stratum (vendor, detector, protocol, software version, age band, sex), against the
benchmark's overall AUC.

A site or stratum with fewer than ``min_cases`` labelled cases, or fewer than ``min_per_class``
of either class, is "not enough data": its counts are shown and no number is computed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, check_binary, check_confidence_level
from core.metrics.bootstrap import BootstrapResult, bootstrap_auc, percentile_interval
from core.metrics.calibration import (
    brier_score_loss,
    calibration_intercept,
    calibration_slope,
    expected_calibration_error,
    reliability_curve,
)
from core.metrics.delong import DelongResult, delong_auc, delong_test_unpaired
from core.metrics.operating_point import operating_point
from core.metrics.report import CalibrationSummary, GapStatus, PilotDriftReport, SiteSummary, StratumSummary
from core.metrics.roc import roc_curve
from core.metrics.sample_size import SampleSizeMethod, SampleSizeResult, required_sample_size
from core.types import FloatArray, IntArray

__all__ = ["DriftOptions", "pilot_drift_report"]


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """How the report judges and how much it resamples.

    Attributes
    ----------
    max_gap : float, default 0.03
        The target: the largest acceptable ``benchmark AUC - site AUC``.
    use_ci_bound : bool, default False
        Judge the gap's upper confidence bound (stricter) instead of its point estimate.
    confidence_level : float, default 0.95
    n_resamples : int, default 1000
        Bootstrap replicates per site.
    random_state : int or None, default 0
        Seed of the bootstrap; the same seed gives the same intervals.
    min_cases, min_per_class : int, default 20 and 5
        Below either, a site or stratum is "not enough data".
    alpha, power : float, default 0.05 and 0.8
        Of the sample-size plan.
    sample_size_method : SampleSizeMethod, default Hanley-McNeil
    """

    max_gap: float = 0.03
    use_ci_bound: bool = False
    confidence_level: float = DEFAULT_CONFIDENCE
    n_resamples: int = 1000
    random_state: int | None = 0
    min_cases: int = 20
    min_per_class: int = 5
    alpha: float = 0.05
    power: float = 0.8
    sample_size_method: SampleSizeMethod = SampleSizeMethod.HANLEY_MCNEIL

    def __post_init__(self) -> None:
        if not 0.0 < self.max_gap < 0.5:
            raise BadInputError(f"max_gap must be in (0, 0.5), got {self.max_gap!r}")
        check_confidence_level(self.confidence_level)
        if self.n_resamples < 1 or self.min_cases < 1 or self.min_per_class < 2:
            raise BadInputError(
                f"need n_resamples >= 1, min_cases >= 1 and min_per_class >= 2, got {self.n_resamples}, "
                f"{self.min_cases}, {self.min_per_class}"
            )


@dataclass(frozen=True, slots=True, eq=False)
class _Reference:
    """The benchmark's figures every site is compared with."""

    delong: DelongResult | None
    bootstrap: BootstrapResult | None
    prevalence: float


def pilot_drift_report(  # noqa: PLR0913 - three per-case arrays and their keyword companions
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    sites: npt.ArrayLike,
    *,
    benchmark: str,
    threshold: float,
    strata: Mapping[str, npt.ArrayLike] | None = None,
    groups: npt.ArrayLike | None = None,
    all_sites: Sequence[str] = (),
    options: DriftOptions | None = None,
) -> PilotDriftReport:
    """Compare every site with the benchmark (see the module docstring).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels of the labelled cases (unlabelled cases are left out by the caller).
    y_score : array-like of shape (n_samples,)
        The model's probabilities.
    sites : array-like of shape (n_samples,)
        Site name of each case.
    benchmark : str
        The retrospective benchmark site.
    threshold : float
        The model's operating threshold.
    strata : mapping of str to array-like of shape (n_samples,), optional
        Harmonized stratum level of each case per dimension, e.g. ``{"vendor": [...], "age_band": [...]}``.
    groups : array-like of shape (n_samples,), optional
        Patient of each case; the bootstrap draws whole patients where patients repeat.
    all_sites : sequence of str, optional
        Sites to report even when they have no labelled case (shown as "not enough data").
    options : DriftOptions, optional

    Returns
    -------
    PilotDriftReport

    Raises
    ------
    BadInputError
        Arrays of different lengths, or a malformed option.
    """
    opts = options or DriftOptions()
    y, s = check_binary(y_true, y_score, what="labelled cases") if np.size(y_true) else _empty()
    site_arr = _labels(sites, y.size, "sites")
    group_arr = None if groups is None else _labels(groups, y.size, "groups")
    with warnings.catch_warnings():
        # Undefined values are shown as such in the report; the warnings would only repeat it.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        bench_mask = site_arr == benchmark
        ref, bench_summary = _benchmark(
            y[bench_mask], s[bench_mask], _sub(group_arr, bench_mask), benchmark, threshold, opts
        )
        names = sorted((set(site_arr.tolist()) | set(all_sites)) - {benchmark})
        summaries = tuple(
            _site(name, y[m], s[m], _sub(group_arr, m), ref, threshold, opts)
            for name in names
            for m in [site_arr == name]
        )
        strata_rows = _strata(y, s, site_arr, strata or {}, benchmark, ref, opts)
    return PilotDriftReport(
        benchmark=bench_summary,
        sites=summaries,
        strata=strata_rows,
        max_gap=opts.max_gap,
        use_ci_bound=opts.use_ci_bound,
        confidence_level=opts.confidence_level,
        n_resamples=opts.n_resamples,
        random_state=opts.random_state,
    )


def _empty() -> tuple[IntArray, FloatArray]:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)


def _labels(values: npt.ArrayLike, n: int, name: str) -> npt.NDArray[np.str_]:
    arr = np.asarray(values, dtype=str) if np.size(values) else np.empty(0, dtype=str)
    if arr.shape != (n,):
        raise BadInputError(f"{name} must have one entry per labelled case ({n}), got shape {arr.shape}")
    return arr


def _sub(arr: npt.NDArray[np.str_] | None, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.str_] | None:
    return None if arr is None else arr[mask]


def _shortfall(y: IntArray, opts: DriftOptions) -> str | None:
    """Why these cases are not enough, or None when they are."""
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    if y.size < opts.min_cases or n_pos < opts.min_per_class or n_neg < opts.min_per_class:
        return (
            f"{y.size} labelled ({n_pos} positive, {n_neg} negative); needs at least {opts.min_cases} "
            f"with {opts.min_per_class} of each class"
        )
    return None


def _counts(y: IntArray) -> tuple[int, int, int]:
    n_pos = int(y.sum())
    return int(y.size), n_pos, int(y.size) - n_pos


def _bootstrap(y: IntArray, s: FloatArray, groups: npt.NDArray[np.str_] | None, opts: DriftOptions) -> BootstrapResult:
    repeat = groups is not None and np.unique(groups).size < groups.size
    return bootstrap_auc(
        y,
        s,
        n_resamples=opts.n_resamples,
        confidence_level=opts.confidence_level,
        groups=groups if repeat else None,
        random_state=opts.random_state,
    )


def _calibration(y: IntArray, s: FloatArray) -> CalibrationSummary:
    return CalibrationSummary(
        ece=expected_calibration_error(y, s),
        slope=calibration_slope(y, s),
        intercept=calibration_intercept(y, s),
        brier=brier_score_loss(y, s),
        reliability=reliability_curve(y, s),
    )


def _benchmark(
    y: IntArray, s: FloatArray, groups: npt.NDArray[np.str_] | None, name: str, threshold: float, opts: DriftOptions
) -> tuple[_Reference, SiteSummary]:
    n, n_pos, n_neg = _counts(y)
    prevalence = n_pos / n if n else float("nan")
    short = _shortfall(y, opts)
    if short is not None:
        summary = SiteSummary(name, n, n_pos, n_neg, GapStatus.NOT_ENOUGH_DATA, f"benchmark: {short}")
        return _Reference(None, None, prevalence), summary
    dl = delong_auc(y, s, confidence_level=opts.confidence_level)
    boot = _bootstrap(y, s, groups, opts)
    summary = SiteSummary(
        name,
        n,
        n_pos,
        n_neg,
        GapStatus.REFERENCE,
        "the retrospective benchmark every site is compared with",
        auc=dl.ci,
        auc_bootstrap=boot.ci,
        operating_point=operating_point(y, s, threshold=threshold, confidence_level=opts.confidence_level),
        calibration=_calibration(y, s),
        roc=roc_curve(y, s).thinned(),
    )
    return _Reference(dl, boot, prevalence), summary


def _site(
    name: str,
    y: IntArray,
    s: FloatArray,
    groups: npt.NDArray[np.str_] | None,
    ref: _Reference,
    threshold: float,
    opts: DriftOptions,
) -> SiteSummary:
    n, n_pos, n_neg = _counts(y)
    required = _required(ref, n_pos / n if n_pos and n_neg else ref.prevalence, opts)
    short = _shortfall(y, opts)
    if short is None and ref.delong is None:
        short = "the benchmark has not enough labelled cases to compare with"
    if short is not None:
        return SiteSummary(name, n, n_pos, n_neg, GapStatus.NOT_ENOUGH_DATA, short, required=required)
    assert ref.delong is not None and ref.bootstrap is not None  # narrowed by the shortfall check above
    dl = delong_auc(y, s, confidence_level=opts.confidence_level)
    boot = _bootstrap(y, s, groups, opts)
    test = delong_test_unpaired(ref.delong, dl, confidence_level=opts.confidence_level)
    gap_reps = ref.bootstrap.replicates - boot.replicates
    status, reason = _judge(test.difference, opts)
    return SiteSummary(
        name,
        n,
        n_pos,
        n_neg,
        status,
        reason,
        auc=dl.ci,
        auc_bootstrap=boot.ci,
        gap=test.difference,
        gap_bootstrap=percentile_interval(
            gap_reps, estimate=test.difference.estimate, confidence_level=opts.confidence_level
        ),
        p_value=test.p_value,
        p_within_target=_p_within(test.difference.estimate, test.se, opts.max_gap),
        operating_point=operating_point(y, s, threshold=threshold, confidence_level=opts.confidence_level),
        calibration=_calibration(y, s),
        roc=roc_curve(y, s).thinned(),
        required=required,
    )


def _judge(gap: Interval, opts: DriftOptions) -> tuple[GapStatus, str]:
    judged = gap.upper if opts.use_ci_bound else gap.estimate
    what = f"upper {opts.confidence_level:.0%} bound of the gap" if opts.use_ci_bound else "gap"
    if math.isnan(judged):
        return GapStatus.NOT_ENOUGH_DATA, f"the {what} is undefined"
    if judged > opts.max_gap:
        return GapStatus.OUTSIDE, f"{what} {judged:.3f} exceeds the target {opts.max_gap:.3f}"
    return GapStatus.WITHIN, f"{what} {judged:.3f} is within the target {opts.max_gap:.3f}"


def _p_within(gap: float, se: float, target: float) -> float:
    """One-sided p-value of ``H0: gap >= target`` (small: the gap is demonstrably below target)."""
    if not se > 0:
        return float("nan")
    return float(norm.cdf((gap - target) / se))


def _required(ref: _Reference, prevalence: float, opts: DriftOptions) -> SampleSizeResult | None:
    if ref.delong is None or not 0.0 < prevalence < 1.0 or not ref.delong.auc - opts.max_gap > 0.5:
        return None
    return required_sample_size(
        auc_reference=min(ref.delong.auc, 1.0 - 1e-9),
        gap=opts.max_gap,
        prevalence=prevalence,
        alpha=opts.alpha,
        power=opts.power,
        method=opts.sample_size_method,
    )


def _strata(
    y: IntArray,
    s: FloatArray,
    sites: npt.NDArray[np.str_],
    strata: Mapping[str, npt.ArrayLike],
    benchmark: str,
    ref: _Reference,
    opts: DriftOptions,
) -> tuple[StratumSummary, ...]:
    rows: list[StratumSummary] = []
    for dimension in sorted(strata):
        levels = _labels(strata[dimension], y.size, f"strata[{dimension!r}]")
        for site in sorted(set(sites.tolist())):
            in_site = sites == site
            for level in sorted(set(levels[in_site].tolist())):
                mask = in_site & (levels == level)
                rows.append(
                    _stratum(site, dimension, level, y[mask], s[mask], ref, opts, overlaps_reference=site == benchmark)
                )
    return tuple(rows)


def _stratum(
    site: str,
    dimension: str,
    level: str,
    y: IntArray,
    s: FloatArray,
    ref: _Reference,
    opts: DriftOptions,
    *,
    overlaps_reference: bool,
) -> StratumSummary:
    n, n_pos, n_neg = _counts(y)
    short = _shortfall(y, opts)
    if short is None and ref.delong is None:
        short = "the benchmark has not enough labelled cases to compare with"
    if short is not None:
        return StratumSummary(site, dimension, level, n, n_pos, n_neg, GapStatus.NOT_ENOUGH_DATA, short)
    assert ref.delong is not None
    dl = delong_auc(y, s, confidence_level=opts.confidence_level)
    if overlaps_reference:
        # A subset of the benchmark is not independent of it: no interval, no test.
        nan = float("nan")
        gap = Interval(ref.delong.auc - dl.auc, nan, nan, opts.confidence_level, "estimate only (overlapping cases)")
        return StratumSummary(
            site, dimension, level, n, n_pos, n_neg, GapStatus.REFERENCE, "part of the benchmark", auc=dl.ci, gap=gap
        )
    test = delong_test_unpaired(ref.delong, dl, confidence_level=opts.confidence_level)
    status, reason = _judge(test.difference, opts)
    return StratumSummary(
        site, dimension, level, n, n_pos, n_neg, status, reason, auc=dl.ci, gap=test.difference, p_value=test.p_value
    )
