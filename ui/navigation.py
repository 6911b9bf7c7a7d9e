"""The page list: which pages exist, in which section, and which permission each needs.

``app.py`` builds ``st.navigation`` from :func:`pages_for`, so a role never sees a page it may
not use. To add a page, add one :class:`PageSpec` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import streamlit as st

from core.services.permissions import ACTIONS, ROLE_PERMISSIONS, Permission, Role, SignedInUser, can

__all__ = ["PAGES", "PageSpec", "pages_for", "role_matrix_markdown", "sign_in_navigation"]


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One page: its script, title, Material icon, sidebar section and the permission it needs."""

    path: str
    title: str
    icon: str
    section: str
    permission: Permission | None
    default: bool = False


PAGES: Final[tuple[PageSpec, ...]] = (
    PageSpec("pages/home.py", "Home", ":material/home:", "Vigil", None, default=True),
    PageSpec("pages/worklist.py", "Worklist", ":material/list:", "Reading", Permission.REVIEW_STUDIES),
    PageSpec("pages/case_review.py", "Case review", ":material/image_search:", "Reading", Permission.REVIEW_STUDIES),
    PageSpec("pages/adjudication.py", "Adjudication", ":material/gavel:", "Reading", Permission.ADJUDICATE),
    PageSpec(
        "pages/site_performance.py",
        "Site performance",
        ":material/monitoring:",
        "Monitoring",
        Permission.VIEW_PERFORMANCE,
    ),
    PageSpec("pages/drift_monitor.py", "Drift", ":material/ssid_chart:", "Monitoring", Permission.VIEW_PERFORMANCE),
    PageSpec("pages/outcomes.py", "Outcomes", ":material/fact_check:", "Monitoring", Permission.VIEW_PERFORMANCE),
    PageSpec(
        "pages/deployment.py",
        "Deployment",
        ":material/published_with_changes:",
        "Oversight",
        Permission.VIEW_DEPLOYMENTS,
    ),
    PageSpec("pages/audit.py", "Audit", ":material/policy:", "Oversight", Permission.VIEW_AUDIT_LOG),
    PageSpec("pages/pacs.py", "PACS", ":material/lan:", "Administration", Permission.VIEW_PACS),
    PageSpec("pages/users.py", "Users", ":material/group:", "Administration", Permission.MANAGE_USERS),
    PageSpec("pages/account.py", "My account", ":material/person:", "Account", None),
)


def pages_for(user: SignedInUser) -> dict[str, list[st.Page]]:
    """The sections and pages ``user``'s role may use, in :data:`PAGES` order."""
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        if spec.permission is None or can(user, spec.permission):
            page = st.Page(spec.path, title=spec.title, icon=spec.icon, default=spec.default)
            sections.setdefault(spec.section, []).append(page)
    return sections


def sign_in_navigation(render: Callable[[], None]) -> list[st.Page]:
    """The only page an anonymous session can reach."""
    return [st.Page(render, title="Sign in", icon=":material/login:", url_path="signin", default=True)]


def role_matrix_markdown() -> str:
    """``docs/roles.md``: which role reaches which page and may take which action, from the code itself.

    A test keeps the committed file equal to this, so the table cannot drift from what the
    navigation and the services enforce.
    """
    roles = list(Role)
    head = "| | " + " | ".join(r.value for r in roles) + " |\n|---|" + "---|" * len(roles) + "\n"
    pages = "".join(
        f"| {spec.title} | "
        + " | ".join("yes" if spec.permission is None or spec.permission in ROLE_PERMISSIONS[r] else "" for r in roles)
        + " |\n"
        for spec in PAGES
    )
    actions = "".join(
        f"| {name} | " + " | ".join("yes" if allowed & ROLE_PERMISSIONS[r] else "" for r in roles) + " |\n"
        for name, allowed in ACTIONS.items()
    )
    permissions = "".join(
        f"| `{p.value}` | " + " | ".join("yes" if p in ROLE_PERMISSIONS[r] else "" for r in roles) + " |\n"
        for p in Permission
    )
    return (
        "# Roles, pages and actions\n\n"
        "Generated from `ui/navigation.py` (pages) and `core/services/permissions.py` (actions); "
        "`tests/ui/test_role_matrix.py` fails when this file and the code disagree. The services check "
        "the permission again on every action, so a page's absence is not the only guard.\n\n"
        "## Pages each role reaches\n\n"
        + head
        + pages
        + "\n## Actions each role may take\n\nEach is called at its service as every role by the test.\n\n"
        + head
        + actions
        + "\n## Permissions behind the actions\n\n"
        + head
        + permissions
    )
