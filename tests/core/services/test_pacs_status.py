"""Testing a site's PACS connection against a real Orthanc: the result, its audit entry, the status read back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.audit.events import AuditAction, AuditEntry
from core.config import PacsEndpoint
from core.errors import PermissionDeniedError
from core.imaging.dicomweb import DicomwebClient
from core.services import auth, pacs, pacs_status
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.engine import SessionFactory
from tests.child_server import free_port
from tests.core.services.conftest import Env
from tests.pacs_server import OrthancServer, orthanc

__all__ = ["orthanc"]

SITE = "benchmark"
SECRET_ENV = "PACS_PASSWORD"
ADMIN = SignedInUser("pacs.admin", Role.ADMIN)


def _endpoint(server: OrthancServer, **changes: object) -> PacsEndpoint:
    base = PacsEndpoint(SITE, server.dicomweb_url, "basic", server.username, SECRET_ENV, timeout_s=5, max_attempts=2)
    return replace(base, **changes)  # type: ignore[arg-type]


def _clients(secrets: dict[str, str]):  # type: ignore[no-untyped-def]
    def make(endpoint: PacsEndpoint) -> DicomwebClient:
        return pacs.client_for(endpoint, endpoint.secret(secrets), sleep=lambda _s: None)

    return make


def _checks(sf: SessionFactory) -> list[AuditEntry]:
    with sf() as session:
        return [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_CHECKED]


def test_a_working_pacs_is_ok_with_its_latency_and_one_audit_entry(env: Env, orthanc: OrthancServer) -> None:
    # Prepare
    endpoint = _endpoint(orthanc)

    # Execute
    status = pacs_status.check_endpoint(
        env.sf, endpoint, _clients({SECRET_ENV: orthanc.password}), actor="t", now=env.now
    )

    # Assert: the result, and the one entry that stores it (without the password)
    assert (status.site, status.url, status.ok, status.reachable, status.error) == (
        SITE,
        orthanc.dicomweb_url,
        True,
        True,
        "",
    )
    assert status.latency_ms is not None and status.latency_ms >= 0.0
    (entry,) = _checks(env.sf)
    assert entry.subject == SITE and entry.payload["ok"] is True and entry.payload["endpoint"] == orthanc.dicomweb_url
    assert orthanc.password not in str(entry.payload)
    assert pacs_status.last_status(env.sf, endpoint) == status


def test_refused_credentials_are_a_failed_check_that_shows_no_secret(env: Env, orthanc: OrthancServer) -> None:
    # Execute
    status = pacs_status.check_endpoint(
        env.sf, _endpoint(orthanc), _clients({SECRET_ENV: "wrong-password"}), actor="t", now=env.now
    )

    # Assert: the server answered (reachable) and refused; the password is in no message
    assert (status.ok, status.reachable) == (False, True)
    assert "credentials refused" in status.error and orthanc.dicomweb_url in status.error
    (entry,) = _checks(env.sf)
    assert "wrong-password" not in str(entry.payload) and entry.payload["error"] == status.error


def test_an_unreachable_pacs_and_an_unset_secret_are_reported_not_raised(env: Env, orthanc: OrthancServer) -> None:
    # Prepare: nothing listens on the first endpoint's port; the second's secret is not set
    dead = _endpoint(orthanc, url=f"http://127.0.0.1:{free_port()}/dicom-web")
    live = _endpoint(orthanc)

    # Execute
    down = pacs_status.check_endpoint(env.sf, dead, _clients({SECRET_ENV: "x"}), actor="t", now=env.now)
    unset = pacs_status.check_endpoint(env.sf, live, _clients({}), actor="t", now=env.now)

    # Assert
    assert (down.ok, down.reachable, down.latency_ms) == (False, False, None)
    assert "unreachable after 2 attempt(s)" in down.error
    assert (unset.ok, unset.reachable, unset.latency_ms) == (False, False, None)
    assert SECRET_ENV in unset.error
    assert len(_checks(env.sf)) == 2


def test_only_an_administrator_may_test_and_the_page_reads_the_last_test(env: Env, orthanc: OrthancServer) -> None:
    # Prepare: an administrator account, and a configuration with the site's PACS (auto-push on)
    auth.add_user(env.sf, ADMIN.username, "admin", "a long enough password", actor="t", now=env.now)
    settings = replace(env.settings, pacs=(_endpoint(orthanc, auto_push=True),))
    clients = _clients({SECRET_ENV: orthanc.password})
    before = pacs_status.overview(env.sf, ADMIN, settings)

    # Execute
    with pytest.raises(PermissionDeniedError):
        pacs_status.check_site_as(env.sf, SignedInUser("r", Role.RADIOLOGIST), settings, SITE, clients, now=env.now)
    status = pacs_status.check_site_as(env.sf, ADMIN, settings, SITE, clients, now=env.now)
    after = pacs_status.overview(env.sf, SignedInUser("cmio", Role.CMIO), settings)

    # Assert: the refusal left no entry; the page's row shows the administrator's test
    (row,) = after.sites
    assert before.sites[0].last_check is None
    assert (row.site, row.url, row.auth, row.auto_push) == (SITE, orthanc.dicomweb_url, "basic", True)
    assert row.last_check == status and status.checked_by == ADMIN.username
    assert len(_checks(env.sf)) == 1
    with pytest.raises(PermissionDeniedError):
        pacs_status.overview(env.sf, SignedInUser("r", Role.RADIOLOGIST), settings)


def test_a_test_of_an_earlier_url_is_not_shown_as_the_current_status(env: Env, orthanc: OrthancServer) -> None:
    # Prepare: a test recorded, then the site's PACS moved
    endpoint = _endpoint(orthanc)
    pacs_status.check_endpoint(env.sf, endpoint, _clients({SECRET_ENV: orthanc.password}), actor="t", now=env.now)

    # Execute
    moved = pacs_status.last_status(env.sf, replace(endpoint, url="https://pacs.example.org/dicom-web"))

    # Assert
    assert moved is None
    assert pacs_status.last_status(env.sf, endpoint) is not None
