"""Single sign-on in a real browser: ``st.login`` against a real OpenID Connect provider on loopback.

Chromium (the distribution's) through Playwright against ``streamlit run serve.py``, configured
like a hospital: Streamlit's ``[auth]`` secrets name the provider (``tests/oidc_provider.py``:
discovery, a login form, the code exchange with PKCE, RS256 ID tokens, JWKS, logout), and
``[vigil.oidc]`` maps the ``groups`` claim to Vigil roles. A radiologist signs in through the
provider and lands on Home with the radiologist's pages and their full name; sign-out ends the
provider's session too; a person whose groups map to no role is refused with the reason. The
audit rows of each are checked, and the chain verifies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.audit.events import AuditAction, AuditEntry
from core.services.audit import verify_ledger
from core.store import audit_log, users
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.oidc_provider import Account, OidcProvider, running_provider
from tests.ui.installation import Installation, copy_installation, shared_template

if TYPE_CHECKING:
    from playwright.sync_api import Page

CLIENT_ID = "vigil-test"
RITA = Account(password="rita-at-the-idp", sub="5f0c8a1e-rita", name="Rita Reader", groups=("staff", "rad-readers"))
UMA = Account(password="uma-at-the-idp", sub="9b2d7c4f-uma", name="Uma Unmapped", groups=("staff",))
SSO_BUTTON = "Sign in with your organisation's account"


@contextmanager
def served_with_sign_on(  # noqa: PLR0913 - keyword-only; each is one part of the set-up
    inst: Installation,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    accounts: Mapping[str, Account],
    oidc: str,
    signature_section: str | None = None,
) -> Iterator[tuple[str, OidcProvider]]:
    """Serve ``inst`` with single sign-on through a loopback provider of its own: (URL, provider).

    ``oidc`` is the body of ``[vigil.oidc]``; ``signature_section`` names an ``[auth.NAME]``
    section for the same client that asks for the password every time (``prompt = "login"``).
    """
    client_secret = secrets.token_urlsafe(24)
    with running_provider(
        client_id=CLIENT_ID, client_secret=client_secret, redirect_uris=(), accounts=accounts
    ) as provider:
        client = (
            f'client_id = "{CLIENT_ID}"\n'
            f'client_secret = "{client_secret}"\n'
            f'server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"\n'
        )
        signing = ""
        if signature_section is not None:
            signing = f'\n[auth.{signature_section}]\n{client}client_kwargs = {{ prompt = "login" }}\n'
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(32)}"\n{client}{signing}'
        )
        config = tmp_path / "vigil.toml"
        config.write_text(f"[vigil.oidc]\n{oidc}")
        monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets_file))
        with serve(inst, tmp_path / "streamlit.log", config=config) as url:
            provider.redirect_uris = (f"{url}/oauth2callback",)
            yield url, provider


@pytest.fixture
def sso_app(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, OidcProvider, Installation]]:
    """A private installation served with single sign-on through a provider of its own."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    oidc = 'role_claim = "groups"\nroles = { "rad-readers" = "radiologist" }\n'
    with served_with_sign_on(inst, tmp_path, monkeypatch, accounts={"rita": RITA, "uma": UMA}, oidc=oidc) as served:
        yield (*served, inst)


def at_the_provider(page: Page, provider: OidcProvider, username: str, password: str) -> None:
    """Fill in the provider's login form once the browser is there, and continue."""
    page.wait_for_url(f"{provider.issuer}/authorize?*")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()


def _wait_for(condition: Callable[[], bool], problem: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(problem)
        time.sleep(0.1)


def _entries(inst: Installation) -> list[AuditEntry]:
    with inst.session_factory()() as session:
        return list(audit_log.iter_entries(session))


@pytest.mark.browser
def test_a_radiologist_signs_in_through_the_provider_and_an_unmapped_person_is_refused(
    sso_app: tuple[str, OidcProvider, Installation],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, provider, inst = sso_app
    before = len(_entries(inst))

    def through_provider(page: Page, username: str, password: str) -> None:
        page.get_by_role("button", name=SSO_BUTTON).click()
        at_the_provider(page, provider, username, password)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)

            # The sign-in screen offers the provider and, by default, the local form.
            page.goto(url)
            expect(page.get_by_role("button", name=SSO_BUTTON)).to_be_visible()
            expect(page.get_by_role("textbox", name="Username")).to_be_visible()

            # A radiologist: through the provider's form and back, on Home with the reader's pages.
            through_provider(page, "rita", RITA.password)
            expect(page.get_by_text("Rita Reader")).to_be_visible()
            expect(page.get_by_role("link", name="Worklist")).to_be_visible()
            expect(page.get_by_role("link", name="Audit")).to_have_count(0)
            expect(page.get_by_role("heading", name="Vigil")).to_be_visible()  # Home has drawn
            assert {"/authorize", "/token", "/jwks"} <= set(provider.seen)  # the code was exchanged server-side
            assert provider.pkce_verified == 1  # with a PKCE (S256) verifier
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "oidc-signed-in.png"), full_page=True)
            # Her password is the provider's business: My account offers no password form.
            page.get_by_role("link", name="My account").click()
            expect(page.get_by_text("change its password there")).to_be_visible()
            expect(page.get_by_text("Current password")).to_have_count(0)

            # Sign-out ends the provider's session too, and shows the sign-in screen again.
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name=SSO_BUTTON)).to_be_visible()
            _wait_for(lambda: "/logout" in provider.seen, "the provider's end_session_endpoint was not called")

            # A person whose groups map to no Vigil role: refused, with the reason.
            through_provider(page, "uma", UMA.password)
            expect(page.get_by_text("Your organisation's account was refused")).to_be_visible()
            expect(page.get_by_text("maps to a Vigil role")).to_be_visible()
            expect(page.get_by_role("link", name="Worklist")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "oidc-refused.png"), full_page=True)
        finally:
            browser.close()

    # The audit rows: Rita's account created and her sign-in; Uma's refusal; nothing else of either.
    new = _entries(inst)[before:]
    mine = [(e.action, e.subject, e.payload.get("method")) for e in new if e.subject in (RITA.sub, UMA.sub)]
    assert mine == [
        (AuditAction.USER_CREATED, RITA.sub, "oidc"),
        (AuditAction.LOGIN_SUCCEEDED, RITA.sub, "oidc"),
        (AuditAction.LOGIN_FAILED, UMA.sub, "oidc"),
    ]
    signed_in = next(e for e in new if e.action is AuditAction.LOGIN_SUCCEEDED)
    assert signed_in.payload["role"] == "radiologist" and signed_in.payload["full_name"] == "Rita Reader"
    assert signed_in.payload["issuer"] == provider.issuer
    refused = next(e for e in new if e.action is AuditAction.LOGIN_FAILED)
    assert refused.payload["groups"] == ["staff"]
    with inst.session_factory()() as session:
        accounts = {u.username: u for u in users.list_users(session)}
        assert accounts[RITA.sub].role == "radiologist" and accounts[RITA.sub].full_name == "Rita Reader"
        assert UMA.sub not in accounts
    assert verify_ledger(inst.session_factory()).ok
