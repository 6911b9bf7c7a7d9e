"""Every page for every role, headless (AppTest): routing, refusals, the review flow and its budgets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update
from streamlit.testing.v1 import AppTest

import core.services.explanation as explanation_service
import core.services.review as review_service
from core.audit.events import AuditAction
from core.explain.result import ExplainMethod
from core.services.audit import verify_ledger
from core.services.permissions import Permission, Role, SignedInUser, can
from core.services.worklist import ReviewStatus, ScoreBand, WorklistFilter, worklist_page
from core.store.tables import AuditEntryRow, InstanceRow, StudyRow
from tests.ui.conftest import APP, USERS, count_elements, texts, viewer_args_sent
from tests.ui.installation import DEMO_PASSWORDS, Installation
from tests.ui.test_deep_links import open_url
from ui.navigation import PAGES, refusal_text

App = Callable[[Role | None], AppTest]
REPO = Path(APP).parent
PAGE_FILES = sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py"))
ELEMENT_BUDGET = 200


def _study_strings(inst: Installation) -> list[str]:
    engine = create_engine(inst.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(StudyRow.study_uid, StudyRow.accession_number)).all()
    engine.dispose()
    return [value for row in rows for value in row if value]


def _button(at: AppTest, label: str) -> object:
    return next(b for b in at.button if b.label == label)


def _open_first_case(app: App, role: Role = Role.RADIOLOGIST) -> AppTest:
    at = app(role)
    at.switch_page("pages/worklist.py").run()
    _button(at, "Open case").click().run()  # type: ignore[attr-defined]
    # AppTest keeps requesting the page last passed to switch_page(); follow the app's own switch.
    at.switch_page("pages/case_review.py").run()
    assert not at.exception
    return at


def _open_second_case(app: App) -> AppTest:
    """The worklist's second case: the first is the benchmark site's only labelled negative, which
    GradientShap draws as its own baseline, so its GradientShap map is flat (nothing to show)."""
    at = _open_first_case(app)
    _button(at, "Next").click().run()  # type: ignore[attr-defined]
    assert not at.exception
    return at


def _feedback_rows(inst: Installation) -> list[tuple[int, int | None, str, bool]]:
    engine = create_engine(inst.database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT f.id, f.supersedes_id, u.username, f.agrees FROM clinician_feedback f "
                "JOIN app_user u ON u.id = f.user_id ORDER BY f.id"
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _fill_feedback(at: AppTest, *, agree: str = "Agree") -> None:
    radios = {r.label: r for r in at.radio}
    radios["Do you agree with the model's call?"].set_value(agree)
    radios["Nodule (your own finding)"].set_value("Absent")
    radios["Confidence (1 = guess, 5 = certain)"].set_value(4)
    radios["Was the explanation (heat map) helpful?"].set_value("Partly")
    at.text_area[0].input("lungs clear")


# --- anonymous sessions ---------------------------------------------------------------------------


def test_anonymous_session_sees_the_sign_in_form_and_no_study_data(app: App, installation: Installation) -> None:
    # Execute
    at = app(None)

    # Assert
    assert not at.exception
    assert [t.value for t in at.title] == ["Vigil"]
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    shown = texts(at)
    assert not any(s in shown for s in _study_strings(installation))
    for spec in PAGES:
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(spec.path)


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_run_without_the_router_refuses_an_anonymous_session(page: str, installation: Installation) -> None:
    # Execute: the page script itself, bypassing app.py's navigation
    at = AppTest.from_file(str(REPO / page), default_timeout=60).run()

    # Assert
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please sign in to use Vigil."]
    assert not any(s in texts(at) for s in _study_strings(installation))


def test_sign_in_with_the_form_then_sign_out(app: App) -> None:
    # Prepare
    at = app(None)

    # Execute
    at.text_input[0].input("radiologist")
    at.text_input[1].input(DEMO_PASSWORDS["radiologist"])
    at.button[0].click().run()
    signed_in = [m.value for m in at.markdown]
    _button(at, "Sign out").click().run()  # type: ignore[attr-defined]

    # Assert
    assert any("Welcome, **radiologist**" in m for m in signed_in)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


@pytest.mark.parametrize("username", ["radiologist", "no-such-user"])
def test_failed_sign_in_says_the_same_thing_and_is_audited(app: App, installation: Installation, username: str) -> None:
    # Prepare
    at = app(None)

    # Execute
    at.text_input[0].input(username)
    at.text_input[1].input("wrong password!")
    at.button[0].click().run()

    # Assert
    assert [e.value for e in at.error] == ["Sign-in failed: unknown username or wrong password."]
    engine = create_engine(installation.database_url)
    with engine.connect() as conn:
        last = conn.execute(select(AuditEntryRow).order_by(AuditEntryRow.seq.desc()).limit(1)).one()
    engine.dispose()
    assert (last.action, last.actor, last.subject) == (AuditAction.LOGIN_FAILED.value, "anonymous", username)
    assert "exists" not in last.payload_json


def test_idle_session_is_signed_out(app: App) -> None:
    # Prepare
    at = app(Role.RADIOLOGIST)

    # Execute
    at.session_state["vigil.last_seen"] = -1e9
    at.run()

    # Assert
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert any("30 minutes" in i.value for i in at.info)


# --- every page, every role -----------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_its_pages_within_the_element_budget(app: App, role: Role) -> None:
    # Prepare
    at = app(role)
    user = SignedInUser(USERS[role], role)

    for spec in PAGES:
        allowed = spec.permission is None or can(user, spec.permission)
        if not allowed:
            # Assert: a page the role may not use is only a hidden refusal naming the role it needs
            open_url(at, spec.url_path)
            assert [e.value for e in at.error] == [refusal_text(spec, user)], (role, spec.path)
            continue
        # Execute
        at.switch_page(spec.path).run()

        # Assert
        assert not at.exception, (role, spec.path, at.exception)
        assert count_elements(at) <= ELEMENT_BUDGET, (role, spec.path, count_elements(at))


def test_roles_without_study_access_see_no_study_data_on_any_page(app: App, installation: Installation) -> None:
    studies = _study_strings(installation)
    engine = create_engine(installation.database_url)
    with engine.connect() as conn:
        uids = set(conn.execute(select(StudyRow.study_uid)).scalars())
    engine.dispose()
    for role in (Role.CMIO, Role.ML_ENGINEER, Role.ADMIN, Role.AUDITOR):
        at = app(role)
        for spec in PAGES:
            if spec.permission is None or can(SignedInUser(USERS[role], role), spec.permission):
                at.switch_page(spec.path).run()
                # The audit log names each entry's subject, a StudyInstanceUID among them (it is searched
                # by study); nothing else of a study (accession number, images, metadata) may show there.
                hidden = (
                    [s for s in studies if s not in uids] if spec.permission is Permission.VIEW_AUDIT_LOG else studies
                )
                assert not any(s in texts(at) for s in hidden), (role, spec.path)


def test_home_page_states_that_the_model_is_a_synthetic_demonstration(app: App) -> None:
    at = app(Role.RADIOLOGIST)
    assert any("trained on synthetic chest radiograph phantoms" in w.value for w in at.warning)


# --- worklist -------------------------------------------------------------------------------------


def test_worklist_filters_by_score_band_and_review_status(app: App) -> None:
    # Prepare
    at = app(Role.RADIOLOGIST)
    at.switch_page("pages/worklist.py").run()
    everything = next(c.value for c in at.caption if c.value.startswith("Page "))

    # Execute
    at.selectbox(key="wl-band").set_value(ScoreBand.UNSCORED).run()
    unscored = [i.value for i in at.info]
    at.selectbox(key="wl-band").set_value(ScoreBand.ANY).run()
    at.selectbox(key="wl-status").set_value(ReviewStatus.REVIEWED_BY_ME).run()
    reviewed = [i.value for i in at.info]

    # Assert
    assert "8 studies" in everything  # the live studies; the 2 benchmark studies are a separate list
    assert unscored == ["No studies match these filters."]
    assert reviewed == ["No studies match these filters."]


def test_worklist_pages_in_sql(app: App, installation: Installation) -> None:
    # Prepare: 30 more live (SYNTHETIC) studies, so 38 live in all: two pages of 25
    from core.store import model_versions, reviews, sites
    from tests.ui.installation import clock

    factory = installation.session_factory()
    with factory.begin() as session:
        mv = model_versions.serving(session)
        site_ids = [s.id for s in sites.list_sites(session) if not s.is_benchmark]
        path = session.scalars(select(InstanceRow.path).limit(1)).one()
        assert mv is not None
        reviews.insert_synthetic_worklist(
            session, n_studies=30, site_ids=site_ids, model_version_id=mv.id, image_path=path,
            threshold=0.5, seed=0, now=clock(),
        )  # fmt: skip
    at = app(Role.RADIOLOGIST)
    at.switch_page("pages/worklist.py").run()

    # Execute
    first = next(c.value for c in at.caption if c.value.startswith("Page "))
    _button(at, "Next page").click().run()  # type: ignore[attr-defined]
    second = next(c.value for c in at.caption if c.value.startswith("Page "))

    # Assert
    assert first.startswith("Page 1 of 2 · 38 studies")
    assert second.startswith("Page 2 of 2 · 38 studies")
    assert _button(at, "Next page").disabled  # type: ignore[attr-defined]


# --- case review ----------------------------------------------------------------------------------


def test_case_page_shows_image_overlay_card_and_metadata_but_never_the_lesion_mask(app: App) -> None:
    # Execute
    at = _open_first_case(app)

    # Assert
    uid = at.session_state["vigil.case.study"]
    args = viewer_args_sent(at)
    assert args["study_uid"] == uid and args["overlay"] is True and args["map_label"] == "Grad-CAM map"
    assert any("operating threshold" in m.value for m in at.markdown)
    assert any("synthetic chest radiograph phantoms" in m.value for m in at.markdown)
    # the phantoms' PixelSpacing equals ImagerPixelSpacing: lengths at the detector, said in words
    shown = texts(at).replace("\\", "")  # the header table escapes Markdown's characters
    assert re.search(r"\| Matrix \| \d+ × \d+ px \|", shown)
    assert re.search(r"\| Pixel spacing \| [\d.]+ × [\d.]+ mm at detector, from PixelSpacing \|", shown)
    assert at.toggle(key=f"view-overlay-{uid}").value is True
    assert "mask" not in texts(at).lower()


def _element_types(at: AppTest) -> set[str]:
    seen: set[str] = set()

    def walk(node: object) -> None:
        seen.add(type(node).__name__)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return seen


def test_the_viewer_starts_at_the_file_default_window_with_the_presets_named(
    app: App, installation: Installation
) -> None:
    # Prepare
    at = _open_first_case(app)
    uid = at.session_state["vigil.case.study"]
    image = review_service.load_case_image(
        installation.session_factory(), SignedInUser("radiologist", Role.RADIOLOGIST), uid
    )

    # Execute
    presets = viewer_args_sent(at)["presets"]

    # Assert: the first preset (the one shown first) is the file's own window
    assert (presets[0]["center"], presets[0]["width"]) == pytest.approx((image.default.center, image.default.width))
    assert [p["name"] for p in presets] == [p.name for p in image.presets]


def _count_explanations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the one place the review page computes a map; returns the methods computed, in order."""
    calls: list[str] = []
    real = explanation_service.explain_study

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(str(kwargs["method"]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(explanation_service, "explain_study", counting)
    return calls


def _table_counts(inst: Installation) -> tuple[int, int]:
    """(explanation rows, explanation_viewed audit entries)."""
    engine = create_engine(inst.database_url)
    with engine.connect() as conn:
        n_expl = conn.execute(text("SELECT COUNT(*) FROM explanation")).scalar_one()
        n_viewed = conn.execute(
            select(AuditEntryRow.seq).where(AuditEntryRow.action == AuditAction.EXPLANATION_VIEWED.value)
        ).all()
    engine.dispose()
    return int(n_expl), len(n_viewed)


def test_widget_changes_never_recompute_the_explanation(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: count map computations behind the case page
    calls = _count_explanations(monkeypatch)
    at = _open_first_case(app)
    uid = at.session_state["vigil.case.study"]

    # Execute: the viewer's server-side control (window, zoom, opacity run in the browser), then
    # a second browser session on the same case
    at.toggle(key=f"view-overlay-{uid}").set_value(False).run()
    at.toggle(key=f"view-overlay-{uid}").set_value(True).run()
    other = _open_first_case(app, Role.CHAMPION)

    # Assert: the Grad-CAM map `vigil init` stored with the score is shown; nothing is computed
    assert not at.exception and not other.exception
    assert calls == []


def test_gradientshap_shows_a_signed_map_with_its_legend_and_trust_note(app: App) -> None:
    # Prepare
    at = _open_second_case(app)

    # Execute
    at.segmented_control(key="view-method").set_value(ExplainMethod.GRADIENTSHAP).run()

    # Assert
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Red: evidence for a nodule") for c in captions)
    assert any("How far to trust GradientShap" in c for c in captions)
    args = viewer_args_sent(at)
    assert args["map_label"] == "GradientShap map" and args["map_signed"] is True
    assert count_elements(at) < ELEMENT_BUDGET


def test_each_map_is_computed_once_and_each_view_audited_once(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a case with GradientShap on screen
    calls = _count_explanations(monkeypatch)
    at = _open_second_case(app)
    at.segmented_control(key="view-method").set_value(ExplainMethod.GRADIENTSHAP).run()
    rows_before, viewed_before = _table_counts(installation)
    calls_before = list(calls)

    # Execute: overlay toggles rerun the page; back to Grad-CAM and again to GradientShap
    uid = at.session_state["vigil.case.study"]
    at.toggle(key=f"view-overlay-{uid}").set_value(False).run()
    at.toggle(key=f"view-overlay-{uid}").set_value(True).run()
    at.segmented_control(key="view-method").set_value(ExplainMethod.GRADCAM).run()
    at.segmented_control(key="view-method").set_value(ExplainMethod.GRADIENTSHAP).run()

    # Assert
    assert not at.exception
    assert calls_before == ["gradientshap"]  # Grad-CAM's map was stored with the score by `vigil init`
    assert calls == calls_before
    assert _table_counts(installation) == (rows_before, viewed_before)
    # One view audit per (case, method) shown: the first case's Grad-CAM, the second's Grad-CAM and GradientShap.
    assert viewed_before == 3


def test_feedback_is_saved_once_with_its_audit_entry_and_shown_in_history(app: App, installation: Installation) -> None:
    # Prepare
    at = _open_first_case(app)
    _fill_feedback(at)

    # Execute: submit, then rerun a few times (a refresh, an overlay toggle)
    _button(at, "Save feedback").click().run()  # type: ignore[attr-defined]
    flash = [s.value for s in at.success]
    at.run()
    at.toggle(key=f"view-overlay-{at.session_state['vigil.case.study']}").set_value(False).run()

    # Assert
    assert flash and flash[0].startswith("Feedback saved as #")
    rows = _feedback_rows(installation)
    assert len(rows) == 1 and rows[0][2:] == ("radiologist", True)
    engine = create_engine(installation.database_url)
    with engine.connect() as conn:
        entry = conn.execute(
            select(AuditEntryRow).where(AuditEntryRow.action == AuditAction.FEEDBACK_RECORDED.value)
        ).one()
    engine.dispose()
    assert entry.actor == "radiologist" and f'"feedback_id":{rows[0][0]}' in entry.payload_json
    assert "lungs clear" not in entry.payload_json  # the comment's hash is audited, not its text
    assert verify_ledger(installation.session_factory()).ok
    assert any("Your feedback #" in m.value for m in at.markdown)
    assert "Dataframe" in _element_types(at)


def test_a_correction_appends_a_row_that_references_the_first(app: App, installation: Installation) -> None:
    # Prepare
    at = _open_first_case(app)
    _fill_feedback(at)
    _button(at, "Save feedback").click().run()  # type: ignore[attr-defined]

    # Execute
    _button(at, "Correct my feedback").click().run()  # type: ignore[attr-defined]
    {r.label: r for r in at.radio}["Do you agree with the model's call?"].set_value("Disagree")
    _button(at, "Save feedback").click().run()  # type: ignore[attr-defined]

    # Assert
    rows = _feedback_rows(installation)
    assert [(r[1], r[3]) for r in rows] == [(None, True), (rows[0][0], False)]
    assert any(s.value.startswith("Correction saved as #") for s in at.success)


def test_an_incomplete_form_is_refused_and_writes_nothing(app: App, installation: Installation) -> None:
    # Prepare
    at = _open_first_case(app)

    # Execute
    _button(at, "Save feedback").click().run()  # type: ignore[attr-defined]

    # Assert
    assert [e.value for e in at.error] == ["Please answer all four questions (the comment is optional)."]
    assert _feedback_rows(installation) == []


def test_next_and_previous_step_through_the_worklist(app: App) -> None:
    # Prepare
    at = _open_first_case(app)
    first = at.session_state["vigil.case.study"]

    # Execute
    _button(at, "Next").click().run()  # type: ignore[attr-defined]
    second = at.session_state["vigil.case.study"]
    _button(at, "Previous").click().run()  # type: ignore[attr-defined]

    # Assert
    assert second != first
    assert at.session_state["vigil.case.study"] == first
    assert _button(at, "Previous").disabled  # type: ignore[attr-defined]


def test_unreadable_pixels_show_a_message_and_the_worklist_still_works(app: App, installation: Installation) -> None:
    # Prepare: the stored file of the study heading the (triage) worklist is gone
    reader = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)
    head = worklist_page(installation.session_factory(), reader, WorklistFilter()).items[0]
    engine = create_engine(installation.database_url)
    with engine.begin() as conn:
        gone = update(InstanceRow).where(InstanceRow.study_id == head.study_id)
        conn.execute(gone.values(path="/nonexistent/gone.dcm"))
    engine.dispose()

    # Execute
    at = _open_first_case(app)
    message = [e.value for e in at.error]
    _button(at, "Next").click().run()  # type: ignore[attr-defined]
    at.switch_page("pages/worklist.py").run()

    # Assert
    assert message and message[0].startswith("This study's image cannot be shown:")
    assert not at.exception
    assert any(c.value.startswith("Page 1 of 1 · 8 studies") for c in at.caption)  # the live ones


# --- accounts -------------------------------------------------------------------------------------


def test_admin_adds_a_user_who_can_then_sign_in(app: App) -> None:
    # Prepare
    at = app(Role.ADMIN)
    at.switch_page("pages/users.py").run()

    # Execute
    at.text_input[0].input("dr.new")
    at.text_input[1].input("Dr Nadia New")
    at.selectbox[0].set_value("radiologist")
    at.text_input[2].input("a long enough password")
    _button(at, "Add user").click().run()  # type: ignore[attr-defined]
    anonymous = app(None)
    anonymous.text_input[0].input("dr.new")
    anonymous.text_input[1].input("a long enough password")
    anonymous.button[0].click().run()

    # Assert
    assert [s.value for s in at.success] == ["Created dr.new (Dr Nadia New, radiologist)."]
    assert any("Welcome, **dr.new**" in m.value for m in anonymous.markdown)


def test_a_short_new_password_is_refused(app: App) -> None:
    # Prepare
    at = app(Role.RADIOLOGIST)
    at.switch_page("pages/account.py").run()

    # Execute
    at.text_input[0].input(DEMO_PASSWORDS["radiologist"])
    at.text_input[1].input("short")
    at.text_input[2].input("short")
    _button(at, "Change password").click().run()  # type: ignore[attr-defined]

    # Assert
    assert at.error and "at least 12 characters" in at.error[0].value
