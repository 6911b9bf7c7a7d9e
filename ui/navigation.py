"""The page list: which pages exist, in which section, and which permission each needs.

``app.py`` builds ``st.navigation`` from :func:`pages_for`, so a role never sees a page it may
not use. To add a page, add one :class:`PageSpec` here.

Deep links: every page has the same URL (``/case_review?study=UID``) in every navigation. Before
sign-in each URL shows the sign-in form; after it the same URL, query parameters included, runs
the page (Streamlit keys a page by its URL path, so the rerun after signing in lands on it). A
page the role may not use stays reachable by URL only to say which role it needs, instead of
Streamlit's "Page not found".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

import streamlit as st

from core.services.permissions import ACTIONS, ROLE_PERMISSIONS, Permission, Role, SignedInUser, can

__all__ = [
    "PAGES",
    "PageSpec",
    "pages_for",
    "refusal_text",
    "role_matrix_markdown",
    "roles_with",
    "sign_in_navigation",
]


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One page: its script, title, Material icon, sidebar section and the permission it needs."""

    path: str
    title: str
    icon: str
    section: str
    permission: Permission | None
    default: bool = False

    @property
    def url_path(self) -> str:
        """The page's URL path (``case_review``), the same before and after sign-in."""
        return PurePosixPath(self.path).stem


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
    PageSpec("pages/federated.py", "Federated", ":material/hub:", "Oversight", Permission.VIEW_FEDERATED),
    PageSpec("pages/pacs.py", "PACS", ":material/lan:", "Administration", Permission.VIEW_PACS),
    PageSpec("pages/users.py", "Users", ":material/group:", "Administration", Permission.MANAGE_USERS),
    PageSpec("pages/account.py", "My account", ":material/person:", "Account", None),
)


def pages_for(user: SignedInUser) -> dict[str, list[st.Page]]:
    """The sections and pages ``user``'s role may use, in :data:`PAGES` order.

    The others are hidden pages at their usual URL that only say which role they need.
    """
    sections: dict[str, list[st.Page]] = {}
    refused: list[st.Page] = []
    for spec in PAGES:
        if spec.permission is None or can(user, spec.permission):
            page = st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=spec.default)
            sections.setdefault(spec.section, []).append(page)
        else:
            refused.append(_hidden(spec, _refusal(refusal_text(spec, user))))
    # Hidden pages go into a section that has visible ones, so no empty heading appears.
    next(iter(sections.values())).extend(refused)
    return sections


def sign_in_navigation(render: Callable[[str | None], None]) -> list[st.Page]:
    """What an anonymous session can reach: the sign-in form, at its own URL and at every page's.

    ``render(title)`` draws the form; ``title`` is the page the visitor asked for (None at the root).
    """
    pages = [st.Page(lambda: render(None), title="Sign in", icon=":material/login:", url_path="signin", default=True)]
    return pages + [_hidden(spec, _bound(render, spec.title)) for spec in PAGES if not spec.default]


def roles_with(permission: Permission) -> list[Role]:
    """The roles that hold ``permission``, in :class:`Role` order."""
    return [r for r in Role if permission in ROLE_PERMISSIONS[r]]


def refusal_text(spec: PageSpec, user: SignedInUser) -> str:
    """Why ``user`` cannot open ``spec``: the page, the roles it needs and the user's own role."""
    assert spec.permission is not None  # pages without a permission are never refused
    needed = " or ".join(r.value.replace("_", " ") for r in roles_with(spec.permission))
    return (
        f"The {spec.title} page needs the {needed} role; you are signed in as "
        f"{user.username} ({user.role.value.replace('_', ' ')}). Ask an administrator if you need it."
    )


def _hidden(spec: PageSpec, body: Callable[[], None]) -> st.Page:
    return st.Page(body, title=spec.title, icon=spec.icon, url_path=spec.url_path, visibility="hidden")


def _bound(render: Callable[[str | None], None], title: str) -> Callable[[], None]:
    def page() -> None:
        render(title)

    return page


def _refusal(text: str) -> Callable[[], None]:
    def page() -> None:
        st.error(text, icon=":material/lock:")

    return page


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
