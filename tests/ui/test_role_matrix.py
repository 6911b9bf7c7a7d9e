"""docs/roles.md is generated from the code, and the services themselves refuse every role it refuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import PermissionDeniedError, VigilError
from core.models.finetune import FinetuneConfig
from core.services import (
    adjudication,
    audit_search,
    auth,
    change_control,
    deployment,
    monitoring,
    retrain,
    review,
    worklist,
)
from core.services.audit_checkpoints import CheckpointPlaces
from core.services.permissions import ROLE_PERMISSIONS, Permission, Role, SignedInUser
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

#: Each action the app offers, called at its service, with the permissions that allow it (any one of them).
ACTIONS: dict[str, tuple[Action, frozenset[Permission]]] = {
    "read the worklist": (
        lambda sf, u, _: worklist.worklist_page(sf, u, worklist.WorklistFilter()),
        frozenset({Permission.REVIEW_STUDIES}),
    ),
    "open a case": (lambda sf, u, _: review.open_case(sf, u, "1.2.3"), frozenset({Permission.REVIEW_STUDIES})),
    "see the adjudication queue": (
        lambda sf, u, _: adjudication.adjudication_queue(sf, u, now=_now),
        frozenset({Permission.ADJUDICATE}),
    ),
    "list drift alerts": (lambda sf, u, _: monitoring.list_alerts(sf, by=u), frozenset({Permission.VIEW_PERFORMANCE})),
    "search the audit log": (
        lambda sf, u, _: audit_search.search_entries(sf, u, audit_search.AuditQuery()),
        frozenset({Permission.VIEW_AUDIT_LOG}),
    ),
    "export evidence": (
        lambda sf, u, home: audit_search.export_zip(
            sf, CheckpointPlaces(home / "key", home / "checkpoints.jsonl"), u, now=_now
        ),
        frozenset({Permission.EXPORT_EVIDENCE}),
    ),
    "create a user": (
        lambda sf, u, _: auth.create_user(sf, u, "new.reader", "radiologist", "a long enough password", now=_now),
        frozenset({Permission.MANAGE_USERS}),
    ),
    "view deployments": (
        lambda sf, u, _: deployment.overview(sf, u),
        frozenset({Permission.VIEW_DEPLOYMENTS}),
    ),
    "download a gate report": (
        lambda sf, u, _: deployment.validation_html(sf, u, 1),
        frozenset({Permission.VIEW_DEPLOYMENTS}),
    ),
    "promote": (
        lambda sf, u, home: deployment.promote_as(sf, u, "v", "pw", models_dir=home, now=_now),
        frozenset({Permission.APPROVE_DEPLOYMENT}),
    ),
    "roll back": (
        lambda sf, u, home: deployment.rollback_as(sf, u, reason="r", models_dir=home, now=_now),
        frozenset({Permission.APPROVE_DEPLOYMENT, Permission.MANAGE_MODELS}),
    ),
    "run the gate": (
        lambda sf, u, home: change_control.validate_change_as(
            sf, u, "v", settings=Settings(home=home, database_url="sqlite://"), now=_now
        ),
        frozenset({Permission.MANAGE_MODELS}),
    ),
    "retrain": (
        lambda sf, u, home: retrain.retrain_as(
            sf, u, "v", version="w", seed=0, config=FinetuneConfig(), models_dir=home, work_dir=home, now=_now
        ),
        frozenset({Permission.MANAGE_MODELS}),
    ),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("role", list(Role))
def test_each_action_refuses_exactly_the_roles_without_its_permission(
    session_factory: SessionFactory, tmp_path: Path, action: str, role: Role
) -> None:
    call, allowed_by = ACTIONS[action]
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
