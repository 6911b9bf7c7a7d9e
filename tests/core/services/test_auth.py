"""Sign-in, password hashing, demo users, roles and permissions, and ``vigil users``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

import core.services.auth as auth
from core.audit.events import AuditAction
from core.cli import _add, _Parser
from core.cli import users as users_cli
from core.errors import (
    BadInputError,
    ConfigError,
    DuplicateUserError,
    PermissionDeniedError,
    SignInFailedError,
    UnknownRoleError,
    UnknownUserError,
    WeakPasswordError,
)
from core.services.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    SignedInUser,
    can,
    parse_role,
    permissions_of,
    require,
)
from core.store import audit_log, users
from core.store.engine import SessionFactory
from core.store.tables import AuditEntryRow

PASSWORD = "correct horse battery"


REAL_HASHER = auth._HASHER


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Argon2 at its real cost takes ~0.1 s a hash; only the test of the parameters puts it back.
    monkeypatch.setattr(auth, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth.dummy_hash.cache_clear()
    yield
    auth.dummy_hash.cache_clear()


def clock_at(now: datetime):  # type: ignore[no-untyped-def]
    return lambda: now


def _entries(sf: SessionFactory) -> list[tuple[str, str, str, str]]:
    with sf() as session:
        return [
            (e.actor, str(e.action), e.subject, json.dumps(dict(e.payload))) for e in audit_log.iter_entries(session)
        ]


def _add_radiologist(sf: SessionFactory, now: datetime) -> None:
    auth.add_user(sf, "dr.a", "radiologist", PASSWORD, actor="test", now=clock_at(now))


# --- hashing and sign-in --------------------------------------------------------------------------


def test_passwords_are_stored_as_salted_argon2id_hashes(
    session_factory: SessionFactory, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setattr(auth, "_HASHER", REAL_HASHER)

    # Execute
    _add_radiologist(session_factory, now)
    first, second = auth.hash_password(PASSWORD), auth.hash_password(PASSWORD)

    # Assert
    with session_factory() as session:
        stored = users.get_user(session, "dr.a").password_hash
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored and first != second
    assert auth.verify_password(stored, PASSWORD) and not auth.verify_password(stored, PASSWORD + "x")


def test_sign_in_returns_the_stored_role_and_audits_it(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    _add_radiologist(session_factory, now)

    # Execute
    user = auth.sign_in(session_factory, "  dr.a ", PASSWORD, now=clock_at(now))

    # Assert
    assert user == SignedInUser("dr.a", Role.RADIOLOGIST)
    actor, action, subject, payload = _entries(session_factory)[-1]
    assert (actor, action, subject) == ("dr.a", AuditAction.LOGIN_SUCCEEDED.value, "dr.a")
    assert PASSWORD not in payload


@pytest.mark.parametrize(("username", "password"), [("dr.a", "wrong password"), ("nobody", PASSWORD), ("", "")])
def test_failed_sign_in_never_says_whether_the_user_exists(
    session_factory: SessionFactory, now: datetime, username: str, password: str
) -> None:
    # Prepare
    _add_radiologist(session_factory, now)

    # Execute
    with pytest.raises(SignInFailedError) as failure:
        auth.sign_in(session_factory, username, password, now=clock_at(now))

    # Assert
    assert str(failure.value) == "sign-in failed: unknown username or wrong password"
    actor, action, subject, payload = _entries(session_factory)[-1]
    assert (actor, action, subject) == ("anonymous", AuditAction.LOGIN_FAILED.value, username)
    assert json.loads(payload) == {"username": username, "consecutive_failures": 1}


def test_an_unknown_user_is_checked_against_a_dummy_hash(
    session_factory: SessionFactory, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: both failures must pay for one hash verification, so timing tells nothing
    checked: list[str] = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda h, p: checked.append(h) or real(h, p))
    _add_radiologist(session_factory, now)

    # Execute
    for name in ("dr.a", "nobody"):
        with pytest.raises(SignInFailedError):
            auth.sign_in(session_factory, name, "wrong password", now=clock_at(now))

    # Assert
    assert len(checked) == 2 and all(h.startswith("$argon2id$") for h in checked)


def test_an_account_with_an_unknown_role_cannot_sign_in(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        users.add_user(session, username="odd", role="wizard", password_hash=auth.hash_password(PASSWORD), now=now)

    # Execute / Assert
    with pytest.raises(SignInFailedError):
        auth.sign_in(session_factory, "odd", PASSWORD, now=clock_at(now))


# --- accounts -------------------------------------------------------------------------------------


def test_demo_users_cover_every_role_and_seeding_is_idempotent(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    first = auth.seed_demo_users(session_factory, now=clock_at(now))
    auth.set_password(session_factory, "radiologist", "a changed password", actor="test", now=clock_at(now))
    second = auth.seed_demo_users(session_factory, now=clock_at(now))

    # Assert
    assert {d.role for d in auth.DEMO_USERS} == set(Role)
    assert first == [d.username for d in auth.DEMO_USERS] and second == []
    assert (
        auth.sign_in(session_factory, "radiologist", "a changed password", now=clock_at(now)).role is Role.RADIOLOGIST
    )
    created = [e for e in _entries(session_factory) if e[1] == AuditAction.USER_CREATED.value]
    assert len(created) == len(auth.DEMO_USERS) and all(e[0] == "system" for e in created)
    for demo in auth.DEMO_USERS:
        auth.check_password_policy(demo.password, username=demo.username)


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short", "at least 12"), ("x" * 257, "at most 256"), (" " * 12, "only spaces"), ("Dr.A.Long.Name", "username")],
)
def test_password_policy_names_the_rule_never_the_password(password: str, reason: str) -> None:
    with pytest.raises(WeakPasswordError, match=reason) as refused:
        auth.check_password_policy(password, username="dr.a.long.name")
    assert password.strip() == "" or password not in str(refused.value)


def test_add_user_validates_name_role_and_duplicates(session_factory: SessionFactory, now: datetime) -> None:
    _add_radiologist(session_factory, now)
    with pytest.raises(BadInputError, match="invalid username"):
        auth.add_user(session_factory, "bad name", "radiologist", PASSWORD, actor="t", now=clock_at(now))
    with pytest.raises(UnknownRoleError, match="choose one of radiologist"):
        auth.add_user(session_factory, "dr.b", "surgeon", PASSWORD, actor="t", now=clock_at(now))
    with pytest.raises(DuplicateUserError):
        auth.add_user(session_factory, "dr.a", "radiologist", PASSWORD, actor="t", now=clock_at(now))
    assert [u.username for u in auth.list_users(session_factory)] == ["dr.a"]


def test_set_password_is_audited_and_replaces_the_old_one(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    _add_radiologist(session_factory, now)

    # Execute
    auth.set_password(session_factory, "dr.a", "brand new password", actor="cli:root", now=clock_at(now))

    # Assert
    with pytest.raises(SignInFailedError):
        auth.sign_in(session_factory, "dr.a", PASSWORD, now=clock_at(now))
    assert auth.sign_in(session_factory, "dr.a", "brand new password", now=clock_at(now)).username == "dr.a"
    changed = [e for e in _entries(session_factory) if e[1] == AuditAction.PASSWORD_CHANGED.value]
    assert [(e[0], e[2]) for e in changed] == [("cli:root", "dr.a")]
    with pytest.raises(UnknownUserError):
        auth.set_password(session_factory, "nobody", "brand new password", actor="t", now=clock_at(now))


def test_change_own_password_needs_the_current_one(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    _add_radiologist(session_factory, now)
    me = SignedInUser("dr.a", Role.RADIOLOGIST)

    # Execute / Assert
    with pytest.raises(SignInFailedError):
        auth.change_own_password(session_factory, me, "not my password", "brand new password", now=clock_at(now))
    auth.change_own_password(session_factory, me, PASSWORD, "brand new password", now=clock_at(now))
    assert auth.sign_in(session_factory, "dr.a", "brand new password", now=clock_at(now)) == me


def test_only_an_administrator_manages_users_even_through_the_service(
    session_factory: SessionFactory, now: datetime
) -> None:
    # Prepare
    _add_radiologist(session_factory, now)
    radiologist, admin = SignedInUser("dr.a", Role.RADIOLOGIST), SignedInUser("root", Role.ADMIN)

    # Execute / Assert
    with pytest.raises(PermissionDeniedError, match="may not manage users"):
        auth.create_user(session_factory, radiologist, "dr.b", "admin", PASSWORD, full_name="Dr B", now=clock_at(now))
    with pytest.raises(PermissionDeniedError):
        auth.reset_password(session_factory, radiologist, "dr.a", "brand new password", now=clock_at(now))
    created = auth.create_user(
        session_factory, admin, "dr.b", "champion", PASSWORD, full_name="Dr B", now=clock_at(now)
    )
    assert (created.role, created.full_name) == ("champion", "Dr B")
    assert _entries(session_factory)[-1][:3] == ("root", AuditAction.USER_CREATED.value, "dr.b")


# --- roles and permissions ------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_require_follows_the_role_matrix(role: Role, permission: Permission) -> None:
    user = SignedInUser("someone", role)
    if permission in ROLE_PERMISSIONS[role]:
        assert require(user, permission) is user and can(user, permission)
    else:
        with pytest.raises(PermissionDeniedError, match=f"role '{role.value}'"):
            require(user, permission)


def test_nobody_signed_in_may_do_nothing() -> None:
    for permission in Permission:
        assert not can(None, permission)
        with pytest.raises(PermissionDeniedError, match="nobody signed in"):
            require(None, permission)


def test_the_matrix_keeps_least_privilege() -> None:
    readers = {r for r in Role if Permission.REVIEW_STUDIES in permissions_of(r)}
    assert readers == {Role.RADIOLOGIST, Role.CHAMPION}
    assert {r for r in Role if Permission.MANAGE_MODELS in permissions_of(r)} == {Role.ML_ENGINEER}
    assert {r for r in Role if Permission.MANAGE_USERS in permissions_of(r)} == {Role.ADMIN}
    assert parse_role(" Radiologist ") is Role.RADIOLOGIST
    with pytest.raises(UnknownRoleError):
        parse_role("root")


# --- vigil users ----------------------------------------------------------------------------------


@pytest.fixture
def vigil_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    parser = _Parser(prog="vigil")
    users_cli.register_users(parser.add_subparsers(dest="command", required=True, parser_class=_Parser), _add)

    def run(argv: list[str], stdin: str = "") -> dict[str, object]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        args = parser.parse_args(argv)
        return dict(args.handler(args).data)

    yield run


def test_vigil_users_add_list_and_set_password(vigil_users: object, tmp_path: Path) -> None:
    run = vigil_users  # type: ignore[assignment]

    # Execute
    added = run(
        ["users", "add", "dr.cli", "--role", "champion", "--full-name", " Dr Cli Ent ", "--password-stdin", "--json"],
        f"{PASSWORD}\n",
    )
    changed = run(["users", "set-password", "dr.cli", "--password-stdin"], "another long password\n")
    listed = run(["users", "list", "--json"])

    # Assert
    assert added == {"username": "dr.cli", "full_name": "Dr Cli Ent", "role": "champion", "local_sign_in": True}
    assert changed == {"username": "dr.cli", "password_changed": True, "local_sign_in": True}
    assert [(u["username"], u["full_name"]) for u in listed["users"]] == [("dr.cli", "Dr Cli Ent")]  # type: ignore[index]
    from core.config import Settings
    from core.services.store import open_store

    sf = open_store(Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'vigil.db'}"))
    with sf() as session:
        actions = list(session.scalars(select(AuditEntryRow.action)))
    assert actions == [AuditAction.USER_CREATED.value, AuditAction.PASSWORD_CHANGED.value]


def test_vigil_users_refuses_a_weak_password_without_a_terminal(vigil_users: object) -> None:
    run = vigil_users  # type: ignore[assignment]
    with pytest.raises(WeakPasswordError):
        run(["users", "add", "dr.cli", "--role", "champion", "--full-name", "Dr Cli", "--password-stdin"], "short\n")
    with pytest.raises(BadInputError, match="no terminal"):
        run(["users", "add", "dr.cli", "--role", "champion", "--full-name", "Dr Cli"])
    with pytest.raises(BadInputError, match="full name is required"):
        run(
            ["users", "add", "dr.cli", "--role", "champion", "--full-name", "  ", "--password-stdin"],
            "long password 1\n",
        )


def _write_oidc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(f"[vigil.oidc]\n{table}\n", encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))


def test_vigil_users_names_a_broken_oidc_table_before_asking_for_a_password(
    vigil_users: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a role name with a typo, which shuts both ways into the app
    run = vigil_users  # type: ignore[assignment]
    _write_oidc(tmp_path, monkeypatch, 'role_claim = "groups"\nroles = { "rad" = "radiolgist" }')
    # Execute / Assert: no terminal and no stdin, yet the table is what is reported; nothing written
    for argv in (
        ["users", "add", "dr.cli", "--role", "champion", "--full-name", "Dr Cli"],
        ["users", "set-password", "radiologist"],
    ):
        with pytest.raises(ConfigError, match=r'oidc.roles."rad" names an unknown role .radiolgist.'):
            run(argv)
    assert not (tmp_path / "vigil.db").exists()


def test_vigil_users_says_when_local_sign_in_is_off(
    vigil_users: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    run = vigil_users  # type: ignore[assignment]
    _write_oidc(
        tmp_path, monkeypatch, 'role_claim = "groups"\nroles = { "rad" = "radiologist" }\nlocal_sign_in = false'
    )
    parser = _Parser(prog="vigil")
    users_cli.register_users(parser.add_subparsers(dest="command", required=True, parser_class=_Parser), _add)
    # Execute
    added = run(
        ["users", "add", "break.glass", "--role", "admin", "--full-name", "Break Glass", "--password-stdin"],
        f"{PASSWORD}\n",
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    args = parser.parse_args(["users", "set-password", "break.glass", "--password-stdin"])
    text = args.handler(args).text
    # Assert: the account exists, and both replies say the app will not take its password
    assert added["local_sign_in"] is False
    assert "local sign-in is off" in text and "break.glass cannot sign in to the app" in text


class _CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting the verifications that do argon2's work (of a real hash)."""

    calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 - argon2's own name
        text = hash.decode() if isinstance(hash, bytes) else hash
        type(self).calls += text.startswith("$argon2")
        return super().verify(hash, password)


@pytest.mark.parametrize("stored", ["oidc:https://idp.example.org", "", "not a hash"])
def test_a_stored_value_that_is_no_hash_costs_a_verification_like_a_real_one(
    monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    # A single-sign-on account refused without any argon2 work would answer faster than a local one
    # with a wrong password: the time would tell a guesser the account exists.
    auth.dummy_hash()  # computed once beforehand, as on a running server
    monkeypatch.setattr(auth, "_HASHER", _CountingHasher())
    _CountingHasher.calls = 0

    assert auth.verify_password(stored, "a guess at the password") is False
    assert _CountingHasher.calls == 1
