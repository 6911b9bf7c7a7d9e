"""The Adjudication page, headless (AppTest): who reaches it, the queue, the evidence, recording a label."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.services import adjudication, review
from core.services.feedback import FeedbackForm, Finding, new_idempotency_key, record_feedback
from core.services.permissions import Role, SignedInUser
from core.store import outcomes, studies
from core.store.outcomes import OutcomeIn, OutcomeSource
from tests.adjudication_installation import build_labelled_site
from tests.ui.conftest import APP, USERS, count_elements, texts
from tests.ui.installation import Installation, copy_installation

App = Callable[[Role | None], AppTest]
PAGE = "pages/adjudication.py"
ELEMENT_BUDGET = 200  # as every page (tests/ui/test_pages_apptest.py)
RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
CHAMPION = SignedInUser("champion", Role.CHAMPION)


def _now() -> datetime:
    return datetime.now(UTC)


def _disagreement(inst: Installation) -> str:
    """A deployment-site study the reader called absent and the EMR confirms (the queue's top reason)."""
    sf = inst.session_factory()
    with sf() as session:
        uid = next(s.study_uid for s in studies.list_studies(session) if s.site_name != "benchmark")
    info = review.open_case(sf, RADIOLOGIST, uid)
    assert info.prediction is not None
    form = FeedbackForm(uid, info.prediction.prediction_id, False, Finding.ABSENT, 4, None, "", 20.0,
                        new_idempotency_key())  # fmt: skip
    record_feedback(sf, RADIOLOGIST, form, now=_now)
    with sf.begin() as session:
        sid = outcomes.study_ids_by_uid(session, [uid])[uid]
        ref = "DiagnosticReport/" + hashlib.sha256(uid.encode()).hexdigest()[:32]
        outcomes.add_outcome(
            session,
            OutcomeIn(sid, OutcomeSource.EMR, True, ref, "system", detail="histopathology:accession"),
            now=_now(),
        )
    return uid


def _adjudicated(inst: Installation) -> list[tuple[bool, str, str]]:
    with inst.session_factory()() as session:
        return [
            (r.label, r.detail, r.recorded_by)
            for r in outcomes.list_outcomes(session, source=OutcomeSource.ADJUDICATED)
        ]


def _open(app: App) -> AppTest:
    at = app(Role.CHAMPION)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_a_champion_adjudicates_the_top_disagreement(app: App, installation: Installation) -> None:
    # Prepare
    uid = _disagreement(installation)
    at = _open(app)
    assert [t.value for t in at.title] == ["Adjudication"]
    assert "1 study to adjudicate" in texts(at)
    assert {m.label: m.value for m in at.metric}["EMR +, reader −"] == "1"
    assert uid[-10:] in str(at.selectbox(key="adjudication-pick").value)
    shown = texts(at)
    assert "histopathology; linked by accession" in shown and "radiologist (radiologist)" in shown
    assert "vigil_dicom_viewer" in shown  # the case-review viewer, reused
    assert count_elements(at) <= ELEMENT_BUDGET

    # Execute
    next(r for r in at.radio if r.label == "Label").set_value("Finding present")
    next(t for t in at.text_area if t.label == "Reason (required)").input("EMR biopsy confirms; nodule visible RUL")
    next(b for b in at.button if b.label == "Record adjudication").click().run()

    # Assert: stored as the label of record; confirmation with the site's figures; the queue is empty
    assert not at.exception, at.exception
    assert _adjudicated(installation) == [(True, "EMR biopsy confirms; nodule visible RUL", "champion")]
    success = " ".join(s.value for s in at.success)
    with installation.session_factory()() as session:
        site = studies.get_study(session, uid).site_name
    n = adjudication.site_standing(installation.session_factory(), CHAMPION, site, now=_now).n_labelled
    assert "recorded: finding present is now the label of record" in success
    assert f"Site {site}: labelled {n} → {n}" in success  # the EMR had labelled it already
    assert "Nothing to adjudicate" in texts(at)


def test_a_label_without_reason_is_refused_and_writes_nothing(app: App, installation: Installation) -> None:
    _disagreement(installation)
    at = _open(app)
    next(r for r in at.radio if r.label == "Label").set_value("Finding absent")
    next(b for b in at.button if b.label == "Record adjudication").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    assert _adjudicated(installation) == []


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.CMIO])
def test_other_roles_do_not_reach_the_page(app: App, installation: Installation, role: Role) -> None:
    # Through the router: the page is not registered for them
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)

    # By running the page file itself (as a URL typed by hand would): refused, no data
    uid = _disagreement(installation)
    direct = AppTest.from_file(str(Path(APP).parent / PAGE), default_timeout=60)
    direct.session_state["vigil.user"] = SignedInUser(USERS[role], role)
    direct.run()
    assert [e.value for e in direct.error] == [f"Your role ({role.value}) does not give access to this page."]
    assert uid not in texts(direct)


