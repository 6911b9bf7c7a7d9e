"""A promotion signed by a CMIO who signs in through the identity provider: re-authentication there.

On a small installation with a challenger whose gate passed: the CMIO's account is made by a
single sign-on (no Vigil password), asks to sign, and the promotion completes only with an ID
token from the account's issuer, for the signer, that authenticated after the request and
recently. Every refusal is a ``signature_failed`` entry and switches nothing; one
re-authentication signs one act once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.errors import BadInputError, DeploymentRefusedError, PermissionDeniedError, SignatureFailedError
from core.services import auth, deployment, oidc, provider_signature
from core.services.permissions import Role, SignedInUser
from core.services.provider_signature import ProviderReauthentication
from core.store import audit_log
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory
from tests.core.services.test_oidc import ISSUER, TABLE, claims
from tests.ui.installation import TEST_MODEL_VERSION, Installation, copy_installation
from tests.ui.installation import shared_template as _template
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

SUB = "c7e1b2d4-0a9f-4c3e-8b5d-61f2a7e9d0c8"


class Clock:
    """A settable clock, so the windows of the signature can be crossed without waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def inst(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Installation]:
    installation = copy_installation(_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(installation)
    yield installation


def _cmio(sf: SessionFactory, clock: Clock) -> SignedInUser:
    """The CMIO's first single sign-on: the account the provider manages."""
    cmio_claims = claims(sub=SUB, name="Dr Carla Mio", groups=["ai-quality"])
    return oidc.sign_in(sf, cmio_claims, oidc.parse_policy(TABLE), now=clock).user


def _proof(at: datetime | None, *, issuer: str = ISSUER, subject: str = SUB) -> ProviderReauthentication:
    return ProviderReauthentication(issuer, subject, at)


def _request(inst: Installation, user: SignedInUser, clock: Clock, *sites: str) -> None:
    deployment.request_promotion_signature_as(
        inst.session_factory(), user, CHALLENGER, models_dir=inst.home / "models", now=clock, sites=sites
    )


def _complete(
    inst: Installation, user: SignedInUser, proof: ProviderReauthentication, clock: Clock
) -> tuple[DeploymentRecord, ...]:
    return deployment.promote_signed_at_provider_as(
        inst.session_factory(), user, proof, models_dir=inst.home / "models", now=clock
    )


def _actions(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return [str(e.action) for e in audit_log.iter_entries(session)]


def _promotion_authentication(sf: SessionFactory) -> Mapping[str, object]:
    """The ``authentication`` of the signed manifest in the newest entry, which must be a promotion."""
    with sf() as session:
        entry = audit_log.last_entry(session)
    assert entry is not None and str(entry.action) == AuditAction.MODEL_PROMOTED.value
    manifest = entry.payload["signature"]
    assert isinstance(manifest, dict)
    how = manifest["authentication"]
    assert isinstance(how, dict)
    return how


def _fleet(sf: SessionFactory) -> str | None:
    fleet, _ = deployment.serving_now(sf)
    return None if fleet is None else fleet.version


def test_a_reauthentication_after_the_request_signs_the_promotion_once(inst: Installation) -> None:
    # Prepare
    sf, clock = inst.session_factory(), Clock()
    user = _cmio(sf, clock)
    _request(inst, user, clock)
    clock.now += timedelta(seconds=40)
    proof = _proof(clock.now - timedelta(seconds=5))

    # Execute
    (record,) = _complete(inst, user, proof, clock)

    # Assert: the challenger serves, signed by the CMIO's printed name; the manifest says how
    assert (record.version, record.signer, record.signer_name) == (CHALLENGER, SUB, "Dr Carla Mio")
    assert _fleet(sf) == CHALLENGER
    how = _promotion_authentication(sf)
    assert proof.authenticated_at is not None
    assert how["method"] == "identity provider re-authentication"
    assert (how["issuer"], how["subject"]) == (ISSUER, SUB)
    assert how["authenticated_at"] == proof.authenticated_at.isoformat()
    assert AuditAction.SIGNATURE_REQUESTED.value in _actions(sf)
    assert deployment.pending_signature_as(sf, user, now=clock()) is None
    # the same re-authentication cannot sign a second act
    with pytest.raises(BadInputError, match="no signature waits"):
        _complete(inst, user, proof, clock)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("before the request", "before the signature was\\s+requested"),
        ("stale", "more than 300 s old"),
        ("no auth_time", "no auth_time claim"),
        ("other issuer", "does not manage this account"),
        ("other subject", "not the signer"),
    ],
)
def test_a_reauthentication_that_does_not_vouch_for_this_signature_is_refused_and_audited(
    inst: Installation, case: str, reason: str
) -> None:
    # Prepare
    sf, clock = inst.session_factory(), Clock()
    user = _cmio(sf, clock)
    _request(inst, user, clock)
    asked = clock.now
    clock.now += timedelta(seconds=60)
    proof = {
        "before the request": _proof(asked - timedelta(minutes=5)),
        "stale": _proof(asked + timedelta(seconds=1)),
        "no auth_time": _proof(None),
        "other issuer": _proof(clock.now, issuer="https://idp.example.org/realms/other"),
        "other subject": _proof(clock.now, subject="someone-else"),
    }[case]
    if case == "stale":
        clock.now += timedelta(seconds=provider_signature.SIGNATURE_WINDOW_S)

    # Execute
    with pytest.raises(SignatureFailedError, match=reason):
        _complete(inst, user, proof, clock)

    # Assert: nothing switched; the refusal is in the ledger; the request still waits
    assert _fleet(sf) == TEST_MODEL_VERSION
    assert _actions(sf)[-1] == AuditAction.SIGNATURE_FAILED.value
    assert deployment.pending_signature_as(sf, user, now=clock()) is not None


