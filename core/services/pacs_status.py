"""Each site's PACS connection: test it, and read the last known status back for the PACS page.

A test asks the site's DICOMweb service for one study (``DicomwebClient.check``), with the
endpoint's own timeout and retries, the way ``vigil pacs pull`` will talk to it. Its result is a
frozen :class:`PacsStatus`, written as one ``pacs_checked`` audit entry whose subject is the site.
That entry is the store of the last known status: :func:`overview` reads the newest one per site,
so a test run from ``vigil pacs check`` and one run from the page show alike.

Nothing here holds a secret: the endpoint URL never carries a credential (``core.config`` refuses
one), the secret is read by the caller's client factory from the environment, and error messages
name the endpoint or the environment variable, never the value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from core.audit.events import AuditAction
from core.config import PacsEndpoint, Settings
from core.errors import PacsAuthError, PacsConfigError, PacsServerError, PacsUnreachableError
from core.services.pacs_auto_push import Clients, PushFailure, open_failures
from core.services.permissions import Permission, SignedInUser, parse_role, require
from core.store import audit_log, users
from core.store.audit_queries import AuditFilter, StoredEntry, search
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["PacsOverview", "PacsStatus", "SitePacs", "check_endpoint", "check_site_as", "last_status", "overview"]

#: Milliseconds are kept to a tenth: finer is noise on a network round trip.
_MS_DIGITS: Final = 1


@dataclass(frozen=True, slots=True)
class PacsStatus:
    """The result of one connection test of a site's PACS.

    Attributes
    ----------
    site, url : str
        The site and its DICOMweb base URL (no credential in it).
    ok : bool
        The server answered a search and accepted the credentials.
    reachable : bool
        The server answered at all (False: refused, timed out, or not tried because the
        secret is not set).
    latency_ms : float or None
        Wall time of the test, retries included, in milliseconds; None when nothing answered.
    error : str
        Why the test failed; empty when ``ok``.
    checked_at : datetime
        When the test ended (UTC).
    checked_by : str
        Who ran it (a username, or ``cli:<user>``).
    """

    site: str
    url: str
    ok: bool
    reachable: bool
    latency_ms: float | None
    error: str
    checked_at: datetime
    checked_by: str

    def to_dict(self) -> JSONObject:
        """JSON-ready (a row of ``vigil pacs check --json``; ``endpoint`` and ``reason`` as before)."""
        return {
            "site": self.site,
            "endpoint": self.url,
            "ok": self.ok,
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "reason": self.error,
            "checked_at": self.checked_at.isoformat(),
            "checked_by": self.checked_by,
        }


@dataclass(frozen=True, slots=True)
class SitePacs:
    """One row of the PACS page: a configured endpoint and its last known test."""

    site: str
    url: str
    auth: str
    auto_push: bool
    last_check: PacsStatus | None


@dataclass(frozen=True, slots=True)
class PacsOverview:
    """What the PACS page shows: every configured site, and the pushes waiting for a retry."""

    sites: tuple[SitePacs, ...]
    push_failures: tuple[PushFailure, ...]


def check_endpoint(
    sf: SessionFactory,
    endpoint: PacsEndpoint,
    clients: Clients,
    *,
    actor: str,
    now: Callable[[], datetime],
    clock: Callable[[], float] = time.monotonic,
) -> PacsStatus:
    """Test ``endpoint`` and record the result as one ``pacs_checked`` audit entry.

    A failed test is a result, not an error: an unset secret, an unreachable server, refused
    credentials and an error status each come back as a :class:`PacsStatus` with ``ok`` False.

    Parameters
    ----------
    clients : callable
        Builds the endpoint's client; raises ``PacsConfigError`` when its secret is not set.
    clock : callable
        Monotonic seconds, for the latency.
    """
    started = clock()
    reachable, error = True, ""
    try:
        with clients(endpoint) as client:
            client.check()
    except PacsConfigError as exc:  # never asked: no answer, no latency
        reachable, error = False, str(exc)
    except PacsAuthError as exc:  # answered, but refused the credentials
        error = str(exc)
    except PacsUnreachableError as exc:
        reachable, error = False, str(exc)
    except PacsServerError as exc:  # answered with an error status or an unreadable body
        error = str(exc)
    latency = round((clock() - started) * 1000.0, _MS_DIGITS) if reachable else None
    status = PacsStatus(endpoint.site, endpoint.url, not error, reachable, latency, error, now(), actor)
    with sf.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.PACS_CHECKED,
            subject=endpoint.site,
            payload={
                "endpoint": status.url,
                "ok": status.ok,
                "reachable": status.reachable,
                "latency_ms": status.latency_ms,
                "error": status.error,
            },
            recorded_at=status.checked_at.isoformat(),
        )
    return status


def check_site_as(
    sf: SessionFactory,
    user: SignedInUser,
    settings: Settings,
    site: str,
    clients: Clients,
    *,
    now: Callable[[], datetime],
) -> PacsStatus:
    """Test ``site``'s PACS for a signed-in administrator (the page's "Test connection").

    Raises
    ------
    PermissionDeniedError
        ``user`` may not test connections, checked against the role stored now; nothing is sent.
    PacsConfigError
        ``site`` has no PACS configured.
    UnknownUserError
        The user no longer exists.
    """
    require(user, Permission.CHECK_PACS)
    endpoint = settings.pacs_endpoint(site)
    with sf() as session:
        stored = users.get_user(session, user.username)
    # The role is re-read before anything is sent: one withdrawn since sign-in takes effect now.
    require(SignedInUser(stored.username, parse_role(stored.role)), Permission.CHECK_PACS)
    return check_endpoint(sf, endpoint, clients, actor=user.username, now=now)


def last_status(sf: SessionFactory, endpoint: PacsEndpoint) -> PacsStatus | None:
    """The newest recorded test of ``endpoint``'s site against its current URL; None when never tested."""
    with sf() as session:
        entries, _ = search(
            session, AuditFilter(action=AuditAction.PACS_CHECKED.value, subject=endpoint.site), limit=1, offset=0
        )
    return _status(entries[0], endpoint) if entries else None


def overview(sf: SessionFactory, user: SignedInUser, settings: Settings) -> PacsOverview:
    """Every configured PACS with its last known test, and the studies whose last push failed.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not see PACS status.
    """
    require(user, Permission.VIEW_PACS)
    rows = tuple(SitePacs(e.site, e.url, e.auth, e.auto_push, last_status(sf, e)) for e in settings.pacs)
    return PacsOverview(rows, open_failures(sf, settings) if settings.pacs else ())


def _status(entry: StoredEntry, endpoint: PacsEndpoint) -> PacsStatus | None:
    """The test an entry records; None when it tested another URL (the configuration changed since)."""
    try:
        payload = json.loads(entry.payload_json)
    except ValueError:  # an edited row: `vigil audit verify` reports it; here it is no status
        return None
    if not isinstance(payload, dict) or payload.get("endpoint") != endpoint.url:
        return None
    latency = payload.get("latency_ms")
    return PacsStatus(
        site=entry.subject,
        url=endpoint.url,
        ok=payload.get("ok") is True,
        reachable=payload.get("reachable") is True,
        latency_ms=float(latency) if isinstance(latency, int | float) else None,
        error=str(payload.get("error", "")),
        checked_at=datetime.fromisoformat(entry.recorded_at),
        checked_by=entry.actor,
    )
