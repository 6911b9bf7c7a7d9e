"""``vigil --help`` and ``vigil audit verify`` import no model, UI or data-frame library.

A command that needs no model must not pay for one: building the parser once imported torch's
neighbours (scipy, pydicom, sqlalchemy, alembic, numpy) and took seconds. The check runs in a fresh
interpreter, since this test process has imported everything already. It is a list of modules,
not a timing, so it never flakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import drift as drift_cli
from core.cli import validate as validate_cli

HEAVY = ("torch", "monai", "captum", "pandas", "scipy", "streamlit", "sklearn", "pydicom")
#: Needed by the commands that touch the store, never by building the parser.
STORE = ("sqlalchemy", "alembic")

_PROBE = """
import contextlib, io, json, sys
from core.cli import build_parser, main
build_parser()
after_parser = sorted(sys.modules)
with contextlib.redirect_stdout(io.StringIO()):
    help_code = main(["--help"])
after_help = sorted(sys.modules)
if len(sys.argv) > 1:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        verify_code = main(["audit", "verify", "--json"])
    verify = {"code": verify_code, "out": json.loads(out.getvalue()), "modules": sorted(sys.modules)}
else:
    verify = None
print(json.dumps({"parser": after_parser, "help": after_help, "help_code": help_code, "verify": verify}))
"""


def _probe(env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _loaded(modules: object, names: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return [name for name in names if name in modules]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return {**base, "VIGIL_HOME": str(tmp_path / "home"), "VIGIL_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}"}


def test_building_the_parser_and_help_import_nothing_heavy(env: dict[str, str]) -> None:
    # Execute
    result = _probe(env)

    # Assert
    assert result["help_code"] == 0
    for stage in ("parser", "help"):
        assert _loaded(result[stage], HEAVY + STORE + ("numpy",)) == [], stage


def test_audit_verify_on_a_tiny_store_imports_no_model(env: dict[str, str]) -> None:
    # Prepare: a store with an entry, written by another process
    subprocess.run(
        [sys.executable, "-c", "from core.cli import main; raise SystemExit(main(['site', 'add', 'north', '--json']))"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )

    # Execute
    result = _probe(env, "verify")

    # Assert
    verify = result["verify"]
    assert isinstance(verify, dict)
    assert verify["code"] == 0 and verify["out"]["ok"] is True and verify["out"]["checked"] >= 1
    assert _loaded(verify["modules"], HEAVY) == []


def test_the_parser_defaults_copied_from_heavy_modules_are_theirs() -> None:
    # Prepare: the modules the parser no longer imports
    from core.drift.incidents import DEFAULT_WINDOW_DAYS
    from core.drift.monitor import MonitorSettings
    from core.services.calibration import AUTO

    # Assert
    assert drift_cli.DEFAULT_BUDGET == MonitorSettings().false_alarm_budget
    assert drift_cli.DEFAULT_INCIDENT_WINDOW_DAYS == DEFAULT_WINDOW_DAYS
    assert validate_cli.AUTO_METHOD == AUTO
