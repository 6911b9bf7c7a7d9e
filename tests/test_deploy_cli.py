"""``vigil deploy``, ``vigil holdout``, ``vigil model tag``, ``vigil validate-change`` and ``vigil train --from``:
bad input is refused with exit 2 and a line naming it, before anything is switched or trained."""

from __future__ import annotations

import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.store import users
from core.store.engine import make_engine, make_session_factory, migrate
from tests.cli_home import point_vigil_at, run_json


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = point_vigil_at(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    return home


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["deploy", "history", "--at", "2026-12-05T10:00Z"], "--site and --at together"),
        (["deploy", "history", "--site", "nowhere"], "unknown site: 'nowhere'"),
        (["deploy", "rollback", "--reason", "x", "--site", "nowhere"], "unknown site: 'nowhere'"),
        (["deploy", "history", "--site", "riverside", "--at", "2026-12-05T10:00"], "needs a zone"),
        (["deploy", "history", "--site", "riverside", "--at", "yesterday"], "'yesterday'"),
        (["deploy", "history", "--site", "nowhere", "--at", "2026-12-05T10:00Z"], "unknown site: 'nowhere'"),
        (["deploy", "rollback", "--reason", "x"], "no earlier version to roll back to"),
        (["deploy", "rollback", "--reason", "   "], "--reason must be 1 to 2000 characters"),
        (["holdout", "lock", "--fraction", "1.5"], "'1.5'"),
        (["holdout", "lock", "--fraction", "nan"], "'nan'"),
        (["model", "tag", "nope", "K123"], "'nope'"),
        (["train", "--from", "cxr-nodule-1.0.0"], "--from needs --version"),
        (["train"], "give --cohort and --out"),
        (["train", "--threshold-site", "harbor", "--l2sp-weight", "2"], "--l2sp-weight, --threshold-site tune a"),
        (["validate-change", "nope"], "'nope'"),
        (["validate-change", "cxr-nodule-1.0.0", "--scope", "riverside", "--site", "riverside"], "not both"),
    ],
)
def test_bad_input_exits_2_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run_json(capsys, *argv)
    assert code == 2 and out == {} and needle in err, err


def test_promoting_an_unregistered_version_switches_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "vigil-demo-cmio\n")
    code, _, err = run_json(capsys, "deploy", "promote", "nope", "--signer", "cmio", "--password-stdin")
    assert code == 2 and "'nope'" in err
    _, status, _ = run_json(capsys, "deploy", "status")
    assert status["serving"] is None


@pytest.mark.parametrize(
    ("sites", "needle"),
    [(["nowhere"], "unknown site: 'nowhere'"), (["north", "north"], "site 'north' is named more than once")],
)
def test_promoting_to_bad_sites_names_them_and_switches_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sites: list[str], needle: str
) -> None:
    _stdin(monkeypatch, "vigil-demo-cmio\n")
    site_args = [a for s in sites for a in ("--site", s)]
    code, _, err = run_json(capsys, "deploy", "promote", "v", "--signer", "cmio", "--password-stdin", *site_args)
    assert code == 2 and needle in err, err
    _, history, _ = run_json(capsys, "deploy", "history")
    assert history == {"deployments": []}


def test_a_tag_with_control_characters_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_json(capsys, "model", "tag", "whatever", "K1\x1b[31m")
    assert code == 2 and "invalid tag" in err and "\x1b" not in err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not toml [", "not TOML"),
        (
            '[plan]\nid = "x"\nversion = "1"\nallowed_modifications = ["retrain"]\n'
            "[acceptance]\nsite_auc_margn = 0.1\n",
            "site_auc_margn",
        ),
    ],
)
def test_a_plan_that_does_not_parse_exits_2_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    plan = home / "plan.toml"
    plan.write_text(text)
    code, _, err = run_json(capsys, "validate-change", "whatever", "--plan", str(plan))
    assert code == 2 and needle in err, err


def test_a_fifo_as_the_plan_is_refused_without_waiting(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = home / "plan.fifo"
    os.mkfifo(fifo)
    code, _, err = run_json(capsys, "validate-change", "whatever", "--plan", str(fifo))
    assert code == 2 and "plan.fifo" in err


def test_status_and_history_on_a_new_installation(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, status, _ = run_json(capsys, "deploy", "status")
    hcode, history, _ = run_json(capsys, "deploy", "history")
    assert code == 0 and status == {"serving": None, "slot": None, "rollback_to": None}
    assert hcode == 0 and history == {"deployments": []}


def _provider_cmio() -> None:
    """A CMIO whose account the identity provider manages (no Vigil password)."""
    engine = make_engine(os.environ["VIGIL_DATABASE_URL"])
    migrate(engine)
    with make_session_factory(engine).begin() as session:
        users.add_user(
            session,
            username="rita",
            role="cmio",
            password_hash="oidc:https://idp.example.org",
            now=datetime(2026, 12, 7, tzinfo=UTC),
        )
    engine.dispose()


def test_a_provider_signer_without_sign_on_configured_is_refused_naming_it_before_any_prompt(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an installation whose vigil.toml configures no provider any more
    _provider_cmio()
    _stdin(monkeypatch, "oidc:https://idp.example.org\n")  # the stored marker is no password either

    # Execute
    code, out, err = run_json(capsys, "deploy", "promote", "v", "--signer", "rita", "--password-stdin")

    # Assert: refused naming the account and the missing configuration; the password was never read
    assert code == 2 and out == {}
    assert "'rita'" in err and "[vigil.oidc]" in err, err
    assert sys.stdin.readline() == "oidc:https://idp.example.org\n"


def test_a_password_for_a_provider_signer_is_refused_unread(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: sign-on configured; someone pipes a password for the provider's account
    _provider_cmio()
    config = home / "vigil.toml"
    config.write_text('[vigil.oidc]\nrole_claim = "groups"\n[vigil.oidc.roles]\n"ai-quality" = "cmio"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    _stdin(monkeypatch, "a password\n")

    # Execute
    code, out, err = run_json(capsys, "deploy", "promote", "v", "--signer", "rita", "--password-stdin")

    # Assert
    assert code == 2 and out == {}
    assert "'rita'" in err and "leave out --password-stdin" in err, err
    assert sys.stdin.readline() == "a password\n"
