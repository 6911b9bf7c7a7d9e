"""The review flow in a real browser: Chromium from the distribution, driven by Playwright.

``streamlit run app.py`` serves a fresh installation on a free loopback port; the browser signs in
as the demo radiologist, opens a study in the image viewer, steps J / K and submits feedback.
The database must then hold the feedback row and its audit entry, and the chain must verify.
A screenshot of the review page is kept in ``test-artifacts/review-page.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.audit.events import AuditAction
from core.services.audit import verify_ledger
from core.store.tables import AuditEntryRow, FeedbackRow, StudyRow, UserRow
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.ui.installation import DEMO_PASSWORDS, Installation, copy_installation, shared_template


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, Installation]]:
    """A private installation served by ``streamlit run app.py`` on a free loopback port."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, inst


@pytest.mark.browser
def test_sign_in_review_a_study_and_leave_feedback(served: tuple[str, Installation]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, inst = served
    accession = _accessions(inst)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            # An anonymous first request for a page's URL shows no study data.
            page.goto(f"{url}/worklist")
            expect(page.get_by_text("Please sign in").or_(page.get_by_role("button", name="Sign in"))).to_be_visible()
            assert not any(a in page.content() for a in accession)

            # Sign in as the demo radiologist.
            page.goto(url)
            page.get_by_role("textbox", name="Username").fill("radiologist")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS["radiologist"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Welcome, radiologist")).to_be_visible()

            # Open the first study of the worklist; J and K step to the next study and back.
            page.get_by_role("button", name="Open the worklist").click()
            page.get_by_role("button", name="Open case").click()
            expect(page.frame_locator("iframe[src*=vigil_dicom_viewer]").locator("body")).to_have_attribute(
                "data-state", "ready"
            )
            first = page.get_by_role("heading", level=3).first.inner_text()
            page.keyboard.press("j")
            expect(page.get_by_role("heading", level=3).first).not_to_have_text(first)
            page.keyboard.press("k")
            expect(page.get_by_role("heading", level=3).first).to_have_text(first)
            expect(page.frame_locator("iframe[src*=vigil_dicom_viewer]").locator("body")).to_have_attribute(
                "data-state", "ready"
            )

            # Record a read; "j" and "k" in the comment must not step to another study.
            form = page.get_by_test_id("stForm")
            # Under load a rerun can briefly leave the previous case's form beside the new one.
            expect(form.get_by_text("Agree", exact=True)).to_have_count(1)
            answers = ("Agree", "Absent", "4", "Partly")
            for _ in range(3):  # a rerun the viewer triggers while loading can redraw the form once
                for label in answers:
                    form.get_by_text(label, exact=True).click()
                page.wait_for_timeout(500)
                if all(form.get_by_role("radio", name=label, exact=True).is_checked() for label in answers):
                    break
            form.get_by_role("textbox").fill("Lungs clear; overlay on the clavicles. jk")
            form.get_by_role("button", name="Save feedback").click()
            expect(page.get_by_text("Feedback saved as #")).to_be_visible()
            expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
            page.wait_for_timeout(1000)  # let the history table's canvas paint before the screenshot
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "review-page.png"))
        finally:
            browser.close()

    _assert_feedback_and_audit_stored(inst)


def _accessions(inst: Installation) -> list[str]:
    engine = create_engine(inst.database_url)
    with engine.connect() as conn:
        values = list(conn.execute(select(StudyRow.accession_number)).scalars())
    engine.dispose()
    return [v for v in values if v]


def _assert_feedback_and_audit_stored(inst: Installation) -> None:
    engine = create_engine(inst.database_url)
    with Session(engine) as session:
        rows = session.execute(
            select(FeedbackRow, UserRow.username).join(UserRow, FeedbackRow.user_id == UserRow.id)
        ).all()
        entries = session.scalars(
            select(AuditEntryRow).where(AuditEntryRow.action == AuditAction.FEEDBACK_RECORDED.value)
        ).all()
    engine.dispose()
    assert len(rows) == 1
    feedback, username = rows[0]
    assert (username, feedback.agrees, feedback.finding, feedback.confidence) == ("radiologist", True, "absent", 4)
    assert feedback.explanation_rating == "partly" and feedback.comment.endswith("jk")
    assert feedback.time_on_case_ms > 0
    assert len(entries) == 1 and entries[0].actor == "radiologist"
    assert f'"feedback_id":{feedback.id}' in entries[0].payload_json
    assert verify_ledger(inst.session_factory()).ok
