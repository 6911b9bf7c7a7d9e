"""The sign-in screen offers what ``[vigil.oidc]`` and Streamlit's ``[auth]`` secrets allow (AppTest).

The flow through a real provider is ``tests/e2e/test_oidc_browser.py``; these check the choices
of the screen itself, which need no browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import APP, texts
from tests.ui.installation import Installation

SSO_BUTTON = "Sign in with your organisation's account"
AUTH_SECRETS = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a-long-enough-secret-for-the-test",
    "client_id": "vigil",
    "client_secret": "not-a-real-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


def _screen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, oidc: str | None, *, secrets: bool) -> AppTest:
    if oidc is not None:
        config = tmp_path / "vigil.toml"
        config.write_text(f"[vigil.oidc]\n{oidc}\n")
        monkeypatch.setenv("VIGIL_CONFIG", str(config))
    at = AppTest.from_file(APP, default_timeout=60)
    if secrets:
        at.secrets["auth"] = AUTH_SECRETS
    return at.run()


def _labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


ROLES = 'role_claim = "groups"\nroles = { "rad-readers" = "radiologist" }'


def test_without_single_sign_on_only_the_password_form_is_offered(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _screen(monkeypatch, tmp_path, None, secrets=False)
    assert not at.exception
    assert SSO_BUTTON not in _labels(at)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_single_sign_on_adds_the_provider_s_button_beside_the_password_form(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _screen(monkeypatch, tmp_path, ROLES, secrets=True)
    assert not at.exception
    assert SSO_BUTTON in _labels(at)
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    # The mapping stays on the server: nothing of it reaches the page.
    assert "rad-readers" not in texts(at)


def test_an_administrator_can_turn_the_password_form_off(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _screen(monkeypatch, tmp_path, f"{ROLES}\nlocal_sign_in = false", secrets=True)
    assert not at.exception
    assert SSO_BUTTON in _labels(at)
    assert len(at.text_input) == 0


def test_missing_auth_secrets_are_named_and_the_password_form_stays(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _screen(monkeypatch, tmp_path, ROLES, secrets=False)
    assert not at.exception
    assert SSO_BUTTON not in _labels(at)
    assert any("secrets have no [auth] section" in e.value for e in at.error)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_a_broken_sign_on_table_is_named_and_nobody_is_let_in(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Fail closed: the administrator may have turned the password form off in the same table.
    broken = 'role_claim = "groups"\nroles = { "rad-readers" = "radiolgist" }\nlocal_sign_in = false'
    at = _screen(monkeypatch, tmp_path, broken, secrets=True)
    assert not at.exception
    assert any('oidc.roles."rad-readers" names an unknown role' in e.value for e in at.error)
    assert SSO_BUTTON not in _labels(at)
    assert len(at.text_input) == 0


def test_a_sign_on_streamlit_cannot_start_is_reported_not_raised(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: Streamlit checks the [auth] keys (client_id, ...) only when asked to sign in, and
    # it reads them from secrets.toml, which AppTest's secrets are not, so st.login refuses here.
    at = _screen(monkeypatch, tmp_path, ROLES, secrets=True)

    # Execute
    next(b for b in at.button if b.label == SSO_BUTTON).click().run()

    # Assert: Streamlit's reason on the screen, not a traceback
    assert not at.exception
    assert any(e.value.startswith("Single sign-on cannot start: ") for e in at.error)
