"""Site performance read by a quality committee (issue 20): intervals, words, colours, columns.

Before: the forest plot's axis stopped at 1.0 and cut intervals reaching it, a site was painted red
on its point estimate while its interval spanned zero (eastgate: gap +0.26, CI −0.04 to +0.56) with
no words on what that means, and the table was wider than the page.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from core.metrics import GapStatus, Interval, SiteSummary
from core.services import validation
from core.services.permissions import Role
from tests.ui.test_site_performance import _page, report, seeded, seeded_home  # noqa: F401 - fixtures
from ui import performance
from ui.performance import Evidence


def _site(name: str, gap: tuple[float, float, float] | None, status: GapStatus = GapStatus.OUTSIDE) -> SiteSummary:
    iv = None if gap is None else Interval(*gap, confidence_level=0.95, method="delong")
    return SiteSummary(name, 120, 30, 90, status, "because", gap=iv)


@pytest.mark.parametrize(
    ("gap", "kind", "words"),
    [
        ((0.26, -0.04, 0.56), Evidence.NO_EVIDENCE, "the interval includes no difference, so this is not evidence"),
        ((0.20, 0.10, 0.30), Evidence.GAP, "the whole interval is above the target +0.03"),
        ((0.00, -0.02, 0.02), Evidence.WITHIN, "the whole interval is within the target +0.03"),
        ((0.05, 0.01, 0.09), Evidence.UNDECIDED, "excludes no difference but includes the target +0.03"),
    ],
)
def test_each_site_gets_a_sentence_on_what_its_interval_excludes(
    gap: tuple[float, float, float], kind: Evidence, words: str
) -> None:
    site = _site("eastgate", gap)
    assert performance.evidence(site, 0.03) is kind
    sentence = performance.site_sentence(site, 0.03)
    assert sentence.startswith(f"eastgate: gap {gap[0]:+.2f}".replace("-", "−")) and words in sentence


def test_the_eastgate_sentence_reads_as_the_committee_expects() -> None:
    sentence = performance.site_sentence(_site("eastgate", (0.26, -0.04, 0.56)), 0.03)
    assert sentence.startswith("eastgate: gap +0.26, 95% CI −0.04 to +0.56: the interval includes no difference")


def test_not_enough_data_and_the_benchmark_get_their_own_words() -> None:
    assert performance.evidence(_site("harbor", None, GapStatus.NOT_ENOUGH_DATA), 0.03) is Evidence.NOT_ENOUGH_DATA
    assert "not enough labelled cases" in performance.site_sentence(_site("harbor", None), 0.03)
    nan = (math.nan, math.nan, math.nan)
    assert performance.evidence(_site("x", nan), 0.03) is Evidence.NOT_ENOUGH_DATA
    assert performance.evidence(_site("benchmark", None, GapStatus.REFERENCE), 0.03) is Evidence.REFERENCE


def test_a_site_is_not_painted_as_a_gap_on_its_point_estimate(report: validation.ValidationReport) -> None:  # noqa: F811
    # Prepare: riverside outside the target on its estimate, its interval reaching below zero
    sites = tuple(
        replace(s, gap=Interval(0.26, -0.04, 0.56, 0.95, "delong")) if s.site == "riverside" else s
        for s in report.drift.sites
    )
    wide = replace(report, drift=replace(report.drift, sites=sites))

    # Execute
    fig = performance.forest_figure(wide)

    # Assert: grey (no evidence), never the vermillion of a shown gap
    colour = next(t.marker.color for t in fig.data if t.y[0] == "riverside")
    assert colour == "#999999"  # grey: the interval reaches zero


def test_the_forest_axis_covers_every_interval_end_including_one(report: validation.ValidationReport) -> None:  # noqa: F811
    # Prepare: the benchmark's interval reaches 1.0
    bench = report.drift.benchmark
    assert bench.auc is not None
    top = replace(report, drift=replace(report.drift, benchmark=replace(bench, auc=replace(bench.auc, upper=1.0))))

    # Execute
    low, high = performance.forest_figure(top).layout.xaxis.range

    # Assert
    ends = [v for s in (top.drift.benchmark, *top.drift.sites) if s.auc for v in (s.auc.lower, s.auc.upper)]
    assert low < min(ends) and high > max(ends) >= 1.0


@pytest.mark.usefixtures("seeded")
def test_every_column_is_reachable_and_the_default_set_is_narrow() -> None:
    # Prepare
    at = _page(Role.CMIO).run()
    picker = at.multiselect(key="perf.columns")
    assert list(at.dataframe[0].value.columns) == list(performance.DEFAULT_COLUMNS)

    # Execute: the reader adds every column
    picker.set_value(list(picker.options)).run()

    # Assert
    assert not at.exception
    assert "NPV" in at.dataframe[0].value.columns and "ECE" in at.dataframe[0].value.columns
    assert len(at.dataframe[0].value.columns) == len(picker.options)
    assert [m.value for m in at.markdown if m.value.startswith("- riverside: gap")]
