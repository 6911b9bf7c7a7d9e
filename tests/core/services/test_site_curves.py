"""Per-site ROC bands, operating points and monthly AUC, read from a seeded pilot cohort."""

from __future__ import annotations

import numpy as np
import pytest

from core.services import site_curves, validation
from core.services.site_curves import SiteCurvesReport
from core.store.engine import SessionFactory
from tests.core.services.test_validation import pilot_sf, report  # noqa: F401  (module fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::core.errors.UndefinedMetricWarning")  # harbor is too small


@pytest.fixture(scope="module")
def curves(pilot_sf: SessionFactory) -> SiteCurvesReport:  # noqa: F811
    return site_curves.site_curves(pilot_sf, n_resamples=100, seed=3)


def test_sites_agree_with_the_pilot_drift_report(
    curves: SiteCurvesReport,
    report: validation.ValidationReport,  # noqa: F811
) -> None:
    # Assert: benchmark first, the same cases, the same operating point
    by_site = {s.site: s for s in (report.drift.benchmark, *report.drift.sites)}
    assert [c.site for c in curves.sites] == ["benchmark", "harbor", "northfield", "riverside"]
    assert curves.threshold == report.threshold
    for c in curves.sites:
        s = by_site[c.site]
        assert (c.n_positive + c.n_negative, c.n_positive) == (s.n_labelled, s.n_positive)
        assert sum(m.n_positive + m.n_negative for m in c.months) + c.n_undated == s.n_labelled
        if s.operating_point is not None:
            assert c.operating_tpr == pytest.approx(s.operating_point.sensitivity.estimate)
            assert c.operating_fpr == pytest.approx(1.0 - s.operating_point.specificity.estimate)


def test_the_software_update_shows_as_a_falling_monthly_auc(curves: SiteCurvesReport) -> None:
    # Assert: riverside's separation drops from 2.6 to 0.6 after the update of 12 May 2025
    riverside = next(c for c in curves.sites if c.site == "riverside")
    known = [m for m in riverside.months if m.auc is not None]
    assert known[0].month == "2025-03" and known[-1].month >= "2025-06"
    assert known[0].auc is not None and known[-1].auc is not None
    assert known[-1].auc.upper < known[0].auc.lower


def test_a_small_site_says_not_enough_data(curves: SiteCurvesReport) -> None:
    # Assert: harbor's 12 labelled cases make no monthly number
    harbor = next(c for c in curves.sites if c.site == "harbor")
    assert harbor.months and all(m.auc is None and m.reason.startswith("not enough data") for m in harbor.months)


def test_the_band_is_seeded(pilot_sf: SessionFactory, curves: SiteCurvesReport) -> None:  # noqa: F811
    # Execute
    again = site_curves.site_curves(pilot_sf, n_resamples=100, seed=3)

    # Assert
    for a, b in zip(curves.sites, again.sites, strict=True):
        np.testing.assert_array_equal(a.band.lower, b.band.lower)
