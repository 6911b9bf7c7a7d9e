"""Single sign-on: the ``[vigil.oidc]`` policy, claims to one role, and the sign-in record.

The claims are what ``st.user`` holds after ``st.login`` (an ID token's); the browser test
(``tests/e2e/test_oidc_browser.py``) gets them from a real provider. These tests check what Vigil
decides from them, on every database of the ``session_factory`` fixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pytest

import core.services.auth as auth
from core.audit.events import AuditAction, AuditEntry
from core.config import load_settings
from core.errors import BadInputError, ConfigError, UnknownUserError
from core.services import oidc
from core.services.oidc import OidcPolicy, SignInRefusedError, identify, parse_policy
from core.services.permissions import Permission, Role, SignedInUser, can
from core.store import audit_log, users
from core.store.engine import SessionFactory

ISSUER = "https://idp.example.org/realms/hospital"
TABLE: dict[str, object] = {
    "role_claim": "groups",
    "roles": {"rad-readers": "radiologist", "ai-quality": "cmio", "it-admins": "admin"},
}


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "sub": "f3a9c2e0-7b1d-4e55-9a0c-2d4f6b8e1a37",
        "preferred_username": "rita.reader",
        "name": "Rita Reader",
        "groups": ["staff", "rad-readers"],
        "provider": "default",  # what Streamlit's cookie says after st.login() with [auth] itself
    }
    return base | extra


def entries(sf: SessionFactory) -> list[AuditEntry]:
    with sf() as session:
        return list(audit_log.iter_entries(session))


# --- policy ---------------------------------------------------------------------------------


def test_a_good_table_becomes_a_policy_with_roles_and_local_sign_in_on_by_default() -> None:
    # Execute
    policy = parse_policy(TABLE | {"provider": "hospital"})

    # Assert
    assert policy.role_claim == "groups"
    assert dict(policy.roles) == {"rad-readers": Role.RADIOLOGIST, "ai-quality": Role.CMIO, "it-admins": Role.ADMIN}
    assert policy.provider == "hospital"
    assert policy.local_sign_in is True


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"roles": {"a": "radiologist"}}, "oidc.role_claim"),
        ({"role_claim": "", "roles": {"a": "radiologist"}}, "oidc.role_claim"),
        ({"role_claim": "groups"}, "oidc.roles"),
        ({"role_claim": "groups", "roles": {}}, "oidc.roles"),
        ({"role_claim": "groups", "roles": {"rad-readers": "radiolgist"}}, 'oidc.roles."rad-readers"'),
        ({"role_claim": "groups", "roles": {"rad-readers": 3}}, 'oidc.roles."rad-readers"'),
        (TABLE | {"local_sign_in": "no"}, "oidc.local_sign_in"),
        (TABLE | {"provider": "my_idp"}, "oidc.provider"),
        (TABLE | {"role_map": {}}, "role_map"),
    ],
)
def test_a_bad_table_is_refused_naming_the_key(table: Mapping[str, object], named: str) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_policy(table)


def test_the_table_comes_from_vigil_toml(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "vigil.toml"
    path.write_text(
        '[vigil.oidc]\nrole_claim = "groups"\nlocal_sign_in = false\n'
        '[vigil.oidc.roles]\n"rad-readers" = "radiologist"\n'
    )

    # Execute
    settings = load_settings({"VIGIL_CONFIG": str(path)}, cwd=tmp_path)

    # Assert
    assert settings.oidc is not None
    policy = parse_policy(settings.oidc)
    assert policy.local_sign_in is False
    assert dict(policy.roles) == {"rad-readers": Role.RADIOLOGIST}
    assert load_settings({}).oidc is None


def test_an_oidc_setting_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[vigil]\noidc = "groups"\n')
    with pytest.raises(ConfigError, match=r"oidc must be a table"):
        load_settings({"VIGIL_CONFIG": str(path)}, cwd=tmp_path)


# --- claims to a role --------------------------------------------------------------------------


POLICY = parse_policy(TABLE)


def test_the_username_is_sub_and_the_printed_name_is_the_name_claim() -> None:
    # Execute
    who = identify(claims(), POLICY)

    # Assert
    assert who.username == "f3a9c2e0-7b1d-4e55-9a0c-2d4f6b8e1a37"
    assert who.full_name == "Rita Reader"
    assert who.preferred_username == "rita.reader"
    assert who.issuer == ISSUER
    assert who.role is Role.RADIOLOGIST


@pytest.mark.parametrize(
    ("groups", "role"),
    [
        ("rad-readers", Role.RADIOLOGIST),  # a single string is one value
        (["rad-readers", "rad-readers"], Role.RADIOLOGIST),
        (["staff", "ai-quality", "vpn-users"], Role.CMIO),
    ],
)
def test_unmapped_values_are_ignored(groups: object, role: Role) -> None:
    assert identify(claims(groups=groups), POLICY).role is role


def test_two_values_of_one_role_are_one_role() -> None:
    policy = parse_policy({"role_claim": "groups", "roles": {"rad-a": "radiologist", "rad-b": "radiologist"}})
    assert identify(claims(groups=["rad-a", "rad-b"]), policy).role is Role.RADIOLOGIST


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"groups": ["staff", "vpn-users"]}, r"no value of the 'groups' claim \('staff', 'vpn-users'\) maps"),
        ({"groups": []}, r"no value of the 'groups' claim \(none\) maps"),
        ({"groups": ["rad-readers", "ai-quality"]}, r"more than one Vigil role \(radiologist, cmio\)"),
        ({"groups": None}, r"has no 'groups' claim"),
        ({"groups": {"rad-readers": True}}, r"must be a string or a list of strings"),
        ({"groups": ["rad-readers", 7]}, r"must be a string or a list of strings"),
        ({"sub": "has spaces in it"}, r"subject 'has spaces in it' is not a usable Vigil username"),
        ({"sub": "x" * 65}, r"is not a usable Vigil username"),
        ({"iss": None}, r"names no issuer"),
        ({"provider": "test-realm"}, r"provider section 'test-realm', but \[vigil.oidc\] provider names 'default'"),
        ({"provider": None}, r"provider section None"),
    ],
)
def test_claims_that_give_no_single_role_are_refused_with_the_reason(changed: dict[str, object], reason: str) -> None:
    given = {k: v for k, v in (claims() | changed).items() if v is not None}
    with pytest.raises(SignInRefusedError, match=reason):
        identify(given, POLICY)


def test_a_dotted_role_claim_reaches_into_nested_claims_and_a_dotted_claim_name_wins() -> None:
    # Keycloak puts realm roles under realm_access.roles; Auth0 names custom claims with URLs.
    nested = parse_policy({"role_claim": "realm_access.roles", "roles": {"reader": "radiologist"}})
    assert identify(claims(realm_access={"roles": ["reader"]}), nested).role is Role.RADIOLOGIST
    named = parse_policy({"role_claim": "https://vigil.example.org/roles", "roles": {"cmio": "cmio"}})
    assert identify(claims(**{"https://vigil.example.org/roles": ["cmio"]}), named).role is Role.CMIO


def test_the_printed_name_loses_control_characters_and_falls_back_to_preferred_username() -> None:
    assert identify(claims(name="Rita\x00\n  Reader\u202e"), POLICY).full_name == "Rita Reader"
    assert identify(claims(name=None) | {"name": 5}, POLICY).full_name == "rita.reader"
    assert len(identify(claims(name="R" * 500), POLICY).full_name) == oidc.MAX_FULL_NAME


# --- the sign-in record --------------------------------------------------------------------------


def at(moment: datetime):  # type: ignore[no-untyped-def]
    return lambda: moment


def test_the_first_sign_in_creates_the_account_and_both_are_audited(
    session_factory: SessionFactory, now: datetime
) -> None:
    # Execute
    result = oidc.sign_in(session_factory, claims(), POLICY, now=at(now), client_address="10.0.0.7")

    # Assert: the same SignedInUser type every service checks
    assert result.user == SignedInUser("f3a9c2e0-7b1d-4e55-9a0c-2d4f6b8e1a37", Role.RADIOLOGIST)
    assert result.provisioned and result.full_name == "Rita Reader"
    assert can(result.user, Permission.RECORD_FEEDBACK) and not can(result.user, Permission.MANAGE_USERS)
    with session_factory() as session:
        stored = users.get_user(session, result.user.username)
    assert (stored.role, stored.full_name) == ("radiologist", "Rita Reader")
    created, signed_in = entries(session_factory)[-2:]
    assert created.action is AuditAction.USER_CREATED and created.payload["method"] == "oidc"
    assert signed_in.action is AuditAction.LOGIN_SUCCEEDED
    assert signed_in.actor == result.user.username
    assert dict(signed_in.payload) == {
        "method": "oidc",
        "username": result.user.username,
        "full_name": "Rita Reader",
        "preferred_username": "rita.reader",
        "issuer": ISSUER,
        "role": "radiologist",
        "client_address": "10.0.0.7",
        "provisioned": True,
    }


def test_a_later_sign_in_follows_the_provider_s_role_and_name(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    oidc.sign_in(session_factory, claims(), POLICY, now=at(now))

    # Execute: moved from the readers' group to quality, and renamed
    again = oidc.sign_in(session_factory, claims(groups=["ai-quality"], name="Rita Q. Reader"), POLICY, now=at(now))

    # Assert
    assert again.user.role is Role.CMIO and not again.provisioned
    with session_factory() as session:
        stored = users.get_user(session, again.user.username)
    assert (stored.role, stored.full_name) == ("cmio", "Rita Q. Reader")
    last = entries(session_factory)[-1]
    assert last.action is AuditAction.LOGIN_SUCCEEDED
    assert last.payload["previous_role"] == "radiologist" and last.payload["role"] == "cmio"
    assert [e.action for e in entries(session_factory)].count(AuditAction.USER_CREATED) == 1


def test_an_unmapped_person_is_refused_audited_and_given_no_account(
    session_factory: SessionFactory, now: datetime
) -> None:
    # Prepare
    before = len(entries(session_factory))

    # Execute
    with pytest.raises(SignInRefusedError, match="maps to a Vigil role"):
        oidc.sign_in(session_factory, claims(groups=["staff"]), POLICY, now=at(now))

    # Assert: one entry, no account
    after = entries(session_factory)
    assert len(after) == before + 1
    refused = after[-1]
    assert refused.action is AuditAction.LOGIN_FAILED
    assert refused.subject == "f3a9c2e0-7b1d-4e55-9a0c-2d4f6b8e1a37"
    assert refused.payload["method"] == "oidc" and refused.payload["groups"] == ["staff"]
    assert "maps to a Vigil role" in str(refused.payload["reason"])
    with session_factory() as session:
        assert all(u.username != refused.subject for u in users.list_users(session))


def test_a_local_account_with_the_same_name_is_never_taken_over(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare: a local account named like the provider's subject
    with session_factory.begin() as session:
        users.add_user(session, username="rita", role="admin", password_hash=auth.hash_password("x" * 12), now=now)

    # Execute
    with pytest.raises(SignInRefusedError, match="does not manage"):
        oidc.sign_in(session_factory, claims(sub="rita"), POLICY, now=at(now))

    # Assert: still the local admin; the refusal audited
    with session_factory() as session:
        assert users.get_user(session, "rita").role == "admin"
    assert entries(session_factory)[-1].action is AuditAction.LOGIN_FAILED


def test_another_issuer_cannot_sign_in_as_the_same_subject(session_factory: SessionFactory, now: datetime) -> None:
    oidc.sign_in(session_factory, claims(), POLICY, now=at(now))
    with pytest.raises(SignInRefusedError, match="does not manage"):
        oidc.sign_in(session_factory, claims(iss="https://evil.example.org"), POLICY, now=at(now))


def test_no_password_signs_in_to_a_provider_s_account(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    result = oidc.sign_in(session_factory, claims(sub="rita"), POLICY, now=at(now))

    # Execute / Assert: the marker is no Argon2 hash; the local form cannot reach the account
    for guess in ("", f"oidc:{ISSUER}", ISSUER, "x" * 12):
        assert auth.verify_credentials(session_factory, result.user.username, guess) is None


def test_only_the_provider_section_the_policy_names_is_accepted() -> None:
    # Secrets may hold a second [auth.NAME]; its people must not be mapped by this policy's table.
    hospital = parse_policy(TABLE | {"provider": "hospital"})
    assert identify(claims(provider="hospital"), hospital).role is Role.RADIOLOGIST
    with pytest.raises(SignInRefusedError, match="section 'default', but .* names 'hospital'"):
        identify(claims(), hospital)


def test_the_signature_section_is_accepted_beside_the_sign_in_section_and_its_name_is_checked() -> None:
    # The section signatures re-authenticate through is the same provider asked for the password again.
    policy = parse_policy(TABLE | {"provider": "hospital", "signature_provider": "hospital-sign"})
    assert (policy.signing_provider, parse_policy(TABLE).signing_provider) == ("hospital-sign", None)
    assert identify(claims(provider="hospital-sign"), policy).role is Role.RADIOLOGIST
    with pytest.raises(SignInRefusedError, match="section 'test-realm'"):
        identify(claims(provider="test-realm"), policy)
    with pytest.raises(ConfigError, match="oidc.signature_provider .* got 'a_b'"):
        parse_policy(TABLE | {"signature_provider": "a_b"})


def test_a_refused_provider_section_is_audited_and_creates_no_account(
    session_factory: SessionFactory, now: datetime
) -> None:
    # Execute
    with pytest.raises(SignInRefusedError):
        oidc.sign_in(session_factory, claims(sub="rita", provider="test-realm"), POLICY, now=at(now))

    # Assert
    with session_factory() as session, pytest.raises(UnknownUserError):
        users.get_user(session, "rita")
    last = entries(session_factory)[-1]
    assert last.action is AuditAction.LOGIN_FAILED
    assert "test-realm" in str(last.payload["reason"])


@pytest.mark.parametrize("by_admin", [False, True])
def test_no_password_can_be_set_on_a_provider_s_account(
    session_factory: SessionFactory, now: datetime, by_admin: bool
) -> None:
    # Prepare
    oidc.sign_in(session_factory, claims(sub="rita"), POLICY, now=at(now))
    with session_factory() as session:
        before = users.get_user(session, "rita").password_hash
    ledger = len(entries(session_factory))
    admin = SignedInUser("ada", Role.ADMIN)

    # Execute
    with pytest.raises(BadInputError, match=r"'rita' signs in through the identity provider .*idp.example.org"):
        if by_admin:
            auth.reset_password(session_factory, admin, "rita", "a-long-enough-pass", now=at(now))
        else:
            auth.set_password(session_factory, "rita", "a-long-enough-pass", actor="ops", now=at(now))

    # Assert: still the provider's account, nothing audited
    with session_factory() as session:
        assert users.get_user(session, "rita").password_hash == before == f"oidc:{ISSUER}"
    assert len(entries(session_factory)) == ledger
    assert auth.verify_credentials(session_factory, "rita", "a-long-enough-pass") is None


def test_a_policy_is_frozen() -> None:
    policy = OidcPolicy("groups", POLICY.roles)
    with pytest.raises(AttributeError):
        policy.role_claim = "roles"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.roles["x"] = Role.ADMIN  # type: ignore[index]
