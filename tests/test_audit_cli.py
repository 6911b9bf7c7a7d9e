"""``vigil audit``: checkpoint, prove, public-key and the extended verify, through the real command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.cli import main
from core.store.engine import make_engine
from tests.cli_home import point_vigil_at, run_json
from tests.core.audit.insider import drop_audit_guards


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return point_vigil_at(tmp_path, monkeypatch)


run = run_json


def _sites(capsys: pytest.CaptureFixture[str], *names: str) -> None:
    for name in names:
        assert run(capsys, "site", "add", name)[0] == 0


def test_checkpoint_prove_and_verify(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sites(capsys, "A", "B", "C")

    code, made, _ = run(capsys, "audit", "checkpoint")
    pcode, proof, _ = run(capsys, "audit", "prove", "1")
    vcode, verified, _ = run(capsys, "audit", "verify")
    kcode, key, _ = run(capsys, "audit", "public-key")

    external = home / "home" / "var" / "audit-checkpoints.jsonl"
    assert code == 0 and made["created"] is True and made["tree_size"] == 3
    assert made["external_file"] == str(external)
    assert json.loads(external.read_text()) == {
        k: made[k] for k in ("tree_size", "root_hash", "timestamp", "key_id", "signature")
    }
    assert pcode == 0 and proof["ok"] is True and proof["seq"] == 1 and len(proof["inclusion_path"]) == 2  # type: ignore[arg-type]
    assert vcode == 0 and verified["ok"] is True and verified["checkpoints"] == 1
    assert (verified["covered"], verified["uncovered"], verified["checked"]) == (3, 0, 3)
    assert kcode == 0 and key["key_id"] == made["key_id"] and len(str(key["public_key"])) == 64


@pytest.mark.parametrize(("seq", "needle"), [("7", "seq 7"), ("abc", "'abc'"), ("-1", "'-1'"), ("1.5", "'1.5'")])
def test_prove_a_missing_or_non_numeric_seq_exits_2_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str], seq: str, needle: str
) -> None:
    _sites(capsys, "A")
    assert run(capsys, "audit", "checkpoint")[0] == 0

    code, data, err = run(capsys, "audit", "prove", seq)

    assert code == 2 and data == {}
    assert err.count("\n") == 1 and needle in err


def test_prove_an_entry_no_checkpoint_covers_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sites(capsys, "A")
    code, _, err = run(capsys, "audit", "prove", "0")
    assert code == 2 and "seq 0 is not yet covered by a checkpoint" in err


def test_verify_catches_a_truncated_tail_the_chain_misses(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sites(capsys, "A", "B", "C")
    assert run(capsys, "audit", "checkpoint")[0] == 0
    engine = make_engine(f"sqlite:///{home / 'vigil.db'}")
    drop_audit_guards(engine)  # an insider with DDL rights
    engine.dispose()
    with sqlite3.connect(home / "vigil.db") as con:
        con.execute("DELETE FROM audit_entry WHERE seq = 2")

    code, data, _ = run(capsys, "audit", "verify")

    assert code == 1
    assert data["chain_ok"] is True and data["first_bad_seq"] is None  # the chain alone passes
    assert data["ok"] is False and data["checkpoints_ok"] is False and data["failed_checkpoint"] == 3
    assert "tail truncated" in str(data["reason"])


def test_verify_reports_entries_past_the_last_checkpoint(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sites(capsys, "A")
    assert run(capsys, "audit", "checkpoint")[0] == 0
    _sites(capsys, "B")

    code, data, _ = run(capsys, "audit", "verify")
    assert main(["audit", "verify"]) == 0
    text = capsys.readouterr().out

    assert code == 0 and (data["covered"], data["uncovered"]) == (1, 1)
    assert "1 newest entries are not yet covered by a checkpoint" in text


def test_verify_with_another_public_key_fails(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sites(capsys, "A")
    assert run(capsys, "audit", "checkpoint")[0] == 0
    foreign = home / "other.pub"
    foreign.write_text("11" * 32 + "\n")
    own = home / "own.pub"
    assert main(["audit", "public-key"]) == 0
    own.write_text(capsys.readouterr().out)

    code, data, _ = run(capsys, "audit", "verify", "--public-key", str(foreign))
    ocode, _, _ = run(capsys, "audit", "verify", "--public-key", str(own))

    assert code == 1 and "not the trusted key" in str(data["reason"])
    assert ocode == 0


def test_verify_names_a_missing_or_malformed_public_key_file(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = home / "bad.pub"
    bad.write_text("not a key")
    code, _, err = run(capsys, "audit", "verify", "--public-key", str(bad))
    mcode, _, merr = run(capsys, "audit", "verify", "--public-key", str(home / "nope.pub"))
    assert code == 2 and "bad.pub" in err
    assert mcode == 2 and "nope.pub" in merr


def _config(home: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    config = home / "vigil.toml"
    config.write_text(text)
    monkeypatch.setenv("VIGIL_CONFIG", str(config))


def test_commands_that_write_sign_a_checkpoint_when_one_is_due(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(home, monkeypatch, "[vigil]\naudit_checkpoint_every = 2\n")
    external = home / "home" / "var" / "audit-checkpoints.jsonl"

    _sites(capsys, "A")
    after_one = external.exists()
    _sites(capsys, "B")
    sizes = [json.loads(line)["tree_size"] for line in external.read_text().splitlines()]
    code, idle, _ = run(capsys, "audit", "checkpoint", "--if-due")
    _sites(capsys, "C")
    dcode, none_due, _ = run(capsys, "audit", "checkpoint", "--if-due")
    vcode, verified, _ = run(capsys, "audit", "verify")

    assert not after_one and sizes == [2]
    assert code == 0 and idle == {"created": False, "due": False, "every": 2, "minutes": 60.0}
    assert dcode == 0 and none_due["due"] is False  # one unsigned entry: not due yet
    assert vcode == 0 and (verified["covered"], verified["uncovered"]) == (2, 1)


def test_audit_verify_and_public_key_sign_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sites(capsys, "A", "B")  # default policy: 1000 entries or 60 minutes, not due
    _config(home, monkeypatch, "[vigil]\naudit_checkpoint_every = 1\n")

    assert run(capsys, "audit", "verify")[0] == 0
    assert run(capsys, "audit", "public-key")[0] == 0
    assert not (home / "home" / "var" / "audit-checkpoints.jsonl").exists()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("audit_checkpoint_every = 0", "audit_checkpoint_every must be a positive integer, got 0"),
        ("audit_checkpoint_minutes = -5", "audit_checkpoint_minutes must be a positive integer, got -5"),
        ("audit_checkpoint_minutes = 99999999", "audit_checkpoint_minutes must be at most 10080"),
        ('audit_checkpoint_every = "often"', "got 'often'"),
    ],
)
def test_a_bad_checkpoint_policy_exits_2_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, line: str, needle: str
) -> None:
    _config(home, monkeypatch, f"[vigil]\n{line}\n")
    code, _, err = run(capsys, "audit", "checkpoint", "--if-due")
    assert code == 2 and needle in err
