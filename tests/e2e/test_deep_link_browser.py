"""A case link survives sign-in in a real browser, and worklist paging keys survive the case page.

Chromium (the distribution's) through Playwright against ``streamlit run``: a colleague's link
``/case_review?study=UID`` opened signed out shows the sign-in form, and after signing in the
same address shows that study. Then, on a worklist of two pages, N / P page, O opens a case, W
goes back, and N / P still page (issue 20: after W they stopped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, WorklistFilter, worklist_page
from core.store import model_versions, reviews, sites
from core.store.tables import InstanceRow
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.ui.installation import DEMO_PASSWORDS, Installation, clock, copy_installation, shared_template

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, Installation]]:
    """A private installation with 38 live studies (two worklist pages), served on a free port."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    with inst.session_factory().begin() as session:
        mv = model_versions.serving(session)
        assert mv is not None
        live = [s.id for s in sites.list_sites(session) if not s.is_benchmark]
        path = session.scalars(select(InstanceRow.path).limit(1)).one()
        reviews.insert_synthetic_worklist(
            session, n_studies=30, site_ids=live, model_version_id=mv.id, image_path=path,
            threshold=0.5, seed=0, now=clock(),
        )  # fmt: skip
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, inst


@pytest.mark.browser
def test_a_case_link_survives_sign_in_and_paging_keys_survive_the_case_page(
    served: tuple[str, Installation],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, inst = served
    study = worklist_page(inst.session_factory(), RADIOLOGIST, WorklistFilter(cohort=Cohort.ANY)).items[-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            # A colleague's link, opened signed out: the sign-in form, saying where it leads.
            page.goto(f"{url}/case_review?study={study.study_uid}")
            expect(page.get_by_text("Sign in to open the Case review page.")).to_be_visible()
            assert study.accession_number not in page.content()
            page.get_by_role("textbox", name="Username").fill("radiologist")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS["radiologist"])
            page.get_by_role("button", name="Sign in").click()

            # The same address now shows that study.
            expect(page.get_by_text(study.accession_number).first).to_be_visible()
            assert f"study={study.study_uid}" in page.url and "/case_review" in page.url
            expect(page.get_by_text("Page not found")).to_have_count(0)

            # The worklist: N pages on, O opens a case, W comes back, P and N still page.
            page.get_by_role("link", name="Worklist").click()
            expect(page.get_by_text("Page 1 of 2 ·")).to_be_visible()
            for key, then in [
                ("n", page.get_by_text("Page 2 of 2 ·")),
                ("o", page.get_by_role("button", name="Worklist")),
                ("w", page.get_by_text("Page 2 of 2 ·")),
                ("p", page.get_by_text("Page 1 of 2 ·")),
                ("n", page.get_by_text("Page 2 of 2 ·")),
            ]:
                # A key pressed while the page's script still runs is not seen by the widgets it has
                # yet to draw (a reader sees the running indicator): press once the page is drawn.
                expect(page.get_by_test_id("stStatusWidgetRunningIcon")).to_have_count(0)
                page.keyboard.press(key)
                expect(then).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "worklist-page.png"), full_page=True)
        finally:
            browser.close()
