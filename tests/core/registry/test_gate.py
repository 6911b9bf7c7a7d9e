"""The change-control gate on synthetic hold-outs: a genuine challenger passes, each degraded one is blocked by name.

Scores are Bayes posteriors of two Gaussian classes (separation ``mu``, prevalence 0.3), so they are
calibrated by construction and their AUC is about Phi(mu / sqrt 2): 0.86 for the champion's
``mu = 1.5``, 0.96 for a genuine challenger's 2.5. The challenger's noise is correlated with the
champion's, as two versions of one model would be.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pytest

from core.errors import BadInputError, EmptySampleError, UndefinedMetricWarning
from core.registry.gate import GateReport, HoldoutScores, SiteStatus, evaluate_gate
from core.registry.modification import Determination
from core.registry.plan import DEFAULT_PLAN_PATH, ChangePlan, InsufficientSitePolicy, read_plan

SITES = ("eastgate", "harbor", "northfield", "riverside")
PREVALENCE = 0.3
# For calibrated scores the posterior equals the prevalence where the likelihood ratio is 1.
THRESHOLD = 0.3
CHAMPION_MU = 1.5
GENUINE_MU = 2.5

WITHIN = Determination(True, ("the weights changed (SHA-256 aaa... -> bbb...): pre-authorised",))
OUTSIDE = Determination(False, ("the network changed (monai...ResNet -> monai...DenseNet121): outside plan",))


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p / (1.0 - p))
    return out


def _expit(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def _posterior(y: np.ndarray, mu: float, noise: np.ndarray) -> np.ndarray:
    x = mu * y + noise
    return _expit(mu * x - mu**2 / 2.0 + np.log(PREVALENCE / (1.0 - PREVALENCE)))


@dataclass(frozen=True)
class Cohort:
    rng: np.random.Generator
    y: np.ndarray
    sites: np.ndarray
    champion: np.ndarray
    challenger_noise: np.ndarray

    def genuine(self) -> np.ndarray:
        return _posterior(self.y, GENUINE_MU, self.challenger_noise)

    def holdout(self, challenger: np.ndarray, *, challenger_threshold: float = THRESHOLD) -> HoldoutScores:
        return HoldoutScores(
            y_true=self.y,
            sites=self.sites,
            champion=self.champion,
            challenger=challenger,
            champion_threshold=THRESHOLD,
            challenger_threshold=challenger_threshold,
        )


def _cohort(seed: int, *, per_site: int = 150) -> Cohort:
    rng = np.random.default_rng(seed)
    sites = np.repeat(np.array(SITES), per_site)
    y = (rng.random(sites.size) < PREVALENCE).astype(np.int64)
    e_champion = rng.normal(size=sites.size)
    e_challenger = 0.6 * e_champion + 0.8 * rng.normal(size=sites.size)
    return Cohort(rng, y, sites, _posterior(y, CHAMPION_MU, e_champion), e_challenger)


@pytest.fixture(scope="module")
def plan() -> ChangePlan:
    return read_plan(DEFAULT_PLAN_PATH)


def _gate(
    plan: ChangePlan,
    scores: HoldoutScores,
    *,
    verdict: str | None = "supported",
    determination: Determination = WITHIN,
) -> GateReport:
    return evaluate_gate(plan, scores, explanation_verdict=verdict, determination=determination)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_genuine_challenger_passes_at_every_site(plan: ChangePlan, seed: int) -> None:
    # Prepare
    cohort = _cohort(seed)

    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is undefined
        report = _gate(plan, cohort.holdout(cohort.genuine()))

    # Assert
    assert report.passed, report.failed
    assert report.failed == ()
    assert not report.significant_change
    assert [s.site for s in report.sites] == list(SITES)
    assert all(s.status is SiteStatus.NON_INFERIOR and s.difference > 0 for s in report.sites)
    assert report.challenger.auc > report.champion.auc
    assert {c.name for c in report.criteria} == {
        "modification within plan",
        *(f"site AUC non-inferior: {s}" for s in SITES),
        "overall AUC non-inferior",
        "sensitivity at the operating point",
        "specificity at the operating point",
        "calibration (ECE)",
        "explanation report",
    }
    assert all(c.passed is True for c in report.criteria)


def test_criteria_name_their_numbers_and_sources(plan: ChangePlan) -> None:
    cohort = _cohort(0)

    report = _gate(plan, cohort.holdout(cohort.genuine()))
    riverside = next(c for c in report.criteria if c.name == "site AUC non-inferior: riverside")
    site = next(s for s in report.sites if s.site == "riverside")

    assert riverside.value == site.ci_low
    assert riverside.bound == -0.05
    assert riverside.source == (
        f"paired DeLong on the locked hold-out, {site.n} studies ({site.n_positive} positive) at riverside"
    )
    assert f"{site.n} studies" in riverside.detail and "95% CI" in riverside.detail
    assert site.ci_low < site.difference < site.ci_high


def test_report_to_dict_is_strict_json(plan: ChangePlan) -> None:
    cohort = _cohort(0)
    report = _gate(plan, cohort.holdout(cohort.genuine()))

    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)

    assert json.loads(text)["passed"] is True
    assert d["plan"] == {"id": "cxr-nodule-pccp", "version": "1", "sha256": plan.sha256}
    assert isinstance(d["sites"], list) and len(d["sites"]) == 4


def test_a_label_noise_challenger_fails_every_auc_criterion(plan: ChangePlan) -> None:
    cohort = _cohort(0)
    uninformative = _posterior(np.zeros_like(cohort.y), 0.3, cohort.rng.normal(size=cohort.y.size))

    report = _gate(plan, cohort.holdout(uninformative))

    assert not report.passed
    assert "overall AUC non-inferior" in report.failed
    assert {f"site AUC non-inferior: {s}" for s in SITES} <= set(report.failed)
    assert all(s.status is SiteStatus.INFERIOR for s in report.sites)


def test_one_corrupted_site_fails_only_that_site(plan: ChangePlan) -> None:
    cohort = _cohort(0)
    challenger = cohort.genuine()
    riverside = cohort.sites == "riverside"
    challenger[riverside] = _posterior(cohort.y[riverside], 0.6, cohort.challenger_noise[riverside])

    report = _gate(plan, cohort.holdout(challenger))

    assert not report.passed
    assert report.failed == ("site AUC non-inferior: riverside",)
    assert [s.status for s in report.sites] == [SiteStatus.NON_INFERIOR] * 3 + [SiteStatus.INFERIOR]


def test_a_subgroup_scored_under_the_threshold_fails_sensitivity(plan: ChangePlan) -> None:
    # Prepare: a subgroup of positives (say, small nodules) pushed just under the operating point;
    # their ranking barely moves, so the AUC criteria alone would not catch it.
    cohort = _cohort(0)
    challenger = cohort.genuine()
    subgroup = (cohort.y == 1) & (cohort.rng.random(cohort.y.size) < 0.3)
    challenger[subgroup] = np.minimum(challenger[subgroup], THRESHOLD - 0.01)

    # Execute
    report = _gate(plan, cohort.holdout(challenger))

    # Assert
    assert report.failed == ("sensitivity at the operating point",)
    assert report.challenger.sensitivity < report.champion.sensitivity
    assert report.challenger.auc > report.champion.auc


def test_a_threshold_that_buys_sensitivity_with_false_positives_fails_specificity(plan: ChangePlan) -> None:
    # Prepare: the genuine challenger read at a threshold so low that nearly every study is called positive.
    cohort = _cohort(0)
    scores = replace(cohort.holdout(cohort.genuine()), challenger_threshold=0.02)

    # Execute
    report = _gate(plan, scores)

    # Assert: sensitivity holds, the AUCs hold, specificity is named
    assert report.failed == ("specificity at the operating point",)
    assert report.challenger.specificity < report.champion.specificity


def test_a_miscalibrated_challenger_with_equal_auc_fails_calibration(plan: ChangePlan) -> None:
    # Prepare: a monotone map of the champion's scores keeps every rank (so every AUC) and, with the
    # threshold mapped alike, every call; only the probabilities are wrong.
    cohort = _cohort(0)

    def overconfident(p: np.ndarray) -> np.ndarray:
        return _expit(3.0 * _logit(p) + 1.5)

    threshold = float(overconfident(np.array([THRESHOLD]))[0])

    # Execute
    report = _gate(plan, cohort.holdout(overconfident(cohort.champion), challenger_threshold=threshold))

    # Assert
    assert report.failed == ("calibration (ECE)",)
    assert report.challenger.auc == pytest.approx(report.champion.auc)
    assert report.challenger.ece > plan.acceptance.max_ece > report.champion.ece


@pytest.mark.parametrize("verdict", ["not supported", "unknown", None])
def test_an_unsupported_explanation_fails_the_gate(plan: ChangePlan, verdict: str | None) -> None:
    cohort = _cohort(0)

    report = _gate(plan, cohort.holdout(cohort.genuine()), verdict=verdict)

    assert report.failed == ("explanation report",)


def test_a_limited_explanation_passes_a_plan_requiring_limited_and_none_is_needed_when_not_required(
    plan: ChangePlan,
) -> None:
    cohort = _cohort(0)
    limited = replace(plan, acceptance=replace(plan.acceptance, require_explanation="limited"))
    unrequired = replace(plan, acceptance=replace(plan.acceptance, require_explanation=""))

    assert _gate(limited, cohort.holdout(cohort.genuine()), verdict="supported").passed
    assert _gate(limited, cohort.holdout(cohort.genuine()), verdict="limited").passed
    report = _gate(unrequired, cohort.holdout(cohort.genuine()), verdict=None)
    assert report.passed
    assert "explanation report" not in {c.name for c in report.criteria}


def test_a_change_outside_the_plan_fails_as_significant_but_reports_figures(plan: ChangePlan) -> None:
    cohort = _cohort(0)

    report = _gate(plan, cohort.holdout(cohort.genuine()), determination=OUTSIDE)

    assert not report.passed
    assert report.failed == ("modification within plan",)
    assert report.significant_change
    assert report.challenger.auc > 0.9
    assert all(s.status is SiteStatus.NON_INFERIOR for s in report.sites)
    criterion = report.criteria[0]
    assert criterion.value == "significant change"
    assert "outside plan" in criterion.detail


def _with_small_site(cohort: Cohort) -> HoldoutScores:
    # 30 studies with 3 positives: too few for the plan's minimum of 5.
    y_small = np.r_[np.ones(3, dtype=np.int64), np.zeros(27, dtype=np.int64)]
    noise = cohort.rng.normal(size=30)
    y = np.r_[cohort.y, y_small]
    return HoldoutScores(
        y_true=y,
        sites=np.r_[cohort.sites, np.full(30, "smallsite")],
        champion=np.r_[cohort.champion, _posterior(y_small, CHAMPION_MU, noise)],
        challenger=np.r_[cohort.genuine(), _posterior(y_small, GENUINE_MU, noise)],
        champion_threshold=THRESHOLD,
        challenger_threshold=THRESHOLD,
    )


def test_a_site_with_too_few_positives_fails_under_fail(plan: ChangePlan) -> None:
    scores = _with_small_site(_cohort(0))

    with pytest.warns(UndefinedMetricWarning, match="smallsite"):
        report = _gate(plan, scores)

    small = next(s for s in report.sites if s.site == "smallsite")
    assert small.status is SiteStatus.INSUFFICIENT
    assert small.n == 30 and small.n_positive == 3
    assert np.isnan(small.ci_low) and np.isnan(small.ci_high)
    assert np.isfinite(small.challenger_auc)
    assert report.failed == ("site AUC non-inferior: smallsite",)
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["sites"][-1]["ci_low"] is None


def test_a_site_with_too_few_positives_is_skipped_under_skip(plan: ChangePlan) -> None:
    skip = replace(plan, acceptance=replace(plan.acceptance, insufficient_site=InsufficientSitePolicy.SKIP))

    with pytest.warns(UndefinedMetricWarning):
        report = _gate(skip, _with_small_site(_cohort(0)))

    criterion = next(c for c in report.criteria if c.name == "site AUC non-inferior: smallsite")
    assert criterion.passed is None
    assert "skips" in criterion.detail
    assert report.passed
    assert report.failed == ()


def _scores(**changes: object) -> HoldoutScores:
    base: dict[str, object] = {
        "y_true": np.array([0, 1, 0, 1]),
        "sites": ("a", "a", "b", "b"),
        "champion": np.array([0.1, 0.8, 0.3, 0.6]),
        "challenger": np.array([0.2, 0.9, 0.1, 0.7]),
        "champion_threshold": 0.5,
        "challenger_threshold": 0.5,
    }
    base.update(changes)
    return HoldoutScores(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"sites": ("a", "a", "b")}, "sites 3"),
        ({"champion": np.full((4, 1), 0.5)}, "hold-out champion must be 1-d, got shape (4, 1)"),
        ({"challenger": np.array([0.2, 0.9, 0.1])}, "challenger 3"),
        ({"y_true": np.array([0, 2, 0, 1])}, "[2]"),
        ({"champion": np.array([0.1, np.nan, 0.3, 0.6])}, "non-finite"),
        ({"challenger": np.array([0.2, 1.5, 0.1, 0.7])}, "challenger scores: probabilities must lie in [0, 1]"),
        ({"challenger_threshold": 1.2}, "challenger_threshold must be a probability in [0, 1], got 1.2"),
        ({"champion_threshold": float("nan")}, "champion_threshold"),
        ({"champion_threshold": True}, "champion_threshold must be a number, got True"),
        ({"sites": ("a", "", "b", "b")}, "''"),
        ({"sites": ("a", None, "b", "b")}, "None"),
    ],
)
def test_bad_holdouts_are_refused_naming_the_value(plan: ChangePlan, changes: dict[str, object], named: str) -> None:
    with pytest.raises(BadInputError) as info:
        _gate(plan, _scores(**changes))

    assert named in str(info.value)


def test_an_empty_holdout_and_an_unknown_verdict_are_refused(plan: ChangePlan) -> None:
    empty = np.array([], dtype=np.float64)

    with pytest.raises(EmptySampleError):
        _gate(plan, _scores(y_true=np.array([], dtype=np.int64), sites=(), champion=empty, challenger=empty))
    with pytest.raises(BadInputError, match="'great'"):
        _gate(plan, _scores(), verdict="great")
