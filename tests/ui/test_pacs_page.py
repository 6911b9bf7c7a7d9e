"""The PACS page, headless (AppTest), with the site's PACS a real Orthanc: who sees what, and the admin's test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.audit.events import AuditAction, AuditEntry
from core.errors import PermissionDeniedError
from core.services import pacs_status, sites
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from tests.child_server import free_port
from tests.pacs_server import OrthancServer, orthanc
from tests.ui.conftest import USERS, texts
from tests.ui.installation import Installation, clock
from ui import pacs as pacs_ui

__all__ = ["orthanc"]

App = Callable[[Role | None], AppTest]
PAGE = "pages/pacs.py"
SITE = "benchmark"
SECRET_ENV = "VIGIL_TEST_PAGE_PACS_PASSWORD"
BUTTON = f"pacs-test-{SITE}"


@pytest.fixture
def configured(
    installation: Installation, orthanc: OrthancServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> OrthancServer:
    """The installation's benchmark site has the test Orthanc as its PACS, with auto-push on."""
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""[pacs.{SITE}]
url = "{orthanc.dicomweb_url}"
auth = "basic"
username = "{orthanc.username}"
password_env = "{SECRET_ENV}"
max_attempts = 2
auto_push = true
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setenv(SECRET_ENV, orthanc.password)
    return orthanc


def _open(app: App, role: Role) -> AppTest:
    at = app(role)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _checks(inst: Installation) -> list[AuditEntry]:
    with inst.session_factory()() as session:
        return [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_CHECKED]


def test_an_admin_tests_the_connection_and_sees_the_stored_result(
    app: App, configured: OrthancServer, installation: Installation
) -> None:
    # Prepare
    at = _open(app, Role.ADMIN)
    table = at.dataframe[0].value
    assert list(table["site"]) == [SITE] and list(table["endpoint"]) == [configured.dicomweb_url]
    assert list(table["auto-push"]) == ["on"] and list(table["last test"]) == ["never tested"]

    # Execute
    at.button(key=BUTTON).click().run()

    # Assert: a confirmation, the table from the store, one audit entry by the admin, no password shown
    assert not at.exception, at.exception
    assert "accepted the credentials" in " ".join(s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["last test"]) == ["OK"] and list(table["by"]) == [USERS[Role.ADMIN]]
    (entry,) = _checks(installation)
    assert entry.actor == USERS[Role.ADMIN] and entry.subject == SITE
    assert configured.password not in texts(at)


def test_a_failed_test_is_shown_as_a_warning(
    app: App, configured: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the secret is wrong in the app's environment
    monkeypatch.setenv(SECRET_ENV, "not-the-password")
    at = _open(app, Role.ADMIN)

    # Execute
    at.button(key=BUTTON).click().run()

    # Assert
    assert "credentials refused" in " ".join(w.value for w in at.warning)
    assert list(at.dataframe[0].value["last test"]) == ["FAILED"]
    assert "not-the-password" not in texts(at)


@pytest.mark.parametrize("role", [Role.CMIO, Role.ML_ENGINEER])
def test_a_non_admin_sees_the_status_but_no_test_button_and_cannot_test(
    app: App, configured: OrthancServer, installation: Installation, role: Role
) -> None:
    # Execute
    at = _open(app, role)

    # Assert: the table, no button; the service refuses the action itself
    assert list(at.dataframe[0].value["site"]) == [SITE]
    assert BUTTON not in {b.key for b in at.button}
    user = SignedInUser(USERS[role], role)
    with pytest.raises(PermissionDeniedError):
        pacs_status.check_site_as(
            installation.session_factory(), user, installation.settings, SITE, pacs_ui.clients, now=clock
        )
    assert _checks(installation) == []


def test_a_reader_has_no_pacs_page(app: App, configured: OrthancServer) -> None:
    # Execute
    at = app(Role.RADIOLOGIST)

    # Assert: the navigation does not offer the page to the role
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)


# --- auto-push after a verdict on the case review page ------------------------------------------


def _every_site_pushes_to(inst: Installation, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = "".join(
        f'[pacs.{s.name}]\nurl = "{url}"\nauth = "basic"\nusername = "u"\npassword_env = "{SECRET_ENV}"\n'
        "max_attempts = 1\nauto_push = true\n"
        for s in sites.list_sites(inst.session_factory())
    )
    (tmp_path / "push.toml").write_text(tables, encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "push.toml"))
    monkeypatch.setenv(SECRET_ENV, "x")


def _save_a_verdict(app: App) -> AppTest:
    at = app(Role.RADIOLOGIST)
    at.switch_page("pages/worklist.py").run()
    next(b for b in at.button if b.label == "Open case").click().run()
    at.switch_page("pages/case_review.py").run()
    radios = {r.label: r for r in at.radio}
    radios["Do you agree with the model's call?"].set_value("Agree")
    radios["Nodule (your own finding)"].set_value("Absent")
    radios["Confidence (1 = guess, 5 = certain)"].set_value(4)
    radios["Was the explanation (heat map) helpful?"].set_value("Partly")
    next(b for b in at.button if b.label == "Save feedback").click().run()
    assert not at.exception, at.exception
    return at


def test_a_failed_push_after_a_verdict_is_a_warning_and_the_verdict_is_saved(
    app: App, installation: Installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: every site's PACS is down (nothing listens on its port)
    _every_site_pushes_to(installation, f"http://127.0.0.1:{free_port()}/dicom-web", tmp_path, monkeypatch)

    # Execute
    at = _save_a_verdict(app)

    # Assert: the verdict's confirmation, and a warning naming the failure and the retry command
    assert any(s.value.startswith("Feedback saved as #") for s in at.success)
    warning = " ".join(w.value for w in at.warning)
    assert "Your verdict is saved" in warning and "unreachable" in warning and "vigil pacs push" in warning
    with installation.session_factory()() as session:
        actions = [e.action for e in audit_log.iter_entries(session)]
    assert actions.index(AuditAction.FEEDBACK_RECORDED) < actions.index(AuditAction.PACS_PUSH_FAILED)
    page = _open(app, Role.ADMIN)  # the PACS page lists it for a retry
    (waiting,) = page.dataframe[1].value.to_dict("records")
    assert waiting["retry"] == f"vigil pacs push {waiting['study']}" and "unreachable" in waiting["error"]
