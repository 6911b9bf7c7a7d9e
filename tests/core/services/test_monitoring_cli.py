"""``vigil drift``, ``vigil incident`` and ``vigil alert``: one JSON object, exit 0, and 2 on bad input.

The commands are attached to a parser the way the lead wires them (``register_drift`` beside
``core.cli.commands.register``), and run against the seeded store of ``test_monitoring``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.cli import _add, _Parser, main
from core.cli import commands as cli_commands
from core.cli.drift import register_drift
from core.store.engine import make_engine, make_session_factory, migrate
from tests.core.services.test_monitoring import _seed


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drift-cli") / "seeded.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    _seed(make_session_factory(engine))
    engine.dispose()
    return path


@pytest.fixture
def home(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copyfile(template, tmp_path / "vigil.db")
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    original = cli_commands.register

    def register(sub: Any, add: Any) -> None:
        original(sub, add)
        if "drift" not in sub.choices:  # until the lead wires it in
            register_drift(sub, add)

    monkeypatch.setattr(cli_commands, "register", register)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in argv and out.strip() else None
    if data is not None:
        assert out.count("\n") == 1, "--json must print exactly one line"
    return code, data, err


def test_drift_prints_the_alerts_and_a_second_run_raises_none(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, first, _ = run(capsys, "drift", "--no-images", "--json")
    code2, second, _ = run(capsys, "drift", "--no-images", "--json")

    # Assert
    assert code == code2 == 0 and first is not None and second is not None
    assert isinstance(first["alerts"], list) and first["raised"]
    assert {a["id"] for a in first["alerts"]} == set(first["raised"])
    assert second["raised"] == [] and len(second["alerts"]) == len(first["alerts"])
    assert {i["id"] for i in first["incidents"]} == set(first["opened"]) and second["opened"] == []
    assert sorted(a for i in first["incidents"] for a in i["alert_ids"]) == sorted(first["raised"])
    assert {i["family"] for i in first["incidents"]} >= {"score", "metadata"}
    assert first["settings"]["incident_window_days"] == 7
    assert first["settings"]["arl0"] == 17532.0 and first["settings"]["cusum"]["h"] > 5
    assert "one incident every 2 years" in first["settings"]["budget_statement"]
    river = first["sites"]["riverside"]
    assert river["streams"]["mean_score"]["status"] == "monitoring"
    assert river["novelty"][0]["value"] == "v5"


def test_drift_text_output_lists_alerts(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = main(["drift", "--no-images", "--site", "riverside"])
    out = capsys.readouterr().out

    # Assert
    assert code == 0
    assert "budget 0.5 false incidents a site-year, ARL0 17,532 days per chart" in out
    assert "Score streams at riverside: " in out
    assert "unresolved incidents (" in out and "Metadata novelty at riverside" in out


def test_alert_ack_and_resolve(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    _, data, _ = run(capsys, "drift", "--no-images", "--json")
    assert data is not None
    alert_id = str(data["raised"][0])

    # Execute
    _, acked, _ = run(capsys, "alert", "ack", alert_id, "--note", "seen", "--json")
    _, resolved, _ = run(capsys, "alert", "resolve", alert_id, "--note", "fixed", "--json")
    _, listed, _ = run(capsys, "alert", "list", "--status", "resolved", "--json")

    # Assert
    assert acked is not None and acked["alert"]["status"] == "acknowledged"
    assert acked["alert"]["acknowledged_by"].startswith("cli:")
    assert resolved is not None and resolved["alert"]["resolution_note"] == "fixed"
    assert listed is not None and [a["id"] for a in listed["alerts"]] == [int(alert_id)]


def test_incident_list_ack_and_resolve(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    _, data, _ = run(capsys, "drift", "--no-images", "--json")
    assert data is not None
    incident = next(i for i in data["incidents"] if i["family"] == "score")

    # Execute
    _, acked, _ = run(capsys, "incident", "ack", str(incident["id"]), "--note", "seen", "--json")
    _, resolved, _ = run(capsys, "incident", "resolve", str(incident["id"]), "--note", "retrained", "--json")
    _, listed, _ = run(capsys, "incident", "list", "--site", "riverside", "--status", "resolved", "--json")
    _, alerts, _ = run(capsys, "alert", "list", "--status", "resolved", "--json")
    text_code = main(["incident", "list", "--status", "open,acknowledged"])
    text = capsys.readouterr().out

    # Assert: the incident and every alert in it moved, with who and why
    assert acked is not None and acked["incident"]["status"] == "acknowledged"
    assert acked["incident"]["acknowledged_by"].startswith("cli:")
    assert {e["status"] for e in acked["incident"]["evidence"]} == {"acknowledged"}
    assert resolved is not None and resolved["incident"]["resolution_note"] == "retrained"
    assert listed is not None and [i["id"] for i in listed["incidents"]] == [incident["id"]]
    assert alerts is not None and {a["id"] for a in alerts["alerts"]} == set(incident["alert_ids"])
    assert text_code == 0 and f"#{incident['id']} " not in text


def test_drift_takes_the_incident_window(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: a zero-day window groups only alarms of the same day
    code, data, _ = run(capsys, "drift", "--no-images", "--incident-window", "0", "--json")

    # Assert
    assert code == 0 and data is not None and data["settings"]["incident_window_days"] == 0
    for incident in data["incidents"]:
        assert len({e["alarm_date"] for e in incident["evidence"]}) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("drift", "--no-images", "--site", "nowhere"), "unknown site"),
        (("drift", "--no-images", "--window", "week"), "--window"),
        (("drift", "--no-images", "--distance-window", "day"), "studies:N"),
        (("drift", "--no-images", "--budget", "0"), "--budget"),
        (("alert", "ack", "999", "--note", "x"), "unknown drift alert"),
        (("alert", "list", "--status", "bogus"), "--status"),
        (("incident", "ack", "999", "--note", "x"), "unknown drift incident: 999"),
        (("incident", "resolve", "999", "--note", " "), "note is required to mark incident 999"),
        (("incident", "list", "--status", "closed"), "'closed'"),
        (("incident", "list", "--site", "nowhere"), "unknown site: 'nowhere'"),
        (("drift", "--no-images", "--incident-window", "-1"), "'-1'"),
        (("drift", "--no-images", "--incident-window", "366"), "0 to 365"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    # Execute
    code, data, err = run(capsys, *argv, "--json")

    # Assert
    assert code == 2 and data is None
    assert err.count("\n") == 1 and message in err


def test_parser_shape_matches_the_other_commands() -> None:
    # Prepare
    parser = _Parser(prog="vigil")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    # Execute
    register_drift(sub, _add)
    args = parser.parse_args(["drift", "--json"])

    # Assert
    assert args.json is True and args.window == "day" and callable(args.handler)
