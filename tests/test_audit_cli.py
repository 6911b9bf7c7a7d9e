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
