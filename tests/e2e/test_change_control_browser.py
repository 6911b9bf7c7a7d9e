"""The change-control loop in a real browser: confirmed drift, retrain, gate, signed promotion, predictions, rollback.

A private installation (10 SYNTHETIC studies per site, the bundled demonstration model, as the demo
runs) has its labels of record loaded, a hold-out locked and a drift incident confirmed by the
CMIO. Through the app, the demo ML engineer retrains the serving version from the proposal and runs
the gate (under a lenient plan set in ``vigil.toml``: a hold-out of a few studies per site cannot
show non-inferiority at the bundled plan's margins); the demo CMIO signs the promotion with their
password. New studies are then scored by the new version, and the CMIO rolls back. Every step must
be in the audit ledger in that order, and on the page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.sampledata import MANIFEST_NAME, generate_cohort
from core.services import holdout, ingestion, models, monitoring_incidents, outcomes, prediction, setup
from core.store import audit_log, incidents, model_versions, sites
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.e2e.test_audit_browser import _settled, _sign_in
from tests.factories import LENIENT_PLAN_TOML
from tests.ui.installation import DEMO_PASSWORDS, Installation, clock

BUNDLED = "cxr-nodule-1.0.0"
CHALLENGER = "cxr-nodule-1.1.0"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Installation]]:
    cohort = tmp_path / "cohort"
    generate_cohort(cohort, seed=3, studies_per_site=10)
    inst = Installation(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'vigil.db'}", cohort)
    setup.initialize(inst.settings, actor="system", now=clock)
    sf = inst.session_factory()
    outcomes.load_ground_truth(sf, inst.cohort_dir / MANIFEST_NAME, actor="t", now=clock)
    holdout.lock_holdout(sf, fraction=0.3, seed=0, actor="mlengineer", now=clock)
    with sf.begin() as session:
        site_id = sites.get_site(session, "riverside").id
        incident = incidents.add_incident(
            session,
            incidents.IncidentIn(site_id, "image", date(2026, 11, 20), None, "SYNTHETIC: detector update"),
            opened_by="system",
            now=clock(),
        )
    monitoring_incidents.acknowledge_incident(sf, incident.id, by="cmio", note="confirmed", now=clock)
    (tmp_path / "plan.toml").write_text(LENIENT_PLAN_TOML)
    config = tmp_path / "vigil.toml"
    config.write_text(f'[vigil]\nchange_control_plan = "{tmp_path / "plan.toml"}"\n')
    with serve(inst, tmp_path / "streamlit.log", config=config) as url:
        yield url, inst


def _deployment(page: Any, user: str) -> None:
    from playwright.sync_api import expect

    _sign_in(page, user)
    # Signing in keeps the address: Home the first time, the Deployment page after a sign-out there.
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("link", name="Deployment").click()
    expect(page.get_by_role("heading", name="Deployment", exact=True)).to_be_visible()


def _sign_out(page: Any) -> None:
    _settled(page)
    page.get_by_role("button", name="Sign out").click()


@pytest.mark.browser
def test_drift_to_retrain_to_gate_to_signed_promotion_to_rollback(served: tuple[str, Installation]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, inst = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            page.goto(url)

            # The ML engineer retrains from the proposal the confirmed incident made, then runs the gate.
            _deployment(page, "mlengineer")
            expect(page.get_by_text("was confirmed by cmio")).to_be_visible()
            page.get_by_role("textbox", name="Name of the challenger").fill(CHALLENGER)
            page.get_by_role("button", name="Retrain now").click()
            expect(page.get_by_text(f"Registered challenger #2 {CHALLENGER}")).to_be_visible()
            _settled(page)
            page.get_by_role("button", name="Run the gate").click()
            expect(page.get_by_text(f"of {CHALLENGER} against {BUNDLED} passed")).to_be_visible()
            _sign_out(page)

            # The CMIO signs the promotion with their password.
            _deployment(page, "cmio")
            _settled(page)
            page.get_by_label("Your password").fill(DEMO_PASSWORDS["cmio"])
            page.get_by_role("button", name="Sign and promote").click()
            expect(page.get_by_text(f"{CHALLENGER} now serves")).to_be_visible()

            # New studies are scored by the new version.
            arrivals = inst.home.parent / "arrivals"  # a new cohort seed: studies the store has not seen
            generate_cohort(arrivals, seed=9, studies_per_site=1)
            sf = inst.session_factory()
            ingestion.ingest_paths(
                sf,
                [arrivals / "dicom" / "riverside"],
                site="riverside",
                dicom_dir=inst.home / "dicom",
                actor="t",
                now=clock,
            )
            serving = models.load_serving(sf, models_dir=inst.home / "models")
            scored = prediction.predict_pending(sf, serving, site="riverside", batch_size=4, actor="t", now=clock)
            assert scored.model_version == CHALLENGER and scored.scored > 0

            # The CMIO rolls back; the page shows it at once.
            _settled(page)
            page.get_by_role("textbox", name="Why?").fill("browser test")  # the fleet is the first scope offered
            page.get_by_role("button", name="Roll back", exact=True).click()
            expect(page.get_by_text(f"Rolled back: {BUNDLED} serves every site again")).to_be_visible()
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "deployment-page.png"), full_page=True)
        finally:
            browser.close()

    with sf() as session:
        actions = [str(e.action) for e in audit_log.iter_entries(session)]
        serving_now = model_versions.serving(session)
    steps = ["model_trained", "model_registered", "holdout_used", "change_validated", "model_promoted"]
    positions = [len(actions) - 1 - actions[::-1].index(step) for step in steps]
    assert positions == sorted(positions), actions[-12:]
    promoted = positions[-1]
    assert "prediction_made" in actions[promoted:] and actions[-1] == "model_rolled_back"
    assert serving_now is not None and serving_now.version == BUNDLED
