"""Adjudication in a real browser: Chromium from the distribution, driven by Playwright.

The installation (``tests.adjudication_installation``) has a deployment site with an AUC and a few
unlabelled later studies. On one of them two readers disagree and so do two pathology reports in
the EMR, so nothing settles it and it tops the queue. The browser signs in as
the demo champion, opens Adjudication, records "finding present" with a reason on the top item,
and must see the site's labelled count go up by one and its AUC change; the database must then hold
the adjudication and its audit entry, and the chain must verify.
A screenshot is kept in ``test-artifacts/adjudication-page.png``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.services import adjudication, review
from core.services.audit import verify_ledger
from core.services.feedback import FeedbackForm, Finding, new_idempotency_key, record_feedback
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, outcomes
from core.store.outcomes import OutcomeIn, OutcomeSource
from tests.adjudication_installation import SITE, build_labelled_site
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.ui.installation import DEMO_PASSWORDS, Installation

CHAMPION = SignedInUser("champion", Role.CHAMPION)
RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)


def _now() -> datetime:
    return datetime.now(UTC)


def _plant_disagreement(inst: Installation) -> str:
    """An unlabelled riverside study: two readers disagree, and so do two pathology reports."""
    sf = inst.session_factory()
    uid = adjudication.labelling_plan(sf, CHAMPION)[0].selected[0]
    info = review.open_case(sf, RADIOLOGIST, uid)
    assert info.prediction is not None
    for reader, finding in ((RADIOLOGIST, Finding.ABSENT), (CHAMPION, Finding.PRESENT)):
        form = FeedbackForm(uid, info.prediction.prediction_id, True, finding, 4, None, "", 30.0,
                            new_idempotency_key())  # fmt: skip
        record_feedback(sf, reader, form, now=_now)
    with sf.begin() as session:
        sid = outcomes.study_ids_by_uid(session, [uid])[uid]
        for n, label in enumerate((True, False)):
            ref = "DiagnosticReport/" + hashlib.sha256(f"{uid}/{n}".encode()).hexdigest()[:32]
            outcome = OutcomeIn(sid, OutcomeSource.EMR, label, ref, "system", detail="histopathology:study_uid")
            outcomes.add_outcome(session, outcome, now=_now())
    assert adjudication.adjudication_queue(sf, CHAMPION, now=_now)[0].study_uid == uid
    return uid


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Installation, str]]:
    """The installation with its planted disagreement, served by ``streamlit run app.py`` on loopback."""
    inst = build_labelled_site(tmp_path / "inst")
    uid = _plant_disagreement(inst)
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, inst, uid


@pytest.mark.browser
def test_a_champion_adjudicates_a_disagreement_and_sees_the_site_change(
    served: tuple[str, Installation, str],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, inst, uid = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            # Sign in as the demo champion and open Adjudication from the sidebar.
            page.goto(url)
            page.get_by_role("textbox", name="Username").fill("champion")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS["champion"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Welcome, champion")).to_be_visible()
            page.get_by_role("link", name="Adjudication").click()
            expect(page.get_by_role("heading", name="Adjudication")).to_be_visible()

            # The top of the queue is the planted disagreement, chosen already; its image is shown.
            pick = page.get_by_role("combobox", name="Study to adjudicate")
            expect(pick).to_be_visible()
            assert f"#1 · P1 · {SITE} · …{uid[-10:]}" in pick.aria_snapshot()
            expect(page.frame_locator("iframe[src*=vigil_dicom_viewer]").locator("body")).to_have_attribute(
                "data-state", "ready"
            )

            # Record "finding present" with a reason.
            form = page.get_by_test_id("stForm").first  # the Queue tab's (the plan tab has its own)
            form.get_by_text("Finding present", exact=True).click()
            form.get_by_role("textbox").fill("Pathology addendum confirms adenocarcinoma; nodule visible on the image.")
            form.get_by_role("button", name="Record adjudication").click()

            # The confirmation names the site's labelled count and AUC before and after.
            done = page.get_by_text("label of record of")
            expect(done).to_be_visible()
            text = done.inner_text()
            found = re.search(
                rf"Site {SITE}: labelled (\d+) → (\d+), AUC ([0-9.]+) → ([0-9.]+)", text.replace("\n", " ")
            )
            assert found is not None, text
            n_before, n_after, auc_before, auc_after = found.groups()
            assert int(n_after) == int(n_before) + 1 and auc_after != auc_before
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "adjudication-page.png"))
        finally:
            browser.close()

    _assert_adjudication_stored(inst, uid)


def _assert_adjudication_stored(inst: Installation, uid: str) -> None:
    sf = inst.session_factory()
    with sf() as session:
        rows = outcomes.list_outcomes(session, source=OutcomeSource.ADJUDICATED)
        entries = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.ADJUDICATION_RECORDED]
    assert [(r.study_uid, r.label, r.recorded_by) for r in rows] == [(uid, True, "champion")]
    assert rows[0].detail.startswith("Pathology addendum confirms")
    assert [(e.actor, e.subject, e.payload["outcome_id"]) for e in entries] == [("champion", uid, rows[0].id)]
    assert verify_ledger(sf).ok
    assert uid not in {i.study_uid for i in adjudication.adjudication_queue(sf, CHAMPION, now=_now)}
