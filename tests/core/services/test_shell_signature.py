"""A promotion signed from the shell by a CMIO the identity provider manages: the device authorization grant.

Against a real OpenID Connect provider on loopback (``tests/oidc_provider.py``): the command's
side asks for a device code and polls the token endpoint over HTTP, and "the person" is a thread
that opens the provider's ``/device`` page with the code the command showed and signs in there
(or refuses) over HTTP, as a browser would. The promotion switches only when the ID token
verifies and names the signer; whatever stops it withdraws the request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from core.audit.events import AuditAction
from core.errors import ConfigError, SignatureFailedError
from core.services import deployment, device_grant, oidc, shell_signature
from core.services.device_grant import DeviceGrant, IdentityProviderError, ProviderClient
from core.services.permissions import SignedInUser
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory
from tests.core.services.test_oidc import TABLE, claims
from tests.core.services.test_provider_signature import _actions, _fleet, _promotion_authentication
from tests.oidc_provider import Account, OidcProvider, running_provider
from tests.ui.installation import TEST_MODEL_VERSION, Installation, copy_installation
from tests.ui.installation import shared_template as _template
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

CMIO_SUB = "c7e1b2d4-0a9f-4c3e-8b5d-61f2a7e9d0c8"
VIGIL = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"
ACCOUNTS = {
    "carla": Account(password="carla-at-the-idp", sub=CMIO_SUB, name="Dr Carla Mio", groups=("ai-quality",)),
    "bob": Account(password="bob-at-the-idp", sub="b0b-0000", name="Bob Other", groups=("ai-quality",)),
}


@pytest.fixture
def inst(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Installation]:
    installation = copy_installation(_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(installation)
    yield installation


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with running_provider(client_id="vigil", client_secret="s3cret", redirect_uris=(), accounts=ACCOUNTS) as p:
        yield p


def _client(provider: OidcProvider, *, secret: str = "s3cret") -> ProviderClient:
    return ProviderClient("auth.vigil-sign", "vigil", secret, f"{provider.issuer}/.well-known/openid-configuration")


def _cmio(sf: SessionFactory, provider: OidcProvider) -> SignedInUser:
    """The CMIO's first single sign-on through this provider: the account it manages."""
    first = claims(iss=provider.issuer, sub=CMIO_SUB, name="Dr Carla Mio", groups=["ai-quality"])
    return oidc.sign_in(sf, first, oidc.parse_policy(TABLE), now=lambda: datetime.now(UTC)).user


class Person:
    """Someone at a browser who, shown the code, signs in at the provider's ``/device`` page (or refuses)."""

    def __init__(self, username: str | None, password: str = "", *, refuse: bool = False) -> None:
        self.username, self.password, self.refuse = username, password, refuse
        self.shown: list[DeviceGrant] = []
        self.pages: list[str] = []
        self.thread: threading.Thread | None = None

    def __call__(self, grant: DeviceGrant) -> None:
        self.shown.append(grant)
        if self.username is not None:
            self.thread = threading.Thread(target=self._sign_in, args=(grant,))
            self.thread.start()

    def _sign_in(self, grant: DeviceGrant) -> None:
        assert grant.verification_uri_complete is not None
        requests.get(grant.verification_uri_complete, timeout=10).raise_for_status()  # the page shows the code
        form = {"user_code": grant.user_code, "username": self.username, "password": self.password}
        form["action"] = "deny" if self.refuse else "allow"
        self.pages.append(requests.post(grant.verification_uri, data=form, timeout=10).text)


def _promote(
    inst: Installation, provider: OidcProvider, person: Person, client: ProviderClient | None = None
) -> tuple[DeploymentRecord, ...]:
    try:
        return shell_signature.promote_signed_from_shell(
            inst.session_factory(),
            CMIO_SUB,
            CHALLENGER,
            client or _client(provider),
            show=person,
            models_dir=inst.home / "models",
            now=lambda: datetime.now(UTC),
        )
    finally:
        if person.thread is not None:
            person.thread.join(timeout=30)


def test_the_signer_enters_the_code_at_the_provider_and_the_promotion_is_signed(
    inst: Installation, provider: OidcProvider
) -> None:
    # Prepare
    sf = inst.session_factory()
    user = _cmio(sf, provider)
    person = Person("carla", ACCOUNTS["carla"].password)

    # Execute
    (record,) = _promote(inst, provider, person)

    # Assert: the challenger serves, signed by the CMIO; the manifest says the provider vouched for her
    assert (record.version, record.signer, record.signer_name) == (CHALLENGER, CMIO_SUB, "Dr Carla Mio")
    assert _fleet(sf) == CHALLENGER
    assert len(person.shown) == 1 and "Signed in" in person.pages[0]
    how = _promotion_authentication(sf)
    assert how["method"] == "identity provider re-authentication"
    assert (how["issuer"], how["subject"]) == (provider.issuer, CMIO_SUB)
    assert _actions(sf)[-2:] == [AuditAction.SIGNATURE_REQUESTED.value, AuditAction.MODEL_PROMOTED.value]
    assert deployment.pending_signature_as(sf, user, now=datetime.now(UTC)) is None
    # the device code went through the provider's token endpoint, verified with its published keys
    assert {"/device_authorization", "/device", "/token", "/jwks"} <= set(provider.seen)


