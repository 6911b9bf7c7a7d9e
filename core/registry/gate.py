"""The change-control gate: a challenger model against the champion on a locked hold-out, by a plan's criteria.

Pure numpy: the caller brings both models' scores of the same hold-out studies, the explanation
report's verdict and the :class:`~core.registry.modification.Determination`; the gate returns a
:class:`GateReport` that names every criterion, its figure, its bound and where the figure came
from. Non-inferiority is DeLong's paired test of challenger AUC − champion AUC: a site passes when
the lower bound of the two-sided ``confidence`` interval lies above −δ. A modification outside the
plan fails the gate whatever the figures say, and the figures are still reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError, EmptySampleError
from core.metrics.auc import auc_from_arrays
from core.metrics.base import check_binary, finite_or_none, undefined
from core.metrics.calibration.ece import expected_calibration_error
from core.metrics.delong import AucComparison, delong_test_paired
from core.metrics.operating_point import sensitivity_score, specificity_score
from core.metrics.paired_proportion import paired_proportion_difference
from core.registry.modification import Determination
from core.registry.plan import EXPLANATION_VERDICTS, AcceptanceCriteria, ChangePlan, InsufficientSitePolicy
from core.types import FloatArray, IntArray, JSONObject, JSONValue

__all__ = [
    "CriterionResult",
    "GateReport",
    "HoldoutScores",
    "ModelFigures",
    "SiteComparison",
    "SiteStatus",
    "evaluate_gate",
]

# Rates and ECE are ratios of counts: a figure equal to its bound must not fail on rounding.
_TOLERANCE: Final = 1e-12

_HOLDOUT: Final = "the locked hold-out"


class SiteStatus(StrEnum):
    """A site's verdict in the per-site non-inferiority test."""

    NON_INFERIOR = "non-inferior"
    INFERIOR = "inferior"
    INSUFFICIENT = "insufficient data"


