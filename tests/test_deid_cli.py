"""``vigil deid SRC OUT``: one JSON object on success; exit 2 naming a bad path or site, with nothing written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.sampledata import MANIFEST_NAME, read_manifest
from tests.cli_home import point_vigil_at, run_json


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_vigil_at(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def src(home: Path) -> Path:
    from core.config import SAMPLE_DATA_DIR

    folder = home / "src"
    folder.mkdir()
    for row in read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME)[:2]:
        shutil.copy(SAMPLE_DATA_DIR / row.path, folder / Path(row.path).name)
    return folder


# The child runs ``vigil deid`` for real and is held inside its second file's write: the
# temporary file is whole and flushed, not yet renamed. The parent kills it there with SIGKILL.
_HELD_CHILD = """
import os, sys, time
from pathlib import Path
from core.cli import main
held, rename = Path(sys.argv[3]), os.replace
def replace(src, dst):
    if replace.calls:
        held.write_text(str(src))
        time.sleep(600)
    replace.calls += 1
    rename(src, dst)
replace.calls = 0
os.replace = replace
main(["deid", sys.argv[1], sys.argv[2], "--json"])
"""


def _written(home: Path) -> list[Path]:
    return sorted(p for p in (home / "home").rglob("*") if p.is_file() and "secrets" in p.parts)


def test_deid_writes_and_reports_one_json_object(home: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    code, _, err = run_json(capsys, "site", "add", "benchmark")
    assert code == 0, err

    # Execute
    code, out, err = run_json(capsys, "deid", str(src), str(home / "out"), "--site", "benchmark")

    # Assert
    assert code == 0, err
    assert out["written"] == 2 and out["quarantined"] == [] and out["skipped"] == []
    assert out["site"] == "benchmark" and len(str(out["table_sha256"])) == 64
    assert out["profile_version"] == "PS3.15-2024b/vigil-1"
    assert len(list((home / "out").glob("2.25.*.dcm"))) == 2
    assert str(out["key_id"]) not in err


def test_a_retained_option_is_recorded(home: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_json(capsys, "deid", str(src), str(home / "out"), "--retain", "retain_device_identity")
    assert code == 0, err
    assert out["options"] == ["retain_device_identity"]


@pytest.mark.parametrize(
    ("make_src", "out_name", "needle"),
    [
        (lambda h: h / "missing", "out", "path not found"),
        (lambda h: (h / "f.dcm").write_bytes(b"x") and h / "f.dcm", "out", "the argument must name a folder"),
        (lambda h: os.mkfifo(h / "fifo") or h / "fifo", "out", "named pipe (FIFO)"),
        (lambda h: Path("/dev/null"), "out", "character device"),
        (lambda h: h / "src", "src/out", "inside the source folder"),
    ],
    ids=["missing", "file", "fifo", "device", "out-inside-src"],
)
def test_a_bad_source_or_output_exits_2_naming_it(
    home: Path, src: Path, capsys: pytest.CaptureFixture[str], make_src: object, out_name: str, needle: str
) -> None:
    # Prepare
    bad = make_src(home)  # type: ignore[operator]

    # Execute
    code, out, err = run_json(capsys, "deid", str(bad), str(home / out_name))

    # Assert: one line naming the path, nothing written (no output folder, no key)
    assert code == 2 and out == {}, err
    assert needle in err and str(bad) in err and err.count("\n") == 1
    assert not (home / "out").exists() and not (src / "out").exists()
    assert _written(home) == []


def test_an_unknown_site_exits_2_before_the_key_is_made(
    home: Path, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_json(capsys, "deid", str(src), str(home / "out"), "--site", "nowhere")
    assert code == 2 and out == {} and "unknown site: 'nowhere'" in err
    assert _written(home) == [] and not (home / "out").exists()


def test_an_unknown_option_is_a_usage_error(home: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_json(capsys, "deid", str(src), str(home / "out"), "--retain", "everything")
    assert code == 2 and out == {} and "'everything'" in err


def _deid_entries() -> list[dict[str, object]]:
    from core.config import load_settings
    from core.services.store import open_store
    from core.store import audit_log

    with open_store(load_settings(os.environ))() as session:
        return [dict(e.payload) for e in audit_log.iter_entries(session) if e.action == "deid_exported"]


def test_a_run_killed_mid_write_is_completed_by_the_next(
    home: Path, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the outputs of an undisturbed run, to compare with
    code, _, err = run_json(capsys, "deid", str(src), str(home / "clean"))
    assert code == 0, err
    clean = {p.name: p.read_bytes() for p in (home / "clean").iterdir()}
    held, out = home / "held", home / "out"

    # Execute: kill -9 a real run while it writes its second file
    child = subprocess.Popen(
        [sys.executable, "-c", _HELD_CHILD, str(src), str(out), str(held)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not held.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    left = sorted(p.name for p in out.iterdir())
    audited = len(_deid_entries())
    code, report, err = run_json(capsys, "deid", str(src), str(out))

    # Assert: the kill left one output and one temporary file, and no audit entry of its own ...
    assert len(left) == 2 and len([n for n in left if n.startswith(".deid-") and n.endswith(".part")]) == 1
    assert audited == 1  # the undisturbed run's
    # ... the next run removed the temporary file, wrote every output once, and says so
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == clean
    assert (report["written"], report["replaced"], report["stale_parts_removed"]) == (2, 1, 1)
    last = _deid_entries()[-1]
    assert (last["written"], last["replaced"], last["stale_parts_removed"], last["completed"]) == (2, 1, 1, True)