@pytest.mark.parametrize(
    ("username", "refuse", "error", "reason"),
    [
        ("carla", True, IdentityProviderError, "refused at the provider"),
        ("bob", False, SignatureFailedError, "re-authenticated 'b0b-0000', not the signer"),
    ],
    ids=["the person refuses", "another person signs in with the code"],
)
def test_a_refusal_or_another_person_switches_nothing_and_withdraws_the_request(  # noqa: PLR0913 - fixtures and one case
    inst: Installation, provider: OidcProvider, username: str, refuse: bool, error: type[Exception], reason: str
) -> None:
    # Prepare
    sf = inst.session_factory()
    user = _cmio(sf, provider)

    # Execute
    with pytest.raises(error, match=reason):
        _promote(inst, provider, Person(username, ACCOUNTS[username].password, refuse=refuse))

    # Assert: nothing switched; requested, (refused,) then withdrawn in the ledger; nothing waits
    assert _fleet(sf) == TEST_MODEL_VERSION
    actions = _actions(sf)
    assert actions[-1] == AuditAction.SIGNATURE_WITHDRAWN.value
    assert AuditAction.SIGNATURE_REQUESTED.value in actions
    assert (AuditAction.SIGNATURE_FAILED.value in actions) is (error is SignatureFailedError)
    assert deployment.pending_signature_as(sf, user, now=datetime.now(UTC)) is None


def test_a_code_nobody_signs_in_with_expires_and_withdraws_the_request(
    inst: Installation, provider: OidcProvider
) -> None:
    # Prepare: codes that live two seconds
    sf = inst.session_factory()
    _cmio(sf, provider)
    provider.device_lifetime_s = 2.0

    # Execute / Assert
    with pytest.raises(IdentityProviderError, match="expired before anyone signed in"):
        _promote(inst, provider, Person(None))
    assert _fleet(sf) == TEST_MODEL_VERSION
    assert _actions(sf)[-1] == AuditAction.SIGNATURE_WITHDRAWN.value


def test_a_provider_without_device_authorization_is_named_before_anything_is_requested(
    inst: Installation, provider: OidcProvider
) -> None:
    # Prepare
    sf = inst.session_factory()
    _cmio(sf, provider)
    provider.device_flow = False
    before = _actions(sf)

    # Execute / Assert: no request was kept, nothing audited
    with pytest.raises(IdentityProviderError, match="offers no device authorization .*Deployment page"):
        _promote(inst, provider, Person("carla", ACCOUNTS["carla"].password))
    assert _actions(sf) == before


def test_plain_http_to_another_machine_is_refused_before_the_secret_is_sent(provider: OidcProvider) -> None:
    # A discovery document far away over http, and one on loopback that names far-away http endpoints
    far = ProviderClient("auth", "vigil", "s3cret", "http://idp.hospital.example/.well-known/openid-configuration")
    with requests.Session() as http:
        with pytest.raises(IdentityProviderError, match="refusing http://idp.hospital.example/.*use https"):
            device_grant.discover(far, http=http)
        client = _client(provider)
        provider.issuer = "http://idp.hospital.example"  # what its discovery document now names
        with pytest.raises(IdentityProviderError, match="device_authorization for the client secret: use https"):
            device_grant.discover(client, http=http)
    assert provider.seen == ["/.well-known/openid-configuration"]  # nothing was sent anywhere else


def test_a_wrong_client_secret_is_refused_by_the_provider_and_withdraws_the_request(
    inst: Installation, provider: OidcProvider
) -> None:
    sf = inst.session_factory()
    _cmio(sf, provider)
    with pytest.raises(IdentityProviderError, match="HTTP 401"):
        _promote(inst, provider, Person("carla", ACCOUNTS["carla"].password), client=_client(provider, secret="no"))
    assert _actions(sf)[-1] == AuditAction.SIGNATURE_WITHDRAWN.value


def test_an_id_token_from_another_key_or_for_another_client_does_not_verify(provider: OidcProvider) -> None:
    # Prepare: a token this provider signed, and one another provider (another key) signed for the same issuer
    client = _client(provider)
    with requests.Session() as http:
        endpoints = device_grant.discover(client, http=http)
        good = provider.id_token("carla", None)
        with running_provider(client_id="vigil", client_secret="x", redirect_uris=(), accounts=ACCOUNTS) as other:
            other.issuer = provider.issuer
            forged = other.id_token("carla", None)

        # Execute / Assert
        proof = device_grant.verify_id_token(good, client, endpoints, http=http)
        assert (proof.issuer, proof.subject) == (provider.issuer, CMIO_SUB) and proof.authenticated_at is not None
        with pytest.raises(IdentityProviderError, match="does not verify"):
            device_grant.verify_id_token(forged, client, endpoints, http=http)
        elsewhere = ProviderClient(client.section, "another-client", client.client_secret, client.metadata_url)
        with pytest.raises(IdentityProviderError, match="does not verify.*aud"):
            device_grant.verify_id_token(good, elsewhere, endpoints, http=http)