def test_a_request_lapses_and_a_withdrawn_one_signs_nothing(inst: Installation) -> None:
    # Prepare
    sf, clock = inst.session_factory(), Clock()
    user = _cmio(sf, clock)
    _request(inst, user, clock)

    # Execute / Assert: withdrawn, audited, nothing left to sign
    assert deployment.withdraw_signature_as(sf, user, now=clock) is True
    assert _actions(sf)[-1] == AuditAction.SIGNATURE_WITHDRAWN.value
    with pytest.raises(BadInputError, match="no signature waits"):
        _complete(inst, user, _proof(clock.now), clock)
    assert deployment.withdraw_signature_as(sf, user, now=clock) is False

    # Execute / Assert: a request older than its lifetime lapses
    _request(inst, user, clock)
    clock.now += timedelta(seconds=provider_signature.REQUEST_LIFETIME_S + 1)
    assert deployment.pending_signature_as(sf, user, now=clock()) is None
    with pytest.raises(BadInputError, match="lapsed"):
        _complete(inst, user, _proof(clock.now), clock)
    assert _fleet(sf) == TEST_MODEL_VERSION


def test_a_request_is_refused_up_front_when_the_promotion_would_be(inst: Installation) -> None:
    # Prepare
    sf, clock = inst.session_factory(), Clock()
    user = _cmio(sf, clock)
    before = _actions(sf)

    # Execute / Assert: an unregistered version, a site named twice: refused, nothing kept or audited
    with pytest.raises(DeploymentRefusedError, match="already serving"):
        deployment.request_promotion_signature_as(
            sf, user, TEST_MODEL_VERSION, models_dir=inst.home / "models", now=clock
        )
    with pytest.raises(BadInputError, match="more than once"):
        _request(inst, user, clock, "northfield", "northfield")
    with pytest.raises(PermissionDeniedError):
        _request(inst, SignedInUser("a.reader", Role.RADIOLOGIST), clock)
    assert _actions(sf) == before
    assert deployment.pending_signature_as(sf, user, now=clock()) is None


def test_a_local_account_cannot_sign_through_the_provider(inst: Installation) -> None:
    # Prepare: a local CMIO (a Vigil password) with a request made by hand
    sf, clock = inst.session_factory(), Clock()
    auth.add_user(sf, "local.cmio", "cmio", "a long enough signer password", actor="t", now=clock)
    local = SignedInUser("local.cmio", Role.CMIO)
    _request(inst, local, clock)

    # Execute / Assert
    with pytest.raises(SignatureFailedError, match="signs with its Vigil password"):
        _complete(inst, local, _proof(clock.now, subject="local.cmio"), clock)
    assert _fleet(sf) == TEST_MODEL_VERSION


def test_claims_become_a_reauthentication_and_bad_auth_times_are_none() -> None:
    # Execute
    good = ProviderReauthentication.from_claims({"iss": ISSUER, "sub": SUB, "auth_time": 1_765_000_000})
    bad = [ProviderReauthentication.from_claims({"iss": ISSUER, "sub": SUB, "auth_time": v}) for v in ("1", True, -5)]

    # Assert
    assert good.authenticated_at == datetime.fromtimestamp(1_765_000_000, tz=UTC)
    assert [b.authenticated_at for b in bad] == [None, None, None]
    assert ProviderReauthentication.from_claims({}).issuer == ""


def test_an_auth_time_past_the_year_9999_is_no_time_rather_than_a_crash() -> None:
    # datetime cannot hold it; the token then cannot sign, as one without auth_time cannot.
    for moment in (253_402_300_800, 2**39, 10**15):
        assert (
            ProviderReauthentication.from_claims({"iss": ISSUER, "sub": SUB, "auth_time": moment}).authenticated_at
            is None
        )
    assert ProviderReauthentication.from_claims({"auth_time": 253_402_300_799}).authenticated_at is not None
