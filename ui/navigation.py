"""The page list: which pages exist, in which section, and which permission each needs.

``app.py`` builds ``st.navigation`` from :func:`pages_for`, so a role never sees a page it may
not use. To add a page, add one :class:`PageSpec` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import streamlit as st

from core.services.permissions import Permission, SignedInUser, can

__all__ = ["PAGES", "PageSpec", "pages_for", "sign_in_navigation"]


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
