"""A CMIO who signs in through the identity provider signs a promotion there, in a real browser.

Chromium through Playwright against ``streamlit run serve.py`` with single sign-on (the provider
of ``tests/oidc_provider.py`` on loopback) and a challenger whose gate passed. The CMIO has no
Vigil password: the promote form sends her to the provider through the signature section
(``[auth.vigil-sign]``, ``prompt = "login"``), she enters her password there, comes back to the
waiting signature, and signs. The switch happens only then; the manifest records how she was
authenticated, and the chain verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.services import deployment
from core.services.audit import verify_ledger
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_oidc_browser import SSO_BUTTON, _entries, at_the_provider, served_with_sign_on
from tests.oidc_provider import Account, OidcProvider
from tests.ui.installation import TEST_MODEL_VERSION, Installation, copy_installation, shared_template
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

CARLA = Account(password="carla-at-the-idp", sub="2a6e9f10-carla", name="Dr Carla Mio", groups=("ai-quality",))


@pytest.fixture
def signing_app(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, OidcProvider, Installation]]:
    """An installation with single sign-on, a signature section, and a challenger ready to promote."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(inst)
    oidc = 'role_claim = "groups"\nroles = { "ai-quality" = "cmio" }\nsignature_provider = "vigil-sign"\n'
    with served_with_sign_on(
        inst, tmp_path, monkeypatch, accounts={"carla": CARLA}, oidc=oidc, signature_section="vigil-sign"
    ) as served:
        yield (*served, inst)


@pytest.mark.browser
def test_a_cmio_signed_in_through_the_provider_signs_a_promotion_by_entering_her_password_there(
    signing_app: tuple[str, OidcProvider, Installation],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, provider, inst = signing_app

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(url)
            page.get_by_role("button", name=SSO_BUTTON).click()
            at_the_provider(page, provider, "carla", CARLA.password)
            expect(page.get_by_text("Dr Carla Mio")).to_be_visible()

            # The promote form has no password field for her: it sends her to the provider.
            page.get_by_role("link", name="Deployment").click()
            expect(page.get_by_role("heading", name="Promote")).to_be_visible()
            expect(page.get_by_label("Your password")).to_have_count(0)
            page.get_by_role("button", name="Continue to sign at your organisation's sign-in").click()
            at_the_provider(page, provider, "carla", CARLA.password)

            # Back from the provider: taken to the waiting signature, and it signs.
            expect(page.get_by_role("heading", name="Your signature is waiting")).to_be_visible()
            expect(page.get_by_text("checked your password at")).to_be_visible()
            assert deployment.serving_now(inst.session_factory())[0].version == TEST_MODEL_VERSION  # type: ignore[union-attr]
            page.get_by_role("button", name="Sign and promote").click()
            expect(page.get_by_text(f"{CHALLENGER} now serves")).to_contain_text("signed by Dr Carla Mio")
            expect(page.get_by_role("heading", name="Your signature is waiting")).to_have_count(0)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "sso-signature-promoted.png"), full_page=True)
        finally:
            browser.close()

    # The sign-in went with Streamlit's prompt, the signature with prompt=login through its own section.
    assert provider.prompts == ["select_account", "login"]
    fleet, _ = deployment.serving_now(inst.session_factory())
    assert fleet is not None and fleet.version == CHALLENGER
    mine = [e for e in _entries(inst) if e.actor == CARLA.sub]
    actions = [e.action for e in mine]
    assert actions.count(AuditAction.LOGIN_SUCCEEDED) == 2  # signed in, then back from re-authenticating
    assert actions.index(AuditAction.SIGNATURE_REQUESTED) < actions.index(AuditAction.MODEL_PROMOTED)
    promoted = next(e for e in mine if e.action is AuditAction.MODEL_PROMOTED)
    how = promoted.payload["signature"]["authentication"]  # type: ignore[index]
    assert how["method"] == "identity provider re-authentication"  # type: ignore[index]
    assert (how["issuer"], how["subject"]) == (provider.issuer, CARLA.sub)  # type: ignore[index]
    # OIDC's auth_time is whole seconds, the request carries microseconds: compare at the provider's resolution.
    authenticated = datetime.fromisoformat(how["authenticated_at"])  # type: ignore[index]
    requested = datetime.fromisoformat(how["requested_at"]).replace(microsecond=0)  # type: ignore[index]
    assert authenticated >= requested
    assert promoted.payload["signature"]["printed_name"] == "Dr Carla Mio"  # type: ignore[index]
    assert verify_ledger(inst.session_factory()).ok
