"""The Audit page in a real browser: Chromium from the distribution, driven by Playwright.

A private copy of the test installation, with a signed checkpoint over its whole ledger, is served
by ``streamlit run app.py``. The demo auditor signs in, opens Audit, searches for study
ingestions, opens one and must see its chain verdict and its inclusion proof verified, then
clicks "Verify ledger" and must see that the ledger verifies. The demo radiologist who types the
page's address by hand must get no audit data. A screenshot is kept in
``test-artifacts/audit-page.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.audit.events import AuditAction
from core.services.audit_checkpoints import CheckpointPlaces, make_checkpoint
from core.store import audit_log
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.ui.installation import DEMO_PASSWORDS, Installation, clock, copy_installation, shared_template
from ui.audit import PAGE_SIZE


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """A private installation whose whole ledger is checkpointed, served on loopback.

    Yields the URL, the ledger's size (all checkpointed) and how many of its entries are study ingestions.
    """
    inst: Installation = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    made = make_checkpoint(inst.session_factory(), CheckpointPlaces.from_settings(inst.settings), now=clock)
    with inst.session_factory()() as session:
        ingested = sum(e.action == AuditAction.STUDY_INGESTED for e in audit_log.iter_entries(session))
    assert 0 < ingested <= PAGE_SIZE  # one page of results
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, made.signed.checkpoint.tree_size, ingested


def _settled(page: Any) -> None:
    """Wait until the app has finished its current run (a click during a run can be lost in its rerun)."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidgetRunningIcon")).to_have_count(0)


def _open_options(page: Any, label: str) -> Any:
    """Open the selectbox ``label`` and return its options.

    A selectbox without a preselected value opens on the arrow key rather than on a click, and a
    rerun that lands meanwhile redraws it closed: try again until the options show.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    options = page.get_by_role("option")
    for _ in range(5):
        page.get_by_role("combobox", name=label).press("ArrowDown")
        try:
            options.first.wait_for(state="visible", timeout=5_000)
            return options
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"the selectbox {label!r} does not open")


def _click_until_shown(page: Any, button: str, text: str, *, tries: int = 4) -> None:
    """Click ``button`` until ``text`` shows.

    A click that lands while a rerun redraws the page can be lost on a loaded machine (CI lost
    one); a user would click again, and so does this, a bounded number of times.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    shown = page.get_by_text(text)
    for _ in range(tries):
        _settled(page)
        page.get_by_role("button", name=button).click()
        try:
            shown.first.wait_for(state="visible", timeout=20_000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"clicking {button!r} {tries} times never showed {text!r}")


def _sign_in(page: Any, username: str) -> None:
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.browser
def test_an_auditor_searches_opens_an_entry_with_its_proof_and_verifies_the_ledger(
    served: tuple[str, int, int],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, size, ingested = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            # Sign in as the demo auditor and open Audit from the sidebar.
            page.goto(url)
            _sign_in(page, "auditor")
            expect(page.get_by_text("Welcome, auditor")).to_be_visible()
            page.get_by_role("link", name="Audit").click()
            expect(page.get_by_role("heading", name="Audit")).to_be_visible()

            # Search by action: study ingestions only.
            page.get_by_role("combobox", name="Action").click()
            page.get_by_role("option", name="study_ingested", exact=True).click()
            page.get_by_test_id("stForm").get_by_role("button", name="Search").click()
            expect(page.get_by_text(f"Entries 1–{ingested} of {ingested}, newest first.")).to_be_visible()

            # Open the newest ingestion: its address, its chain verdict and its verified proof.
            _settled(page)
            option = _open_options(page, "Open entry").first
            seq = int(re.match(r"#(\d+)", option.inner_text()).group(1))  # type: ignore[union-attr]
            option.click()
            expect(page.get_by_role("heading", name=f"Entry {seq}")).to_be_visible()
            expect(page).to_have_url(re.compile(rf"/audit\?seq={seq}$"))
            expect(page.get_by_text(f"Chain verifies: every entry from seq 0 through {seq}")).to_be_visible()
            expect(
                page.get_by_text(f"Proof verified: entry {seq} is included in signed checkpoint {size}")
            ).to_be_visible()

            # Verify the whole ledger.
            _click_until_shown(page, "Verify ledger", "The ledger verifies")
            # (signing in appended an entry after the checkpoint: it chains but is not yet covered)
            expect(page.get_by_text(f"checkpoints verify, covering {size} entries")).to_be_visible()
            expect(page.get_by_text("newest entries are not yet covered by a checkpoint")).to_be_visible()
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "audit-page.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.browser
def test_a_radiologist_typing_the_audit_address_gets_no_audit_data(served: tuple[str, int, int]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            page.goto(url)
            _sign_in(page, "radiologist")
            expect(page.get_by_text("Welcome, radiologist")).to_be_visible()

            # A typed address loads the app afresh: sign-in first, saying which page it leads to ...
            page.goto(f"{url}/audit?seq=0")
            expect(page.get_by_text("Sign in to open the Audit page.")).to_be_visible()
            # ... and signing in there as the radiologist gives the role the page needs, no entry.
            _sign_in(page, "radiologist")
            expect(page.get_by_text("The Audit page needs the")).to_be_visible()
            expect(page.get_by_role("link", name="Audit")).to_have_count(0)
            expect(page.get_by_role("heading", name="Audit")).to_have_count(0)
            expect(page.get_by_role("button", name="Verify ledger")).to_have_count(0)
            expect(page.get_by_text("Entry 0")).to_have_count(0)
        finally:
            browser.close()
