"""docs/roles.md is generated from the code, and the services themselves refuse every role it refuses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import PacsEndpoint, Settings
from core.errors import PermissionDeniedError, UnknownStudyError, VigilError
from core.imaging.dicomweb import DicomwebClient
from core.models.finetune import FinetuneConfig
from core.models.loading import LoadedModel
from core.services import (
    adjudication,
    audit_search,
    auth,
    calibration,
    change_control,
    deployment,
    explanation,
    federated_live,
    federated_view,
    feedback,
    monitoring,
    monitoring_incidents,
    pacs_status,
    retrain,
    review,
    worklist,
)
from core.services.audit_checkpoints import CheckpointPlaces
from core.services.permissions import ACTIONS, ROLE_PERMISSIONS, Role, SignedInUser
from core.store.engine import SessionFactory
from ui.navigation import role_matrix_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"


def _now() -> datetime:
    return datetime(2026, 12, 5, tzinfo=UTC)


def test_the_committed_roles_table_is_generated_from_the_code() -> None:
    # Regenerate: .venv/bin/python -c "from ui.navigation import role_matrix_markdown as m; print(m(), end='')" \
    #     > docs/roles.md
    assert DOC.read_text(encoding="utf-8") == role_matrix_markdown()


Action = Callable[[SessionFactory, SignedInUser, Path], object]
UID = "1.2.3"


def _no_client(_endpoint: PacsEndpoint) -> DicomwebClient:
    raise AssertionError("no site has a PACS here: the test stops before a client is built")


def _no_spawn(_argv: object, _env: object, _log: object) -> int:
    raise AssertionError("no site is registered here: the launch stops before a process is started")


def _no_model(version: str) -> tuple[LoadedModel, threading.Lock]:
    raise UnknownStudyError(UID)  # reached only when allowed; the empty installation stops it either way


def _feedback() -> feedback.FeedbackForm:
    return feedback.FeedbackForm(
        study_uid=UID,
        prediction_id=1,
        agrees=True,
        finding=feedback.Finding.ABSENT,
        confidence=3,
        explanation=None,
        comment="",
        time_on_case_s=1.0,
        idempotency_key=feedback.new_idempotency_key(),
    )


#: Each action in ``core.services.permissions.ACTIONS``, called at the service the page calls.
CALLS: dict[str, Action] = {
    "read the worklist": lambda sf, u, _: worklist.worklist_page(sf, u, worklist.WorklistFilter()),
    "open a case": lambda sf, u, _: review.open_case(sf, u, UID),
    "see a case's explanation": lambda sf, u, home: explanation.explain_case(
        sf, u, UID, method="gradcam", model=_no_model, artifacts_dir=home, now=_now
    ),
    "read a case's feedback history": lambda sf, u, _: feedback.feedback_history(sf, u, UID),
    "record feedback": lambda sf, u, _: feedback.record_feedback(sf, u, _feedback(), now=_now),
    "see the adjudication queue": lambda sf, u, _: adjudication.adjudication_queue(sf, u, now=_now),
    "open an adjudication case file": lambda sf, u, _: adjudication.case_file(sf, u, UID),
    "adjudicate a case": lambda sf, u, _: adjudication.record_adjudication(
        sf, u, UID, label=True, reason="r", now=_now
    ),
    "see the labelling plan": lambda sf, u, _: adjudication.labelling_plan(sf, u),
    "list drift alerts": lambda sf, u, _: monitoring.list_alerts(sf, by=u),
    "list incidents": lambda sf, u, _: monitoring_incidents.list_incidents(sf, by=u),
    "run the monitors": lambda sf, u, _: monitoring.run_monitoring(sf, model=None, by=u, now=_now, site="nowhere"),
    "acknowledge an alert": lambda sf, u, _: monitoring.acknowledge_alert(sf, 1, by=u, note="n", now=_now),
    "resolve an alert": lambda sf, u, _: monitoring.resolve_alert(sf, 1, by=u, note="n", now=_now),
    "acknowledge an incident": lambda sf, u, _: monitoring_incidents.acknowledge_incident(
        sf, 1, by=u, note="n", now=_now
    ),
    "resolve an incident": lambda sf, u, _: monitoring_incidents.resolve_incident(sf, 1, by=u, note="n", now=_now),
    "approve a site calibrator": lambda sf, u, _: calibration.approve_site_calibrator(
        sf, 1, actor=u.username, now=_now, user=u
    ),
    "search the audit log": lambda sf, u, _: audit_search.search_entries(sf, u, audit_search.AuditQuery()),
    "export evidence": lambda sf, u, home: audit_search.export_zip(
        sf, CheckpointPlaces(home / "key", home / "checkpoints.jsonl"), u, now=_now
    ),
    "create a user": lambda sf, u, _: auth.create_user(
        sf, u, "new.reader", "radiologist", "a long enough password", full_name="New Reader", now=_now
    ),
    "reset a user's password": lambda sf, u, _: auth.reset_password(
        sf, u, "nobody", "a long enough password", now=_now
    ),
    "view deployments": lambda sf, u, _: deployment.overview(sf, u),
    "download a gate report": lambda sf, u, _: deployment.validation_html(sf, u, 1),
    "promote a model version": lambda sf, u, home: deployment.promote_as(sf, u, "v", "pw", models_dir=home, now=_now),
    "roll back": lambda sf, u, home: deployment.rollback_as(sf, u, reason="r", models_dir=home, now=_now),
    "run the change-control gate": lambda sf, u, home: change_control.validate_change_as(
        sf, u, "v", settings=Settings(home=home, database_url="sqlite://"), now=_now
    ),
    "retrain": lambda sf, u, home: retrain.retrain_as(
        sf, u, "v", version="w", seed=0, config=FinetuneConfig(), models_dir=home, work_dir=home, now=_now
    ),
    "see PACS connection status": lambda sf, u, home: pacs_status.overview(
        sf, u, Settings(home=home, database_url="sqlite://")
    ),
    "test a PACS connection": lambda sf, u, home: pacs_status.check_site_as(
        sf, u, Settings(home=home, database_url="sqlite://"), "nowhere", _no_client, now=_now
    ),
    "see federated runs": lambda sf, u, _: federated_view.run_detail(sf, u, "fl-none"),
    "launch a federated run": lambda sf, u, home: federated_live.launch_run(
        sf,
        u,
        federated_live.LaunchRequest(sites=("nowhere", "elsewhere"), rounds=1),
        vigil=home / "vigil",
        environ={},
        logs_dir=home,
        now=_now,
        spawn=_no_spawn,
    ),
}


def test_every_action_in_the_table_is_called_here() -> None:
    assert set(CALLS) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(CALLS))
@pytest.mark.parametrize("role", list(Role))
def test_each_action_refuses_exactly_the_roles_without_its_permission(
    session_factory: SessionFactory, tmp_path: Path, action: str, role: Role
) -> None:
    call, allowed_by = CALLS[action], ACTIONS[action]
    user = SignedInUser(f"a-{role.value}", role)
    may = bool(allowed_by & ROLE_PERMISSIONS[role])
    try:
        call(session_factory, user, tmp_path)
    except PermissionDeniedError:
        assert not may, f"{role.value} may {action} but was refused"
        return
    except VigilError:
        pass  # allowed, then stopped by the (empty) installation: not a permission question
    assert may, f"{role.value} may not {action} but was let through"
