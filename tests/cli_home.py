"""What the ``vigil`` command tests share: a private home for the command, and ``--json`` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main

__all__ = ["point_vigil_at", "run_json"]


def point_vigil_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Send ``vigil`` to a home and SQLite file under ``tmp_path``, ignoring any ``VIGIL_CONFIG``."""
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    """Run ``vigil ARGV --json``: the exit code, the one JSON line parsed (``{}`` when none), stderr."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert out.count("\n") <= 1, "--json must print at most one line"
    return code, (json.loads(out) if out.strip() else {}), err
