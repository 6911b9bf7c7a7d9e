"""Register and list sites (ingest refuses a site that is not registered)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from core.audit.events import AuditAction
from core.errors import BadInputError
from core.store import audit_log, sites
from core.store.engine import SessionFactory
from core.store.sites import SiteRecord

__all__ = ["add_site", "list_sites", "SITE_NAME_PATTERN"]

#: Site names appear in URLs, file names and reports: keep them plain.
SITE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def add_site(
    session_factory: SessionFactory, name: str, *, benchmark: bool, actor: str, now: Callable[[], datetime]
) -> SiteRecord:
    """Register ``name``; a benchmark site is the retrospective reference for pilot drift.

    Raises
    ------
    BadInputError
        The name is not 1–64 letters, digits, ``_``, ``.`` or ``-``.
    DuplicateSiteError
        The name is already registered.
    """
    if not SITE_NAME_PATTERN.match(name):
        raise BadInputError(f"invalid site name {name!r}: use 1-64 letters, digits, '_', '.' or '-'")
    with session_factory.begin() as session:
        rec = sites.add_site(session, name, is_benchmark=benchmark, now=now())
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.SITE_ADDED,
            subject=name,
            payload={"site": name, "benchmark": benchmark},
            recorded_at=now().isoformat(),
        )
    return rec


def list_sites(session_factory: SessionFactory) -> list[SiteRecord]:
    """Every registered site, by name."""
    with session_factory() as session:
        return sites.list_sites(session)
