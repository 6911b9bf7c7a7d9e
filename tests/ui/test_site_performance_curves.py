"""The site-performance page shows each site's ROC band with its operating point, and AUC by month."""

from __future__ import annotations

import json
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from core.services.permissions import Role
from tests.ui.test_site_performance import _page, seeded, seeded_home  # noqa: F401  (module fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::core.errors.UndefinedMetricWarning")  # harbor is too small


def _figures(at: AppTest) -> list[dict[str, Any]]:
    """The plotly figures the page drew, as their JSON specs."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _titled(figures: list[dict[str, Any]], start: str) -> dict[str, Any]:
    return next(f for f in figures if str(f["layout"]["title"]["text"]).startswith(start))


@pytest.mark.usefixtures("seeded")
def test_roc_tab_draws_band_and_operating_point_per_site() -> None:
    # Execute
    at = _page(Role.CMIO).run()

    # Assert: one band, one curve and one operating point for each site with both classes
    assert not at.exception
    assert [t.label for t in at.tabs][1:3] == ["ROC", "AUC over time"]
    roc = _titled(_figures(at), "ROC by site")
    names = [t.get("name", "") for t in roc["data"]]
    for site in ("benchmark", "northfield", "riverside"):
        assert {f"{site} band", site, f"{site} operating point"} <= set(names)
    assert "pointwise 95% bootstrap band" in roc["layout"]["title"]["text"]


@pytest.mark.usefixtures("seeded")
def test_trend_tab_draws_monthly_auc_with_intervals_and_names_short_months() -> None:
    # Execute
    at = _page(Role.CMIO).run()

    # Assert: riverside's months carry interval bars; harbor's months say "not enough data", no number
    trend = _titled(_figures(at), "AUC by site and month")
    lines = {t["name"]: t for t in trend["data"] if t.get("mode") == "lines+markers"}
    assert lines["riverside"]["error_y"]["array"] and len(lines["riverside"]["x"]) >= 3
    assert not lines["harbor"].get("y")
    short = next(t for t in trend["data"] if t.get("name") == "harbor: not enough data")
    assert set(short["text"]) == {"not enough data"}
    table = next(d.value for d in at.dataframe if "Month" in d.value.columns)
    harbor = table[table["Site"] == "harbor"]["AUC [95% CI]"]
    riverside = table[table["Site"] == "riverside"]["AUC [95% CI]"]
    assert set(harbor) == {"not enough data"} and riverside.str.match(r"0\.\d{3} \[").any()
