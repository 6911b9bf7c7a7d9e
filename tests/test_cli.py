"""The ``vigil`` command's contract: one JSON object with --json, exit 0 / 1 / 2, errors naming the value."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.cli import main
from core.config import Settings
from core.services import models
from core.services.store import open_store, utc_now
from core.store.engine import make_engine
from tests.cli_home import point_vigil_at
from tests.core.audit.insider import drop_audit_guards
from tests.factories import write_random_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return point_vigil_at(tmp_path, monkeypatch)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object] | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in argv and out.strip() else None
    if "--json" in argv and out.strip():
        assert out.count("\n") == 1, "--json must print exactly one line"
    return code, data, err


def test_site_add_and_list(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "site", "add", "NORTH", "--benchmark", "--json")[0] == 0
    code, data, _ = run(capsys, "site", "list", "--json")
    assert code == 0 and data is not None
    (site,) = data["sites"]  # type: ignore[misc]
    assert site["name"] == "NORTH" and site["benchmark"] is True


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ingest", "{tmp}", "--site", "NO-SUCH-SITE", "--json"], "NO-SUCH-SITE"),
        (["ingest", "{tmp}/missing", "--site", "NORTH", "--json"], "missing"),
        (["explain", "1.2.3.999", "--method", "gradcam", "--json"], "1.2.3.999"),
        (["explain", "1.2.3.999", "--method", "lime", "--json"], "lime"),
        (["model", "show", "v-none", "--json"], "v-none"),
        (["site", "add", "bad name!", "--json"], "bad name!"),
        (["predict", "--site", "NOWHERE", "--json"], "NOWHERE"),
    ],
)
def test_bad_input_exits_2_naming_the_value(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    # Prepare: a registered model and site, so only the named value is wrong
    sf = open_store(Settings(home=home / "home", database_url=f"sqlite:///{home / 'vigil.db'}"))
    card_dir = home / "m"
    card = write_random_model(card_dir)
    models.register_model(sf, card, source_dir=card_dir, models_dir=home / "home" / "models", actor="t", now=utc_now)
    run(capsys, "site", "add", "NORTH")
    # Execute
    code, data, err = run(capsys, *[a.replace("{tmp}", str(home)) for a in argv])
    # Assert
    assert code == 2
    assert data is None
    assert needle in err and err.count("\n") == 1


def test_unusable_database_url_exits_2(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", "sqlite:////no/such/dir/v.db")
    code, _, err = run(capsys, "site", "list", "--json")
    assert code == 2 and "/no/such/dir" in err


def test_usage_error_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # main() returns the exit code of a usage error too, so in-process callers see 2, not SystemExit
    code = main(["ingest", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "PATH" in err


def test_audit_verify_names_the_tampered_seq(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: three audited actions, then an edit straight in the database
    for name in ("A", "B", "C"):
        run(capsys, "site", "add", name)
    verified = run(capsys, "audit", "verify", "--json")[1]
    assert verified is not None
    # the chain keys as before; checkpoint keys beside them (tests/test_audit_cli.py)
    assert {k: verified[k] for k in ("ok", "checked", "first_bad_seq", "reason")} == {
        "ok": True,
        "checked": 3,
        "first_bad_seq": None,
        "reason": None,
    }
    engine = make_engine(f"sqlite:///{home / 'vigil.db'}")
    drop_audit_guards(engine)  # an insider with DDL rights; the application cannot edit the ledger
    engine.dispose()
    with sqlite3.connect(home / "vigil.db") as con:
        con.execute("UPDATE audit_entry SET actor = 'mallory' WHERE seq = 1")
    # Execute
    code, data, _ = run(capsys, "audit", "verify", "--json")
    # Assert
    assert code == 1
    assert data is not None and data["ok"] is False and data["first_bad_seq"] == 1
