"""The triage worklist (issue 20): priority order, live studies apart, arrival and turnaround, paging.

Before: the list was oldest-first, mixed the retrospective benchmark studies in with live ones,
had no arrival time or turnaround, showed about 10 of its 25 rows inside an inner scroll, and
paging had no stable widgets to come back to after the case page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from core.services import worklist as worklist_service
from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, WorklistFilter, WorklistOrder
from core.store import model_versions, reviews, sites
from core.store.tables import InstanceRow
from tests.ui.conftest import USERS
from tests.ui.installation import Installation, clock
from ui.components import worklist
from ui.localtime import duration_text, local_text

App = Callable[[Role | None], AppTest]
RADIOLOGIST = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)


def _worklist(app: App) -> AppTest:
    at = app(Role.RADIOLOGIST)
    return at.switch_page("pages/worklist.py").run()


def _caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Page "))


def test_the_default_list_is_live_studies_model_positive_and_high_score_first(
    app: App, installation: Installation
) -> None:
    # Execute
    at = _worklist(app)

    # Assert: no benchmark study, and the model's calls in triage order
    assert not at.exception
    table = at.dataframe[0].value
    assert "benchmark" not in set(table["Site"])
    rows = worklist_service.worklist_page(installation.session_factory(), RADIOLOGIST, WorklistFilter()).items
    keys = [(0 if r.label else 1, -(r.score if r.score is not None else -2.0)) for r in rows]
    assert keys == sorted(keys)
    assert list(table["Accession"]) == [r.accession_number for r in rows]
    assert list(table.columns[:2]) == ["Model call", "Score"]


def test_the_benchmark_studies_are_a_separate_list(app: App, installation: Installation) -> None:
    # Prepare
    bench = WorklistFilter(cohort=Cohort.BENCHMARK)
    expected = worklist_service.worklist_page(installation.session_factory(), RADIOLOGIST, bench).total
    at = _worklist(app)

    # Execute
    at.button_group(key="wl-cohort").set_value(Cohort.BENCHMARK).run()

    # Assert
    assert not at.exception
    assert set(at.dataframe[0].value["Site"]) == {"benchmark"}
    assert expected > 0 and f"{expected} studies" in _caption(at)


def test_arrival_is_shown_in_the_configured_zone_with_the_turnaround(
    app: App, installation: Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: vigil.toml says Europe/Berlin; the store keeps UTC
    config = tmp_path / "vigil.toml"
    config.write_text('display_timezone = "Europe/Berlin"\n', encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))

    # Execute
    at = _worklist(app)

    # Assert
    assert not at.exception
    table = at.dataframe[0].value
    row = worklist_service.worklist_page(installation.session_factory(), RADIOLOGIST, WorklistFilter()).items[0]
    assert table["Arrived"][0] == local_text(row.arrived_at, ZoneInfo("Europe/Berlin"))
    assert table["Arrived"][0].endswith(("CET", "CEST"))
    assert all(t.startswith("waiting ") for t in table["Turnaround"])


def test_turnaround_reads_as_time_to_first_read() -> None:
    arrived = datetime(2025, 5, 14, 8, 0, tzinfo=UTC)
    row = reviews.WorklistRow(
        1, "1.2", "ACC", "riverside", None, "GE", "PA", 1, 0.9, True, 0.5, None, 1, False,
        arrived_at=arrived, first_read_at=arrived + timedelta(hours=2, minutes=5),
    )  # fmt: skip
    now = arrived + timedelta(days=3, hours=4)
    assert worklist.turnaround_text(row, now) == "read after 2 h 05 min"
    unread = reviews.WorklistRow(
        1, "1.2", "ACC", "riverside", None, "GE", "PA", 1, 0.9, True, 0.5, None, 0, False,
        arrived_at=arrived, first_read_at=None,
    )  # fmt: skip
    assert worklist.turnaround_text(unread, now) == "waiting 3 d 4 h"
    assert duration_text(timedelta(minutes=45)) == "45 min"


def test_a_full_page_of_25_rows_fits_without_an_inner_scroll() -> None:
    # Streamlit's automatic height shows about ten rows; the table asks for all of them.
    assert worklist.table_height(25) >= 26 * 35
    assert worklist.table_height(25) > worklist.table_height(10) + 15 * 34


def test_paging_works_after_going_back_from_a_case(app: App, installation: Installation) -> None:
    # Prepare: 30 more live studies, so two pages
    factory = installation.session_factory()
    with factory.begin() as session:
        mv = model_versions.serving(session)
        assert mv is not None
        site_ids = [s.id for s in sites.list_sites(session) if not s.is_benchmark]
        path = session.scalars(select(InstanceRow.path).limit(1)).one()
        reviews.insert_synthetic_worklist(
            session, n_studies=30, site_ids=site_ids, model_version_id=mv.id, image_path=path,
            threshold=0.5, seed=0, now=clock(),
        )  # fmt: skip
    at = _worklist(app)
    at.button(key="wl-next").click().run()
    assert _caption(at).startswith("Page 2 of 2")

    # Execute: open a case, go back with the Worklist button (W), page back (P) and on (N)
    next(b for b in at.button if b.label == "Open case").click().run()
    assert not at.exception
    next(b for b in at.button if b.label in ("Worklist", "Go to the worklist")).click().run()
    after_return = _caption(at)
    at.button(key="wl-prev").click().run()
    back = _caption(at)
    at.button(key="wl-next").click().run()

    # Assert
    assert not at.exception
    assert after_return.startswith("Page 2 of 2") and back.startswith("Page 1 of 2")
    assert _caption(at).startswith("Page 2 of 2")
    assert worklist_service.WorklistFilter().order is WorklistOrder.PRIORITY


def test_a_read_study_shows_its_turnaround_to_the_first_read(installation: Installation) -> None:
    # Prepare
    from tests.core.services.test_review import _read

    sf = installation.session_factory()
    everything = WorklistFilter(status=worklist_service.ReviewStatus.ANY)
    uid = worklist_service.worklist_page(sf, RADIOLOGIST, everything).items[0].study_uid

    # Execute
    _read(sf, uid)
    row = next(r for r in worklist_service.worklist_page(sf, RADIOLOGIST, everything).items if r.study_uid == uid)

    # Assert: an aware UTC time after arrival, and the words a reader sees
    assert row.first_read_at is not None and row.first_read_at.utcoffset() == timedelta(0)
    assert row.first_read_at >= row.arrived_at
    assert worklist.turnaround_text(row, datetime.now(UTC)).startswith("read after ")