@dataclass(frozen=True, slots=True, eq=False)
class HoldoutScores:
    """Both models' scores of the same locked hold-out studies.

    Attributes
    ----------
    y_true : ndarray of shape (n,)
        0/1 outcome of record, 1 = finding present.
    sites : sequence of str or ndarray of shape (n,)
        The site of every study.
    champion, challenger : ndarray of shape (n,)
        Probabilities in [0, 1] of the model in service and of the candidate.
    champion_threshold, challenger_threshold : float
        Each model card's operating threshold; ``score >= threshold`` is called positive.
    """

    y_true: IntArray = field(repr=False)
    sites: Sequence[str] | npt.NDArray[Any] = field(repr=False)
    champion: FloatArray = field(repr=False)
    challenger: FloatArray = field(repr=False)
    champion_threshold: float
    challenger_threshold: float


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One acceptance criterion, judged.

    Attributes
    ----------
    name : str
        E.g. ``"site AUC non-inferior: riverside"``, ``"calibration (ECE)"``.
    passed : bool or None
        None when the criterion was skipped (a site without enough data, under ``skip``).
    value, bound : float, str or None
        The figure judged and the bound it is held to (a verdict or plan scope where not numeric);
        NaN when undefined.
    detail : str
        One sentence with the numbers and the number of studies.
    source : str
        Which data and method produced the figure.
    """

    name: str
    passed: bool | None
    value: float | str | None
    bound: float | str | None
    detail: str
    source: str

    def to_dict(self) -> JSONObject:
        """JSON-ready; NaN becomes None."""
        return {
            "name": self.name,
            "passed": self.passed,
            "value": _json_figure(self.value),
            "bound": _json_figure(self.bound),
            "detail": self.detail,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class SiteComparison:
    """Challenger against champion at one site.

    Attributes
    ----------
    site : str
    n, n_positive : int
        Hold-out studies at the site, and those with the finding.
    champion_auc, challenger_auc : float
        NaN (with a warning) when the site has a single class.
    difference : float
        ``challenger_auc - champion_auc``.
    ci_low, ci_high : float
        Two-sided DeLong interval of the difference; NaN when the site cannot be judged.
    status : SiteStatus
    """

    site: str
    n: int
    n_positive: int
    champion_auc: float
    challenger_auc: float
    difference: float
    ci_low: float
    ci_high: float
    status: SiteStatus

    def to_dict(self) -> JSONObject:
        """JSON-ready; NaN becomes None."""
        return {
            "site": self.site,
            "n": self.n,
            "n_positive": self.n_positive,
            "champion_auc": finite_or_none(self.champion_auc),
            "challenger_auc": finite_or_none(self.challenger_auc),
            "difference": finite_or_none(self.difference),
            "ci_low": finite_or_none(self.ci_low),
            "ci_high": finite_or_none(self.ci_high),
            "status": str(self.status),
        }


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """One model's figures on the whole hold-out.

    Attributes
    ----------
    threshold : float
        The model's own operating threshold.
    auc, sensitivity, specificity, ece : float
        Sensitivity and specificity at ``threshold``; ECE over the plan's bins. NaN (with a
        warning) when undefined.
    """

    threshold: float
    auc: float
    sensitivity: float
    specificity: float
    ece: float

    def to_dict(self) -> JSONObject:
        """JSON-ready; NaN becomes None."""
        return {
            "threshold": self.threshold,
            "auc": finite_or_none(self.auc),
            "sensitivity": finite_or_none(self.sensitivity),
            "specificity": finite_or_none(self.specificity),
            "ece": finite_or_none(self.ece),
        }


@dataclass(frozen=True, slots=True)
class GateReport:
    """The gate's decision with every figure behind it.

    Attributes
    ----------
    plan_id, plan_version, plan_sha256 : str
        The plan judged against (its SHA-256 over the exact file bytes).
    n, n_positive : int
        Hold-out studies, and those with the finding.
    champion, challenger : ModelFigures
    overall : AucComparison
        Paired DeLong of challenger − champion AUC on every hold-out study.
    sites : tuple of SiteComparison
        Sorted by site name.
    criteria : tuple of CriterionResult
    determination : Determination
    passed : bool
        Every criterion passed; a skipped one (None) counts only under ``insufficient_site = "skip"``.
    failed : tuple of str
        Names of the failed criteria.
    significant_change : bool
        The modification lies outside the plan: a new regulatory submission is needed.
    """

    plan_id: str
    plan_version: str
    plan_sha256: str
    n: int
    n_positive: int
    champion: ModelFigures
    challenger: ModelFigures
    overall: AucComparison
    sites: tuple[SiteComparison, ...]
    criteria: tuple[CriterionResult, ...]
    determination: Determination
    passed: bool
    failed: tuple[str, ...]
    significant_change: bool

    def to_dict(self) -> JSONObject:
        """JSON-ready; NaN becomes None."""
        return {
            "plan": {"id": self.plan_id, "version": self.plan_version, "sha256": self.plan_sha256},
            "n": self.n,
            "n_positive": self.n_positive,
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "overall": self.overall.to_dict(),
            "sites": [s.to_dict() for s in self.sites],
            "criteria": [c.to_dict() for c in self.criteria],
            "determination": self.determination.to_dict(),
            "passed": self.passed,
            "failed": list(self.failed),
            "significant_change": self.significant_change,
        }


@dataclass(frozen=True, slots=True, eq=False)
class _Holdout:
    """Checked hold-out arrays, all of shape (n,)."""

    y: IntArray
    sites: npt.NDArray[np.str_]
    champion: FloatArray
    challenger: FloatArray


def evaluate_gate(
    plan: ChangePlan,
    scores: HoldoutScores,
    *,
    explanation_verdict: str | None,
    determination: Determination,
) -> GateReport:
    """Judge a challenger against the champion on a locked hold-out by ``plan``'s criteria.

    Parameters
    ----------
    plan : ChangePlan
    scores : HoldoutScores
        Both models' probabilities of the same hold-out studies, shape (n,) each.
    explanation_verdict : str or None
        The challenger's explanation report verdict (``"supported"``, ``"limited"``,
        ``"not supported"``, ``"unknown"``); None when there is no report.
    determination : Determination
        From :func:`~core.registry.modification.determine`.

    Returns
    -------
    GateReport

    Raises
    ------
    EmptySampleError
        No hold-out studies.
    BadInputError
        Arrays of different lengths, a label that is not 0/1, a score that is not a finite
        probability, a threshold outside [0, 1], an empty or non-string site, an unknown verdict.
    """
    data = _check_holdout(scores)
    _check_verdict(explanation_verdict)
    acc = plan.acceptance
    sites = tuple(_compare_site(data, str(site), acc) for site in sorted(set(data.sites.tolist())))
    champion = _figures(data.y, data.champion, scores.champion_threshold, acc)
    challenger = _figures(data.y, data.challenger, scores.challenger_threshold, acc)
    overall = delong_test_paired(data.y, data.challenger, data.champion, confidence_level=acc.confidence)
    n, n_pos = int(data.y.size), int(data.y.sum())
    criteria = (
        _modification_criterion(plan, determination),
        *(_site_criterion(s, acc) for s in sites),
        _overall_criterion(overall, acc, n, n_pos),
        _rate_criterion(data, scores, acc, positives=True),
        _rate_criterion(data, scores, acc, positives=False),
        _ece_criterion(champion, challenger, acc, n),
        *_explanation_criteria(acc, explanation_verdict),
    )
    failed = tuple(c.name for c in criteria if not _counts_as_passed(c, acc))
    return GateReport(
        plan_id=plan.id,
        plan_version=plan.version,
        plan_sha256=plan.sha256,
        n=n,
        n_positive=n_pos,
        champion=champion,
        challenger=challenger,
        overall=overall,
        sites=sites,
        criteria=criteria,
        determination=determination,
        passed=not failed,
        failed=failed,
        significant_change=not determination.within_plan,
    )


def _counts_as_passed(c: CriterionResult, acc: AcceptanceCriteria) -> bool:
    if c.passed is None:
        return acc.insufficient_site is InsufficientSitePolicy.SKIP
    return c.passed


# --- input checks -------------------------------------------------------------------------------


def _check_holdout(scores: HoldoutScores) -> _Holdout:
    lengths = {name: _length(name, getattr(scores, name)) for name in ("y_true", "sites", "champion", "challenger")}
    if len(set(lengths.values())) != 1:
        raise BadInputError(f"hold-out arrays differ in length: {', '.join(f'{k} {v}' for k, v in lengths.items())}")
    if lengths["y_true"] == 0:
        raise EmptySampleError("the locked hold-out")
    y, champion = check_binary(scores.y_true, scores.champion, what="hold-out champion scores", probability=True)
    _, challenger = check_binary(y, scores.challenger, what="hold-out challenger scores", probability=True)
    for name in ("champion_threshold", "challenger_threshold"):
        _check_threshold(name, getattr(scores, name))
    return _Holdout(y=y, sites=_check_sites(scores.sites), champion=champion, challenger=challenger)


def _length(name: str, values: object) -> int:
    shape = np.shape(values)  # type: ignore[call-overload]  # any array-like, refused below when not 1-d
    if len(shape) != 1:
        raise BadInputError(f"hold-out {name} must be 1-d, got shape {shape}")
    return int(shape[0])


def _check_threshold(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise BadInputError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0):
        raise BadInputError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_sites(sites: Sequence[str] | npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    values = list(sites.tolist() if isinstance(sites, np.ndarray) else sites)
    bad = [s for s in values if not isinstance(s, str) or not s.strip()]
    if bad:
        raise BadInputError(f"hold-out sites must be non-empty names, found {bad[0]!r} ({len(bad)} such)")
    return np.asarray(values, dtype=np.str_)


def _check_verdict(verdict: str | None) -> None:
    if verdict is not None and verdict not in EXPLANATION_VERDICTS:
        choices = ", ".join(repr(v) for v in EXPLANATION_VERDICTS)
        raise BadInputError(f"unknown explanation verdict {verdict!r} (one of {choices}, or None)")


# --- figures ------------------------------------------------------------------------------------


def _figures(y: IntArray, s: FloatArray, threshold: float, acc: AcceptanceCriteria) -> ModelFigures:
    return ModelFigures(
        threshold=float(threshold),
        auc=auc_from_arrays(y, s, what="the locked hold-out"),
        sensitivity=sensitivity_score(y, s, threshold=threshold),
        specificity=specificity_score(y, s, threshold=threshold),
        ece=expected_calibration_error(y, s, n_bins=acc.ece_bins),
    )


def _compare_site(data: _Holdout, site: str, acc: AcceptanceCriteria) -> SiteComparison:
    mask = data.sites == site
    y, champion, challenger = data.y[mask], data.champion[mask], data.challenger[mask]
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    if n_pos < acc.min_site_positives or n_neg < acc.min_site_negatives:
        return _insufficient_site(site, y, champion, challenger, acc)
    cmp = delong_test_paired(y, challenger, champion, confidence_level=acc.confidence)
    lower = cmp.difference.lower
    if math.isnan(lower):  # pragma: no cover - two cases of each class always define the variance
        return _insufficient_site(site, y, champion, challenger, acc)
    status = SiteStatus.NON_INFERIOR if lower > -acc.site_auc_margin else SiteStatus.INFERIOR
    return SiteComparison(
        site=site,
        n=int(y.size),
        n_positive=n_pos,
        champion_auc=cmp.auc_b,
        challenger_auc=cmp.auc_a,
        difference=cmp.difference.estimate,
        ci_low=lower,
        ci_high=cmp.difference.upper,
        status=status,
    )


def _insufficient_site(
    site: str, y: IntArray, champion: FloatArray, challenger: FloatArray, acc: AcceptanceCriteria
) -> SiteComparison:
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    what = f"site {site!r}"
    a, b = auc_from_arrays(y, champion, what=what), auc_from_arrays(y, challenger, what=what)
    ci = undefined(
        f"AUC difference at {what}: {n_pos} positive and {n_neg} negative hold-out studies, below the plan's "
        f"minimum of {acc.min_site_positives} and {acc.min_site_negatives}"
    )
    return SiteComparison(site, int(y.size), n_pos, a, b, b - a, ci, ci, SiteStatus.INSUFFICIENT)


# --- criteria -----------------------------------------------------------------------------------


def _modification_criterion(plan: ChangePlan, det: Determination) -> CriterionResult:
    allowed = ", ".join(sorted(str(m) for m in plan.allowed)) or "nothing"
    verdict = "within plan" if det.within_plan else "significant change"
    return CriterionResult(
        name="modification within plan",
        passed=det.within_plan,
        value=verdict,
        bound=f"plan {plan.label} allows: {allowed}",
        detail="; ".join(det.reasons) or f"no modification found; plan {plan.label}",
        source=f"model-card comparison of champion and challenger against plan {plan.label} "
        f"(SHA-256 {plan.sha256[:12]}...)",
    )


def _site_criterion(s: SiteComparison, acc: AcceptanceCriteria) -> CriterionResult:
    name = f"site AUC non-inferior: {s.site}"
    source = f"paired DeLong on {_HOLDOUT}, {s.n} studies ({s.n_positive} positive) at {s.site}"
    bound = -acc.site_auc_margin
    if s.status is SiteStatus.INSUFFICIENT:
        fails = acc.insufficient_site is InsufficientSitePolicy.FAIL
        detail = (
            f"{s.site} has {s.n_positive} positive and {s.n - s.n_positive} negative hold-out studies, below the "
            f"plan's minimum of {acc.min_site_positives} and {acc.min_site_negatives}: it cannot be judged "
            f"({'the plan fails such a site' if fails else 'the plan skips such a site'})"
        )
        return CriterionResult(name, False if fails else None, s.ci_low, bound, detail, source)
    passed = s.status is SiteStatus.NON_INFERIOR
    detail = (
        f"challenger - champion AUC {s.difference:+.3f} ({_ci_text(acc, s.ci_low, s.ci_high)}) at {s.site}, "
        f"{s.n} studies ({s.n_positive} positive): lower bound {'above' if passed else 'not above'} {bound:g}"
    )
    return CriterionResult(name, passed, s.ci_low, bound, detail, source)


def _ci_text(acc: AcceptanceCriteria, low: float, high: float) -> str:
    return f"{acc.confidence:.0%} CI {low:+.3f} to {high:+.3f}"


def _overall_criterion(cmp: AucComparison, acc: AcceptanceCriteria, n: int, n_pos: int) -> CriterionResult:
    bound = -acc.overall_auc_margin
    lower = cmp.difference.lower
    passed = lower > bound  # NaN (a single class in the whole hold-out) cannot pass
    detail = (
        f"challenger AUC {cmp.auc_a:.3f} against champion {cmp.auc_b:.3f}, difference {cmp.difference.estimate:+.3f} "
        f"({_ci_text(acc, lower, cmp.difference.upper)}), {n} studies ({n_pos} positive): "
        f"lower bound {'above' if passed else 'not above'} {bound:g}"
    )
    source = f"paired DeLong on {_HOLDOUT}, {n} studies ({n_pos} positive), all sites"
    return CriterionResult("overall AUC non-inferior", passed, lower, bound, detail, source)


def _rate_criterion(
    data: _Holdout,
    scores: HoldoutScores,
    acc: AcceptanceCriteria,
    *,
    positives: bool,
) -> CriterionResult:
    """Paired non-inferiority of sensitivity (on the positives) or specificity (on the negatives).

    Each model is read at its own operating threshold; a study counts as caught when the model's
    call is right (score >= threshold for a positive, below it for a negative).
    """
    rate, cases = ("sensitivity", "positive") if positives else ("specificity", "negative")
    margin = acc.sensitivity_margin if positives else acc.specificity_margin
    chosen = data.y == (1 if positives else 0)
    n = int(chosen.sum())
    right_challenger = (data.challenger[chosen] >= scores.challenger_threshold) == positives
    right_champion = (data.champion[chosen] >= scores.champion_threshold) == positives
    diff = paired_proportion_difference(
        right_challenger.astype(np.int64), right_champion.astype(np.int64), confidence_level=acc.confidence
    )
    bound = -margin
    passed = diff.lower > bound - _TOLERANCE  # NaN cannot pass
    challenger_rate = float(np.mean(right_challenger)) if n else float("nan")
    champion_rate = float(np.mean(right_champion)) if n else float("nan")
    detail = (
        f"challenger {rate} {challenger_rate:.3f} at its threshold {scores.challenger_threshold:g} against "
        f"champion {champion_rate:.3f} at {scores.champion_threshold:g}: difference {diff.estimate:+.3f} "
        f"({_ci_text(acc, diff.lower, diff.upper)}), {n} {cases} studies: lower bound "
        f"{'above' if passed else 'not above'} {bound:+g}"
    )
    source = (
        f"each model's own operating threshold (score >= threshold is positive) on the {n} {cases} studies of "
        f"{_HOLDOUT}; Newcombe's paired interval of the difference"
    )
    return CriterionResult(f"{rate} at the operating point", passed, diff.lower, bound, detail, source)


def _ece_criterion(
    champion: ModelFigures, challenger: ModelFigures, acc: AcceptanceCriteria, n: int
) -> CriterionResult:
    passed = challenger.ece <= acc.max_ece + _TOLERANCE
    detail = (
        f"challenger ECE {challenger.ece:.3f} (champion {champion.ece:.3f}) over {acc.ece_bins} bins, "
        f"{n} studies: {'at most' if passed else 'above'} {acc.max_ece:g}"
    )
    source = f"expected calibration error, {acc.ece_bins} equal-width bins, challenger probabilities on {_HOLDOUT}"
    return CriterionResult("calibration (ECE)", passed, challenger.ece, acc.max_ece, detail, source)


def _explanation_criteria(acc: AcceptanceCriteria, verdict: str | None) -> tuple[CriterionResult, ...]:
    required = acc.require_explanation
    if not required:
        return ()
    if verdict is None:
        passed, detail = False, f"no explanation report for the challenger; the plan requires {required!r}"
    else:
        passed = EXPLANATION_VERDICTS.index(verdict) <= EXPLANATION_VERDICTS.index(required)
        detail = f"the challenger's explanation report says {verdict!r}; the plan requires {required!r} or better"
    source = "the challenger's Grad-CAM explanation report (pointing, deletion and randomization checks)"
    return (CriterionResult("explanation report", passed, verdict, required, detail, source),)


def _json_figure(value: float | str | None) -> JSONValue:
    if isinstance(value, float):
        return finite_or_none(value)
    return value
