"""Roles, permissions and the one check every service makes before it acts.

The UI hides pages a role may not use; this module is what makes that a rule rather than a
courtesy. Every service that acts for a signed-in person calls :func:`require` first, so a
radiologist cannot promote a model even by calling the service directly. Services that write
re-check the role stored in the database inside their transaction (see ``core.services.feedback``),
so a role withdrawn while someone is signed in takes effect at their next action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from core.errors import PermissionDeniedError, UnknownRoleError

__all__ = [
    "ACTIONS",
    "APPROVER_OR_ENGINEER",
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "SignedInUser",
    "can",
    "can_any",
    "parse_role",
    "permissions_of",
    "require",
    "require_any",
]


class Role(StrEnum):
    """The roles of ARCHITECTURE.md's user table; stored in ``app_user.role``."""

    RADIOLOGIST = "radiologist"
    CHAMPION = "champion"  # clinical champion: adjudicates disagreements
    CMIO = "cmio"  # CMIO / quality lead
    ML_ENGINEER = "ml_engineer"
    ADMIN = "admin"
    AUDITOR = "auditor"


class Permission(StrEnum):
    """Actions a role may take. Values are stored in audit payloads: add members, never rename."""

    REVIEW_STUDIES = "review_studies"  # worklist, images, predictions, explanations
    RECORD_FEEDBACK = "record_feedback"
    ADJUDICATE = "adjudicate"
    VIEW_PERFORMANCE = "view_performance"  # site metrics, drift, alerts
    APPROVE_DEPLOYMENT = "approve_deployment"
    MANAGE_MODELS = "manage_models"  # train, validate, promote, roll back
    VIEW_MODEL_CARDS = "view_model_cards"
    VIEW_AUDIT_LOG = "view_audit_log"
    EXPORT_EVIDENCE = "export_evidence"
    MANAGE_USERS = "manage_users"
    VIEW_DEPLOYMENTS = "view_deployments"  # serving version, registry, gate reports, deployment history
    VIEW_PACS = "view_pacs"  # each site's PACS endpoint, its last connection test, failed pushes
    CHECK_PACS = "check_pacs"  # test a site's PACS connection (the action issue 18 calls "pacs.check")
    VIEW_FEDERATED = "view_federated"  # federated runs, per-site privacy spent, node health
    RUN_FEDERATED = "run_federated"  # launch a federated training run


_P = Permission
#: Least privilege: only readers see study images; only the auditor exports evidence.
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.RADIOLOGIST: frozenset({_P.REVIEW_STUDIES, _P.RECORD_FEEDBACK, _P.VIEW_MODEL_CARDS}),
        Role.CHAMPION: frozenset(
            {_P.REVIEW_STUDIES, _P.RECORD_FEEDBACK, _P.ADJUDICATE, _P.VIEW_PERFORMANCE, _P.VIEW_MODEL_CARDS}
        ),
        Role.CMIO: frozenset(
            {
                _P.VIEW_PERFORMANCE,
                _P.APPROVE_DEPLOYMENT,
                _P.VIEW_MODEL_CARDS,
                _P.VIEW_AUDIT_LOG,
                _P.VIEW_DEPLOYMENTS,
                _P.VIEW_PACS,
                _P.VIEW_FEDERATED,  # read-only: the privacy spent and who took part, for governance
            }
        ),
        Role.ML_ENGINEER: frozenset(
            {
                _P.VIEW_PERFORMANCE,
                _P.MANAGE_MODELS,
                _P.VIEW_MODEL_CARDS,
                _P.VIEW_DEPLOYMENTS,
                _P.VIEW_PACS,
                _P.VIEW_FEDERATED,
                _P.RUN_FEDERATED,
            }
        ),
        # Only the administrator tests connections: a test sends the site's credentials to its PACS.
        Role.ADMIN: frozenset(
            {
                _P.MANAGE_USERS,
                _P.VIEW_MODEL_CARDS,
                _P.VIEW_AUDIT_LOG,
                _P.VIEW_DEPLOYMENTS,
                _P.VIEW_PACS,
                _P.CHECK_PACS,
                _P.VIEW_FEDERATED,
                _P.RUN_FEDERATED,
            }
        ),
        Role.AUDITOR: frozenset({_P.VIEW_AUDIT_LOG, _P.EXPORT_EVIDENCE, _P.VIEW_MODEL_CARDS, _P.VIEW_DEPLOYMENTS}),
    }
)


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who is acting: the actor of every audit entry and feedback row they cause.

    Only :func:`core.services.auth.sign_in` should make one for a person; services trust the
    role in it for reads and re-check the stored role for writes.
    """

    username: str
    role: Role


def parse_role(value: str) -> Role:
    """The :class:`Role` called ``value``; ``UnknownRoleError`` names the choices otherwise."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise UnknownRoleError(value, tuple(r.value for r in Role)) from None


