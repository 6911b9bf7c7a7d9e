"""The alerts benchmark: the Poisson interval, the summary over incidents, and one tiny end-to-end run."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from scipy.stats import chi2

from core.bench.alerts import (
    SEEDS,
    AlertMark,
    CohortAlerts,
    IncidentMark,
    SiteAlerts,
    poisson_interval,
    quantile,
    run,
    summarize,
)
from core.errors import BadInputError

D0 = date(2025, 4, 1)


def _d(day: int) -> date:
    return D0 + timedelta(days=day)


# --- Poisson interval ---------------------------------------------------------------------------


def test_zero_events_upper_is_3_689_over_t() -> None:
    lo, hi = poisson_interval(0, 2.0)
    assert lo == 0.0
    assert hi == pytest.approx(-math.log(0.025) / 2.0, rel=1e-9)
    assert hi * 2.0 == pytest.approx(3.689, abs=1e-3)


@pytest.mark.parametrize(
    ("k", "lower", "upper"),
    # Garwood's exact limits for the count (textbook table values, e.g. Ulm 1990).
    [(1, 0.0253, 5.5716), (5, 1.6235, 11.6683), (10, 4.7954, 18.3904)],
)
def test_exact_interval_matches_table(k: int, lower: float, upper: float) -> None:
    lo, hi = poisson_interval(k, 1.0)
    assert lo == pytest.approx(lower, abs=1e-4)
    assert hi == pytest.approx(upper, abs=1e-4)
    assert lo == pytest.approx(chi2.ppf(0.025, 2 * k) / 2)
    assert hi == pytest.approx(chi2.ppf(0.975, 2 * k + 2) / 2)


def test_interval_scales_with_exposure() -> None:
    lo1, hi1 = poisson_interval(8, 1.0)
    lo3, hi3 = poisson_interval(8, 3.3)
    assert (lo3, hi3) == pytest.approx((lo1 / 3.3, hi1 / 3.3))
    assert lo3 < 8 / 3.3 < hi3


@pytest.mark.parametrize(("k", "t", "level"), [(-1, 1.0, 0.95), (1, 0.0, 0.95), (1, math.inf, 0.95), (1, 1.0, 1.0)])
def test_bad_interval_inputs_are_refused(k: int, t: float, level: float) -> None:
    with pytest.raises(BadInputError):
        poisson_interval(k, t, level=level)


def test_quantile_keeps_misses_infinite_and_empty_undefined() -> None:
    assert quantile([1.0, 2.0, math.inf], 0.5) == 2.0
    assert quantile([1.0, math.inf, math.inf], 0.5) == math.inf
    assert math.isnan(quantile([], 0.5))


# --- summary ------------------------------------------------------------------------------------


def _incidents(alerts: list[AlertMark]) -> tuple[IncidentMark, ...]:
    """One incident per family here (what ``vigil drift`` would group these few alerts into)."""
    families = sorted({a.family for a in alerts})
    return tuple(
        IncidentMark(min(a.alarm_date for a in alerts if a.family == f), f, sum(a.family == f for a in alerts))
        for f in families
    )


def _cohort(seed: int, harbor: list[AlertMark], riverside: list[AlertMark]) -> CohortAlerts:
    return CohortAlerts(
        seed=seed,
        size="test",
        change_site="riverside",
        change_date=_d(40),
        sites=(
            SiteAlerts("harbor", 100, tuple(harbor), _incidents(harbor)),
            SiteAlerts("eastgate", 100, (), ()),
            SiteAlerts("riverside", 100, tuple(riverside), _incidents(riverside)),
        ),
        seconds=1.0,
    )


def test_summary_counts_incidents_site_years_and_delays() -> None:
    harbor = [AlertMark(_d(5), "mean_score", "score"), AlertMark(_d(6), "noise", "image")]
    cohorts = [
        _cohort(
            1,
            harbor + [AlertMark(_d(30), "noise", "image")],
            [
                AlertMark(_d(10), "noise", "image"),  # before the change: not a detection
                AlertMark(_d(40), "novelty:software_versions", "novelty"),
                AlertMark(_d(41), "intensity_mean", "image"),
                AlertMark(_d(45), "mean_score", "score"),
            ],
        ),
        _cohort(2, [], [AlertMark(_d(40), "novelty:software_versions", "novelty")]),
    ]
    s = summarize(cohorts)
    assert (s.cohorts, s.in_control_alerts, s.in_control_incidents) == (2, 3, 2)
    assert s.in_control_site_years == pytest.approx(400 / 365.25)
    assert s.rate == pytest.approx(2 / (400 / 365.25))
    assert s.rate_interval == pytest.approx(poisson_interval(2, 400 / 365.25))
    assert s.change_site_alerts_before_change == 1
    assert (s.found, s.found_with_novelty) == (1, 2)  # novelty alone does not count as found
    assert s.missed_fraction == 0.5
    assert s.delays["image"] == [1.0, math.inf]
    assert s.delays["score"] == [5.0, math.inf]
    assert s.delays["novelty"] == [0.0, 0.0]


# --- end to end ---------------------------------------------------------------------------------


def test_seeds_are_fixed_far_from_the_usual_ones_and_distinct() -> None:
    assert len(SEEDS) >= 20
    assert len(set(SEEDS)) == len(SEEDS)
    assert min(SEEDS) > 1_000_000


@pytest.mark.slow
def test_tiny_end_to_end_run_has_consistent_counts() -> None:
    results = run(standard=30, seeds=(7_000_003,), dense_seeds=(), workers=1)
    names = [r.name for r in results]
    assert len(names) == 5
    assert names[0].startswith("false-alarm incidents per in-control site-year")
    rate, upper = results[0], results[1]
    a = rate.absolutes
    assert a["cohorts"] == 1
    assert isinstance(a["in_control_incidents"], int) and isinstance(a["in_control_raw_alerts"], int)
    assert 0 <= a["in_control_incidents"] <= a["in_control_raw_alerts"]
    assert rate.guard_ok and upper.guard_ok
    ci, years = a["rate_95ci"], a["in_control_site_years"]
    assert isinstance(ci, list) and isinstance(years, float)
    if years > 0:
        lo, hi = ci
        assert isinstance(lo, float) and isinstance(hi, float)
        assert lo <= rate.ratio <= upper.ratio == pytest.approx(hi, abs=1e-4)
    detection = results[2].absolutes
    found, found_any, delays = detection["found"], detection["found_counting_novelty"], detection["delay_days"]
    assert isinstance(found, int) and isinstance(found_any, int) and isinstance(delays, dict)
    assert 0 <= found <= found_any <= 1
    assert set(delays) == {"score", "image", "label", "novelty"}
    for r in results:
        r.to_dict()  # JSON-ready