def test_the_client_is_read_from_the_named_secrets_section_and_a_bad_one_is_named(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        '[auth]\nclient_id = "vigil"\nclient_secret = "a"\nserver_metadata_url = "https://idp/x"\n'
        '[auth.vigil-sign]\nclient_id = "vigil-sign"\nclient_secret = ""\nserver_metadata_url = "https://idp/y"\n'
    )
    assert device_grant.read_client(secrets, None) == ProviderClient("auth", "vigil", "a", "https://idp/x")
    with pytest.raises(ConfigError, match=r"\[auth.vigil-sign\] client_secret .* got a str"):
        device_grant.read_client(secrets, "vigil-sign")
    with pytest.raises(ConfigError, match=r"no \[auth.other\] section"):
        device_grant.read_client(secrets, "other")
    with pytest.raises(ConfigError, match="no Streamlit secrets at .*missing.toml"):
        device_grant.read_client(tmp_path / "missing.toml", None)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="a named pipe .*not a regular file"):  # refused, not waited on
        device_grant.read_client(fifo, None)
    with pytest.raises(ConfigError, match="a character device"):
        device_grant.read_client(Path("/dev/zero"), None)


def _start_command(
    inst: Installation, provider: OidcProvider, tmp_path: Path, *, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[str], str, str]:
    """``vigil deploy promote`` for the CMIO, as a hospital configures sign-on, until it shows the code.

    Returns the running command, the address it shows and the code. ``sigint_ignored`` starts it
    as a script's background job is started: with SIGINT inherited as ignored.
    """
    _cmio(inst.session_factory(), provider)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        f'[auth.vigil-sign]\nclient_id = "vigil"\nclient_secret = "s3cret"\n'
        f'server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"\n'
    )
    config = tmp_path / "vigil.toml"
    config.write_text(
        '[vigil.oidc]\nrole_claim = "groups"\nsignature_provider = "vigil-sign"\n'
        '[vigil.oidc.roles]\n"ai-quality" = "cmio"\n'
    )
    env = os.environ | inst.env | {"VIGIL_CONFIG": str(config)}
    argv = ["deploy", "promote", CHALLENGER, "--signer", CMIO_SUB, "--secrets", str(secrets), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-c", VIGIL, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,  # noqa: PLW1509 - no threads start it
    )
    assert proc.stderr is not None
    said = ""
    while (found := re.search(r"open (\S+) in a browser, enter the code (\S+) ", said)) is None:
        line = proc.stderr.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"the command ended without showing a code: {said}")
        said += line
    page, code = found.groups()
    return proc, page, code


def test_vigil_deploy_promote_shows_the_code_and_switches_once_the_signer_signs_in(
    inst: Installation, provider: OidcProvider, tmp_path: Path
) -> None:
    # Prepare / Execute: the command shows where to go and the code; the signer signs in there
    proc, page, code = _start_command(inst, provider, tmp_path)
    with proc:
        answer = requests.post(
            f"{provider.issuer}/device",
            data={"user_code": code, "username": "carla", "password": ACCOUNTS["carla"].password, "action": "allow"},
            timeout=10,
        )
        out, err = proc.communicate(timeout=120)

    # Assert: the address carries the code; the switch is the command's JSON
    assert code in page and "Signed in" in answer.text
    assert proc.returncode == 0, err
    (switched,) = json.loads(out)["deployments"]
    assert (switched["model_version"], switched["signer"], switched["switched_by"]) == (CHALLENGER, CMIO_SUB, CMIO_SUB)
    assert _fleet(inst.session_factory()) == CHALLENGER


def test_ctrl_c_while_the_command_waits_withdraws_the_request_and_switches_nothing(
    inst: Installation, provider: OidcProvider, tmp_path: Path
) -> None:
    # Prepare: started as a script's background job is, with SIGINT inherited as ignored
    proc, _, _ = _start_command(inst, provider, tmp_path, sigint_ignored=True)

    # Execute: the signer changes their mind at the shell
    with proc:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # not left polling the provider until its code expires
            raise

    # Assert
    assert proc.returncode == 130 and "interrupted" in err, err
    sf = inst.session_factory()
    assert _actions(sf)[-2:] == [AuditAction.SIGNATURE_REQUESTED.value, AuditAction.SIGNATURE_WITHDRAWN.value]
    assert _fleet(sf) == TEST_MODEL_VERSION
