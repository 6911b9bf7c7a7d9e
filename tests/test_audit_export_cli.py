"""``vigil audit export`` through the real command, checked by ``verify_evidence.py`` on a Python without Vigil."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.cli import main
from tests.cli_home import point_vigil_at, run_json
from tests.core.audit.bare_python import make_bare_python, run_bare


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return point_vigil_at(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bare_python(tmp_path_factory.mktemp("bare"))


run = run_json


def _ledger_size(capsys: pytest.CaptureFixture[str]) -> int:
    code, data, _ = run(capsys, "audit", "verify")
    assert code == 0
    return int(str(data["checked"]))


def test_export_verifies_on_a_machine_without_vigil(
    home: Path, capsys: pytest.CaptureFixture[str], bare_python: Path
) -> None:
    # Prepare
    for name in ("north", "south"):
        assert run(capsys, "site", "add", name)[0] == 0
    assert main(["audit", "public-key"]) == 0
    key = home / "key.hex"  # what the reviewer obtained from the hospital beforehand
    key.write_text(capsys.readouterr().out)
    reviewer = home / "reviewer"
    reviewer.mkdir()

    # Execute
    code, data, _ = run(capsys, "audit", "export", "--out", str(home / "evidence"))
    proof = run_bare(bare_python, "-c", "import core", cwd=reviewer)
    verified = run_bare(
        bare_python, str(home / "evidence" / "verify_evidence.py"), "--public-key", str(key), cwd=reviewer
    )
    vcode, after, _ = run(capsys, "audit", "verify")

    # Assert
    assert code == 0 and data["ok"] is True and data["entries"] == 3 and data["export_seq"] == 2
    assert "summary.html" in data["files"] and data["checkpoint"]["tree_size"] == 3  # type: ignore[index,operator]
    assert proof.returncode != 0 and "No module named 'core'" in proof.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1].startswith("VERIFIED")
    assert vcode == 0 and (after["covered"], after["uncovered"]) == (3, 0)


def test_export_text_output_names_the_folder_and_the_result(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    assert run(capsys, "site", "add", "north")[0] == 0

    # Execute
    code = main(["audit", "export", "--out", str(home / "evidence")])
    text = capsys.readouterr().out

    # Assert
    assert code == 0
    assert str(home / "evidence") in text and "verify_evidence.py" in text and "2 entries" in text


def test_bad_out_exits_2_naming_it_and_writes_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    assert run(capsys, "site", "add", "north")[0] == 0
    size = _ledger_size(capsys)
    afile = home / "afile"
    afile.write_text("x")
    full = home / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    fifo = home / "fifo"
    os.mkfifo(fifo)

    # Execute / Assert
    for bad in (afile, full, fifo):
        code, data, err = run(capsys, "audit", "export", "--out", str(bad))
        assert code == 2 and data == {}, bad
        assert err.count("\n") == 1 and str(bad) in err
    assert (full / "keep.txt").read_text() == "x" and afile.read_text() == "x"
    assert _ledger_size(capsys) == size