#: Either may handle drift alerts and incidents, and roll back: the approver, or the engineer on call.
APPROVER_OR_ENGINEER: Final = frozenset({_P.APPROVE_DEPLOYMENT, _P.MANAGE_MODELS})

#: Every action the app offers a person, and the permissions that allow it (any one of them).
#: ``docs/roles.md`` lists it, and ``tests/ui/test_role_matrix.py`` calls each action at its
#: service as every role: a service that lets a role through that this table refuses fails there.
ACTIONS: Final[Mapping[str, frozenset[Permission]]] = MappingProxyType(
    {
        "read the worklist": frozenset({_P.REVIEW_STUDIES}),
        "open a case": frozenset({_P.REVIEW_STUDIES}),
        "see a case's explanation": frozenset({_P.REVIEW_STUDIES}),
        "read a case's feedback history": frozenset({_P.REVIEW_STUDIES}),
        "record feedback": frozenset({_P.RECORD_FEEDBACK}),
        "see the adjudication queue": frozenset({_P.ADJUDICATE}),
        "open an adjudication case file": frozenset({_P.ADJUDICATE}),
        "adjudicate a case": frozenset({_P.ADJUDICATE}),
        "see the labelling plan": frozenset({_P.ADJUDICATE}),
        "list drift alerts": frozenset({_P.VIEW_PERFORMANCE}),
        "list incidents": frozenset({_P.VIEW_PERFORMANCE}),
        "run the monitors": frozenset({_P.VIEW_PERFORMANCE}),
        "acknowledge an alert": APPROVER_OR_ENGINEER,
        "resolve an alert": APPROVER_OR_ENGINEER,
        "acknowledge an incident": APPROVER_OR_ENGINEER,
        "resolve an incident": APPROVER_OR_ENGINEER,
        "approve a site calibrator": frozenset({_P.APPROVE_DEPLOYMENT}),
        "search the audit log": frozenset({_P.VIEW_AUDIT_LOG}),
        "export evidence": frozenset({_P.EXPORT_EVIDENCE}),
        "create a user": frozenset({_P.MANAGE_USERS}),
        "reset a user's password": frozenset({_P.MANAGE_USERS}),
        "view deployments": frozenset({_P.VIEW_DEPLOYMENTS}),
        "download a gate report": frozenset({_P.VIEW_DEPLOYMENTS}),
        "promote a model version": frozenset({_P.APPROVE_DEPLOYMENT}),
        "roll back": APPROVER_OR_ENGINEER,
        "run the change-control gate": frozenset({_P.MANAGE_MODELS}),
        "retrain": frozenset({_P.MANAGE_MODELS}),
        "see PACS connection status": frozenset({_P.VIEW_PACS}),
        "test a PACS connection": frozenset({_P.CHECK_PACS}),
        "see federated runs": frozenset({_P.VIEW_FEDERATED}),
        "launch a federated run": frozenset({_P.RUN_FEDERATED}),
    }
)


def permissions_of(role: Role) -> frozenset[Permission]:
    """Everything ``role`` may do."""
    return ROLE_PERMISSIONS[role]


def can(user: SignedInUser | None, permission: Permission) -> bool:
    """Whether ``user`` (None: nobody signed in) may take ``permission``'s action."""
    return user is not None and permission in ROLE_PERMISSIONS[user.role]


def require(user: SignedInUser | None, permission: Permission) -> SignedInUser:
    """Return ``user`` when their role allows ``permission``; raise otherwise.

    Raises
    ------
    PermissionDeniedError
        Nobody is signed in, or the role does not hold the permission.
    """
    if user is None:
        raise PermissionDeniedError("(nobody signed in)", "none", permission.value)
    if not can(user, permission):
        raise PermissionDeniedError(user.username, user.role.value, permission.value)
    return user


def can_any(user: SignedInUser | None, permissions: Iterable[Permission]) -> bool:
    """Whether ``user`` may take at least one of ``permissions``' actions."""
    return any(can(user, p) for p in permissions)


def require_any(user: SignedInUser | None, permissions: Iterable[Permission]) -> SignedInUser:
    """Return ``user`` when their role allows any of ``permissions``; raise naming the first otherwise.

    "First" is in :class:`Permission`'s order, so the message does not depend on a set's order.

    Raises
    ------
    PermissionDeniedError
        Nobody is signed in, or the role holds none of the permissions.
    """
    allowed = frozenset(permissions)
    wanted = [p for p in Permission if p in allowed]
    if user is not None and can_any(user, wanted):
        return user
    return require(user, wanted[0])
