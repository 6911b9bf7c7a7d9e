"""The Outcomes page: EMR ingest runs, linkage per site, label backlog and delay, label sources, codes to map."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from streamlit.testing.v1 import AppTest

from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import write_outcomes
from core.services import fhir_ingest
from core.services.outcomes_overview import outcomes_overview
from core.services.permissions import Role
from tests.ui.installation import Installation

App = Callable[[Role | None], AppTest]
PAGE = "pages/outcomes.py"


def clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def with_outcomes(installation: Installation) -> Installation:
    """The installation with its cohort's SYNTHETIC EMR outcomes ingested (written beside the home)."""
    rows = read_manifest(installation.cohort_dir / MANIFEST_NAME)
    out = installation.home.parent / "emr"
    write_outcomes(out, rows, seed=3)
    sf = installation.session_factory()
    secret = fhir_ingest.site_secret(installation.settings)
    for path in sorted((out / "outcomes").rglob("*")):
        if path.suffix in (".json", ".ndjson"):
            fhir_ingest.ingest_payload(sf, path.read_bytes(), name=path.name, secret=secret, actor="t", now=clock)
    return installation


@pytest.mark.parametrize("role", [Role.CMIO, Role.CHAMPION, Role.ML_ENGINEER])
def test_a_permitted_role_sees_runs_linkage_backlog_and_sources(
    app: App, with_outcomes: Installation, role: Role
) -> None:
    # Prepare
    expected = outcomes_overview(with_outcomes.session_factory())

    # Execute
    at = app(role).switch_page(PAGE).run()

    # Assert
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Outcomes"]
    assert [s.value for s in at.subheader][:4] == [
        "Ingest runs",
        "Linkage per site",
        "Label backlog and delay",
        "Where the labels come from",
    ]
    runs, linkage, backlog = (at.dataframe[i].value for i in range(3))
    assert len(runs) == len(expected.runs) > 0
    assert list(linkage["site"]) == [s.site for s in expected.sites]
    assert list(linkage["with EMR evidence"]) == [s.n_linked_studies for s in expected.sites]
    assert list(backlog["waiting"]) == [s.n_waiting for s in expected.sites]
    assert sum(s.n_linked_studies for s in expected.sites) > 0


def test_the_page_is_absent_for_a_radiologist(app: App) -> None:
    # Execute
    at = app(Role.RADIOLOGIST)

    # Assert: not even registered in the navigation
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)


def test_an_empty_installation_says_how_to_ingest(app: App) -> None:
    # Execute
    at = app(Role.CMIO).switch_page(PAGE).run()

    # Assert
    assert not at.exception
    assert any("vigil fhir ingest" in i.value for i in at.info)
