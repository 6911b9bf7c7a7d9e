"""The CMIO's site-performance page and the figures and HTML report behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.errors import BadInputError
from core.metrics import DriftOptions
from core.services import site_curves, validation
from core.services.permissions import Role, SignedInUser
from core.services.site_curves import SiteCurvesReport
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from tests.core.services.test_validation import clock, seed_pilot_cohort
from ui import performance

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "site_performance.py")


def _database(directory: Path, *, seeded: bool) -> SessionFactory:
    engine = make_engine(f"sqlite:///{directory / 'vigil.db'}")
    migrate(engine)
    sf = make_session_factory(engine)
    if seeded:
        seed_pilot_cohort(sf)
    return sf


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("perf")
    _database(home, seeded=True)
    return home


@pytest.fixture(scope="module")
def report(seeded_home: Path) -> validation.ValidationReport:
    sf = make_session_factory(make_engine(f"sqlite:///{seeded_home / 'vigil.db'}"))
    return validation.validate(sf, options=DriftOptions(n_resamples=100), actor="t", now=clock, record=False)


@pytest.fixture(scope="module")
def curves(seeded_home: Path) -> SiteCurvesReport:
    sf = make_session_factory(make_engine(f"sqlite:///{seeded_home / 'vigil.db'}"))
    return site_curves.site_curves(sf, n_resamples=50, seed=0)


def _point_at(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VIGIL_HOME", str(home))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{home / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def seeded(seeded_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from _point_at(seeded_home, monkeypatch)


def _page(role: Role) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["vigil.user"] = SignedInUser(role.value, role)
    return at


@pytest.mark.usefixtures("seeded")
def test_cmio_sees_the_verdict_table_charts_and_download() -> None:
    # Execute
    at = _page(Role.CMIO).run()

    # Assert
    assert not at.exception
    assert any("riverside" in e.value for e in at.error)
    table = at.dataframe[0].value
    assert list(table["Site"]) == ["benchmark", "harbor", "northfield", "riverside"]
    assert dict(zip(table["Site"], table["Status"], strict=True))["harbor"] == "not enough data"
    assert len(at.tabs) == 7
    assert len(at.get("download_button")) == 1


@pytest.mark.usefixtures("seeded")
def test_settings_change_the_judgement() -> None:
    # Prepare
    at = _page(Role.CMIO).run()

    # Execute: a very lenient target
    at.number_input(key="perf.max_gap").set_value(0.2).run()

    # Assert
    assert not at.exception and not at.error and at.success


@pytest.mark.usefixtures("seeded")
def test_a_radiologist_is_refused_and_sees_no_data() -> None:
    # Execute
    at = _page(Role.RADIOLOGIST).run()

    # Assert
    assert not at.exception and at.error and not at.dataframe


def test_an_empty_store_explains_why_there_is_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    _database(tmp_path, seeded=False)
    gen = _point_at(tmp_path, monkeypatch)
    next(gen)

    # Execute
    at = _page(Role.CMIO).run()

    # Assert
    assert not at.exception and "No report yet" in at.info[0].value
    gen.close()


def test_html_report_is_self_contained(report: validation.ValidationReport) -> None:
    # Execute
    text = performance.report_html(report)

    # Assert: plotly.js inline exactly once, no external scripts, every site named
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    assert all(site in text for site in ("benchmark", "northfield", "riverside", "harbor"))
    assert "FAIL: riverside" in text


def test_figures_carry_the_report_numbers(report: validation.ValidationReport) -> None:
    # Execute
    forest = performance.forest_figure(report)
    heat = performance.strata_heatmap(report)

    # Assert
    plotted = {t.y[0]: t.x[0] for t in forest.data}
    by_site = {s.site: s for s in (report.drift.benchmark, *report.drift.sites)}
    assert set(plotted) == {"benchmark", "northfield", "riverside"}  # harbor: not enough data, annotated
    assert plotted["riverside"] == by_site["riverside"].auc.estimate  # type: ignore[union-attr]
    columns = list(heat.data[0].x)
    row = list(heat.data[0].y).index("riverside")
    before, after = (heat.data[0].z[row][columns.index(f"software: {v}")] for v in ("v4.3.1", "v5.1.0 UNIQUE2"))
    assert before < report.drift.max_gap < after


@pytest.mark.filterwarnings("ignore::core.errors.UndefinedMetricWarning")  # harbor is too small for a band
def test_html_report_has_the_roc_band_and_monthly_auc_with_their_sources(
    report: validation.ValidationReport, curves: SiteCurvesReport
) -> None:
    # Execute
    text = performance.report_html(report, curves)

    # Assert: both sections, their sources named, still one plotly.js, and every dated month in the table
    assert "ROC by site with the operating point" in text and "AUC by site and month" in text
    assert "core.metrics.roc_band" in text and "core.metrics.auc_trend" in text
    assert f"operating point at the card&#x27;s threshold {curves.threshold:g}" in text
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    riverside = next(c for c in curves.sites if c.site == "riverside")
    known = [m for m in riverside.months if m.auc is not None]
    assert known and all(f"<td>{m.month}</td>" in text for m in riverside.months)
    assert f"{known[0].auc.estimate:.3f} [" in text  # type: ignore[union-attr]


def test_html_report_says_why_the_curves_are_missing(report: validation.ValidationReport) -> None:
    # Execute
    text = performance.report_html(report, "no model version is serving")

    # Assert: the gap is stated, not silent
    assert "Not in this report: no model version is serving" in text
    assert "core.metrics.roc_band" not in text


def test_html_report_refuses_curves_of_another_model(
    report: validation.ValidationReport, curves: SiteCurvesReport
) -> None:
    # Prepare
    other = SiteCurvesReport("another-model", curves.threshold, curves.sites)

    # Execute / Assert
    with pytest.raises(BadInputError, match="another-model"):
        performance.report_html(report, other)