@pytest.fixture(scope="module")
def labelled_site(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    return build_labelled_site(tmp_path_factory.mktemp("labelled-site"))


def test_the_labelling_plan_tab_labels_a_planned_study(
    labelled_site: Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a private copy of an installation whose riverside site needs labels
    inst = copy_installation(labelled_site, tmp_path)
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    plan = adjudication.labelling_plan(inst.session_factory(), CHAMPION)[0]
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["vigil.user"] = CHAMPION
        at.run()
        at.switch_page(PAGE).run()
        assert not at.exception, at.exception
        shown = texts(at)
        assert f"{plan.site}**: {plan.n_labelled} labelled of {plan.n_required} needed" in shown
        pick = at.selectbox(key="adjudication-plan-pick")
        assert pick.options == [f"{plan.site} · {uid}" for uid in plan.selected]

        # Execute: label the second planned study with the plan tab's form
        pick.set_value(pick.options[1]).run()
        form = at.tabs[1]
        next(r for r in form.radio if r.label == "Label").set_value("Finding absent")
        next(t for t in form.text_area if t.label == "Reason (required)").input("planned sample: lungs clear")
        next(b for b in form.button if b.label == "Record adjudication").click().run()

        # Assert
        assert not at.exception, at.exception
        assert _adjudicated(inst) == [(False, "planned sample: lungs clear", "champion")]
        with inst.session_factory()() as session:
            rows = outcomes.list_outcomes(session, source=OutcomeSource.ADJUDICATED)
        assert rows[0].study_uid == plan.selected[1]
        success = " ".join(s.value for s in at.success)
        assert f"labelled {plan.n_labelled} → {plan.n_labelled + 1}" in success
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_a_study_opened_from_its_case_is_adjudicated_even_when_not_queued(app: App, installation: Installation) -> None:
    # Prepare: a deployment-site study nobody disagrees about (not in the queue)
    sf = installation.session_factory()
    with sf() as session:
        uid = next(s.study_uid for s in studies.list_studies(session) if s.site_name != "benchmark")
    at = app(Role.CHAMPION)
    at.switch_page("pages/case_review.py")
    at.session_state["vigil.case.study"] = uid
    at.run()
    assert not at.exception, at.exception
    links = [el for el in at.get("page_link") if "Adjudicate this study" in str(el.proto)]
    assert len(links) == 1 and uid in str(links[0].proto)

    # Execute: the link's target, the Adjudication page with ?study=UID
    at.switch_page(PAGE)
    at.query_params["study"] = uid
    at.run()
    assert not at.exception, at.exception
    next(r for r in at.radio if r.label == "Label").set_value("Finding absent")
    next(t for t in at.text_area if t.label == "Reason (required)").input("second look: no nodule")
    next(b for b in at.button if b.label == "Record adjudication").click().run()

    # Assert
    assert not at.exception, at.exception
    assert _adjudicated(installation) == [(False, "second look: no nodule", "champion")]


def test_an_unknown_study_in_the_address_is_named_and_nothing_is_shown(app: App, installation: Installation) -> None:
    at = app(Role.CHAMPION)
    at.switch_page(PAGE)
    at.query_params["study"] = "1.2.826.0.1.424242"
    at.run()
    assert not at.exception, at.exception
    assert any("1.2.826.0.1.424242" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Record adjudication"]
