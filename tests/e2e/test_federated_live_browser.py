"""The Federated page follows a running run without a click, in Chromium (distribution build, Playwright).

A launch row whose launcher process is alive (this test's own process) stands for a run in
progress; the test then writes the launcher's progress into the store as ``vigil fl run`` does
(``federated_live.note_progress``) and ends the launch. The page, left alone, must show each
step within a few refresh periods, and keep what the engineer has typed in the launch form. A
second run then starts elsewhere (as from the command line) and shows without a click too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.services import federated, federated_live
from core.store import federated_runs
from core.store.engine import SessionFactory
from core.store.federated_runs import FlLaunchRecord
from tests.e2e.streamlit_server import CHROMIUM, CHROMIUM_ARGS, serve
from tests.e2e.test_audit_browser import _sign_in
from tests.ui.installation import Installation, clock, copy_installation, shared_template
from ui.federated import IDLE_REFRESH_S, REFRESH_S

RUN = "fl-20270104T100000-0a1b2c"
SECOND = "fl-20270104T110000-3d4e5f"
SITES = ("northfield", "riverside")
T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, Installation]]:
    """A private installation whose two sites have keys, with a launch running as this process."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    sf = inst.session_factory()
    for site in SITES:
        federated.register_site_key(sf, site, keys_dir=inst.home / "fl-keys", actor="t", now=clock)
    _launch(sf, RUN)
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, inst


def _launch(sf: SessionFactory, run_key: str) -> None:
    """A launch row whose launcher is alive (this test's process), as ``vigil fl run`` writes it."""
    request = {"sites": list(SITES), "rounds": 2, "strategy": "fedavg", "dp": None}
    with sf.begin() as session:
        federated_runs.add_launch(
            session, FlLaunchRecord(run_key, os.getpid(), "mlengineer", "running", "", request, (), T0, T0)
        )


@pytest.mark.browser
def test_the_page_shows_a_running_runs_rounds_and_its_end_without_a_click(served: tuple[str, Installation]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, inst = served
    sf = inst.session_factory()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(f"{url}/federated")
            _sign_in(page, "mlengineer")
            expect(page.get_by_text("round 0 of 2 logged")).to_be_visible()
            page.get_by_role("textbox", name="Register the aggregate as (optional)").fill("typed-by-the-engineer")

            # Execute: the launcher logs a round, then ends
            federated_live.note_progress(
                sf, RUN, [{"event": "round", "round": 1, "at": T0.isoformat(), "updates": []}], expected={}, now=T0
            )
            # Assert: shown within a few refresh periods, with no click
            expect(page.get_by_text("round 1 of 2 logged")).to_be_visible(timeout=4 * REFRESH_S * 1000)
            federated_live.end_launch(sf, RUN, reason="stopped by the test", now=lambda: T0)
            expect(page.get_by_text(f"Run {RUN} is running")).to_have_count(0, timeout=4 * REFRESH_S * 1000)

            # Assert: the run is listed as ended with its reason; what the engineer typed is kept
            expect(page.get_by_text("stopped by the test").first).to_be_attached()  # a cell of the runs table
            typed = page.get_by_role("textbox", name="Register the aggregate as (optional)")
            # While the page reruns whole after the run ends, Streamlit shows the form's old input (stale)
            # beside its new one; wait for the rerun to settle before reading the value kept.
            expect(typed).to_have_count(1)
            expect(typed).to_have_value("typed-by-the-engineer")

            # Execute / Assert: a run launched elsewhere while none runs shows at the idle pace
            _launch(sf, SECOND)
            # The run's status line; the launch form may also say the run is running, once the page reruns whole.
            status = page.get_by_test_id("stAlertContentInfo").get_by_text(f"Run {SECOND} is running")
            expect(status).to_be_visible(timeout=3 * IDLE_REFRESH_S * 1000)
        finally:
            browser.close()
