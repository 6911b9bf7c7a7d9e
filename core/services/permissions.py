"""Roles, permissions and the one check every service makes before it acts.

The UI hides pages a role may not use; this module is what makes that a rule rather than a
courtesy. Every service that acts for a signed-in person calls :func:`require` first, so a
radiologist cannot promote a model even by calling the service directly. Services that write
re-check the role stored in the database inside their transaction (see ``core.services.feedback``),
so a role withdrawn while someone is signed in takes effect at their next action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from core.errors import PermissionDeniedError, UnknownRoleError

__all__ = [
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


_P = Permission
#: Least privilege: only readers see study images; only the auditor exports evidence.
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.RADIOLOGIST: frozenset({_P.REVIEW_STUDIES, _P.RECORD_FEEDBACK, _P.VIEW_MODEL_CARDS}),
        Role.CHAMPION: frozenset(
            {_P.REVIEW_STUDIES, _P.RECORD_FEEDBACK, _P.ADJUDICATE, _P.VIEW_PERFORMANCE, _P.VIEW_MODEL_CARDS}
        ),
        Role.CMIO: frozenset(
            {_P.VIEW_PERFORMANCE, _P.APPROVE_DEPLOYMENT, _P.VIEW_MODEL_CARDS, _P.VIEW_AUDIT_LOG, _P.VIEW_DEPLOYMENTS}
        ),
        Role.ML_ENGINEER: frozenset({_P.VIEW_PERFORMANCE, _P.MANAGE_MODELS, _P.VIEW_MODEL_CARDS, _P.VIEW_DEPLOYMENTS}),
        Role.ADMIN: frozenset({_P.MANAGE_USERS, _P.VIEW_MODEL_CARDS, _P.VIEW_AUDIT_LOG, _P.VIEW_DEPLOYMENTS}),
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


def require_any(user: SignedInUser | None, permissions: Sequence[Permission]) -> SignedInUser:
    """Return ``user`` when their role allows any of ``permissions``; raise naming the first otherwise.

    Raises
    ------
    PermissionDeniedError
        Nobody is signed in, or the role holds none of the permissions.
    """
    if user is not None and can_any(user, permissions):
        return user
    return require(user, permissions[0])
