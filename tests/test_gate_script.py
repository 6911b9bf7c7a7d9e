"""``scripts/test``, the one gate: a failing check stops it before pytest, whichever check it is.

The script runs in a scratch copy of the repository layout whose tools are small stand-ins that
log their call and exit with the status the test chooses: what is under test is the script's
control flow (a failure inside an ``a && b`` list once slipped through ``set -e``), not the tools.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The stand-ins and the check each one is, in the order the gate runs them.
TOOLS = (".venv/bin/ruff", ".venv/bin/mypy", ".venv/bin/lint-imports", "scripts/scan-secrets", ".venv/bin/pytest")


def _scratch(tmp_path: Path, failing: str | None, pytest_status: int = 0) -> tuple[Path, Path]:
    """A copy of ``scripts/test`` among stand-ins; ``failing`` (a path of :data:`TOOLS`, or ``ruff format``) exits 1."""
    root, log = tmp_path / "repo", tmp_path / "calls.log"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "test", root / "scripts" / "test")
    for name in ("scripts/setup-venv", "scripts/install-system-deps", ".venv/bin/python", *TOOLS):
        status = 1 if failing == name else 0
        if name.endswith("pytest"):
            status = pytest_status
        body = f'echo "{name} $*" >> "{log}"\n'
        if name.endswith("ruff") and failing == "ruff format":
            body += 'if [ "$1" = format ]; then exit 1; fi\n'
        _script(root / name, body + f"exit {status}\n")
    return root, log


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/usr/bin/env bash\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _gate(root: Path) -> int:
    return subprocess.run([root / "scripts" / "test"], capture_output=True, timeout=60, check=False).returncode


@pytest.mark.parametrize("failing", [*TOOLS[:-1], "ruff format"])
def test_a_failing_check_fails_the_gate_before_pytest(tmp_path: Path, failing: str) -> None:
    root, log = _scratch(tmp_path, failing)
    assert _gate(root) != 0
    assert ".venv/bin/pytest" not in log.read_text()


def test_the_gate_passes_when_every_check_passes_and_pytest_collects_nothing(tmp_path: Path) -> None:
    root, log = _scratch(tmp_path, None, pytest_status=5)  # 5: no tests collected
    assert _gate(root) == 0
    ran = [line.split()[0] for line in log.read_text().splitlines()]
    setup = ["scripts/setup-venv", "scripts/install-system-deps"]
    # .venv/bin/python: compiling core and ui, just before pytest
    assert ran == [*setup, ".venv/bin/ruff", ".venv/bin/ruff", *TOOLS[1:-1], ".venv/bin/python", TOOLS[-1]]


def test_a_failing_pytest_fails_the_gate(tmp_path: Path) -> None:
    root, _ = _scratch(tmp_path, None, pytest_status=1)
    assert _gate(root) == 1
