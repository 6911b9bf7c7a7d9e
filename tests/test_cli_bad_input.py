"""Bad values on the command line exit 2 with one line naming them, before any work, with nothing written.

Regression tests for an outside probe's findings: database ids beyond SQLite's INTEGER range,
``--out`` paths that cannot be folders, counts without an upper bound, negative counts, values
that split the one-line error, text that is not UTF-8, and ``vigil --help`` loading torch. The
long commands' work is replaced by a sentinel (``no_work``), so a value that slips through is
seen at once instead of running for hours.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from core.cli import main

REPO: Final = Path(__file__).resolve().parents[1]


class WorkStarted(Exception):  # noqa: N818 - a sentinel, not an error
    """Raised in place of a long command's work."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("a regular file\n")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every long command's work raise :class:`WorkStarted`."""
    import core.sampledata
    from core.bench import suites
    from core.models import allocator, training
    from core.services import setup

    def started(*_args: Any, **_kwargs: Any) -> Any:
        raise WorkStarted

    monkeypatch.setattr(core.sampledata, "generate_cohort", started)
    monkeypatch.setattr(training, "train_model", started)
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda *_a, **_k: False)
    monkeypatch.setattr(suites, "run_suite", started)
    monkeypatch.setattr(setup, "initialize", started)


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with a digest of each file, and the database's rows: "nothing written".

    The database file's bytes are not compared: SQLite checkpoints its write-ahead log whenever an
    earlier command's connection is closed, which rewrites the file without a new row.
    """
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            seen[os.path.join(dirpath, name)] = "dir"
        for name in filenames:
            path = Path(dirpath, name)
            if not name.startswith("vigil.db"):
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "other"
    if (root / "vigil.db").exists():
        with contextlib.closing(sqlite3.connect(root / "vigil.db")) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            seen |= {f"rows of {t}": str(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    return seen


def _refused(capsys: pytest.CaptureFixture[str], root: Path, argv: list[str]) -> str:
    """Run ``argv``; assert exit 2, one stderr line, empty stdout and no change under ``root``; return stderr."""
    before = _snapshot(root)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert out == ""
    assert err.startswith("vigil: error: ") and err.count("\n") == 1 and len(err.splitlines()) == 1, err
    assert _snapshot(root) == before, "a refused command wrote something"
    return err


# --- item 7: database ids and unusable output folders ----------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrator", "approve", "99999999999999999999999"],
        ["alert", "ack", "99999999999999999999999", "--note", "x"],
        ["alert", "resolve", str(2**63), "--note", "x"],
        ["calibrator", "approve", "-1"],
        ["alert", "ack", "0", "--note", "x"],
        ["incident", "ack", "99999999999999999999999", "--note", "x"],
        ["incident", "resolve", str(2**63), "--note", "x"],
        ["incident", "resolve", "0", "--note", "x"],
        ["calibrator", "approve", "1e3"],
    ],
)
def test_a_database_id_outside_1_to_2_63_exits_2_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # Prepare: a store with one audited action, so the refusal can be seen to add nothing
    assert main(["site", "add", "NORTH"]) == 0
    capsys.readouterr()

    # Execute
    err = _refused(capsys, home, [*argv, "--json"])

    # Assert
    words = {"calibrator", "approve", "alert", "incident", "ack", "resolve", "--note", "x"}
    bad = next(a for a in argv if a not in words)
    assert repr(bad) in err and str(2**63 - 1) in err


@pytest.mark.parametrize("out", ["/dev/null", "{tmp}/file", "{tmp}/file/sub", "{tmp}/fifo", "", "/proc/sys/vigil"])
def test_sample_data_refuses_an_out_that_cannot_be_a_folder(
    home: Path, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    # Execute
    path = out.replace("{tmp}", str(home))
    err = _refused(capsys, home, ["sample-data", "--out", path, "--studies", "1", "--json"])

    # Assert
    assert "--out" in err and path in err


# --- item 9: counts are bounded, negative ones refused, and the bounds are stated --------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sample-data", "--out", "{tmp}/c", "--studies", "100000000"], "1 to 5000"),
        (["sample-data", "--out", "{tmp}/c", "--studies", "5001"], "'5001'"),
        (["sample-data", "--out", "{tmp}/c", "--studies=-3"], "'-3'"),
        (["sample-data", "--out", "{tmp}/c", "--seed=-1"], "'-1'"),
        (["bench", "--rounds", "100000000"], "1 to 100"),
        (["bench", "--rounds", "0"], "'0'"),
        (["bench", "--rounds=-2"], "'-2'"),
        (["bench", "--record", "{tmp}/file"], "{tmp}/file"),
        (["bench", "--record", "{tmp}/rec", "--markdown", "{tmp}/dir"], "{tmp}/dir"),
        (["bench", "--markdown", "{tmp}/B.md"], "--record"),
        (["bench", "--suite", "nope"], "'nope'"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--epochs", "100000000"], "1 to 1000"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--epochs=-1"], "'-1'"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--crop-epochs=-1"], "'-1'"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--seed", str(2**64)], str(2**64)),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--localization-weight", "nan"], "'nan'"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--localization-weight=-1"], "'-1'"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/o", "--version", "../escape"], "'../escape'"),
        (["train", "--from", "v1", "--version", "v2", "--l2sp-weight", "nan"], "'nan'"),
        (["train", "--from", "v1", "--version", "v2", "--l2sp-weight=-1"], "'-1'"),
        (["train", "--from", "v1", "--version", "v2", "--threshold-rule", "median"], "'median'"),
        (["train", "--cohort", "/dev/zero", "--out", "{tmp}/o"], "/dev/zero"),
        (["train", "--cohort", "{tmp}/file", "--out", "{tmp}/o"], "{tmp}/file"),
        (["train", "--cohort", "{tmp}/dir", "--out", "{tmp}/file/sub"], "{tmp}/file"),
        (["train", "--cohort", "{tmp}/dir", "--eval-cohort", "{tmp}/fifo", "--out", "{tmp}/o"], "{tmp}/fifo"),
        (["explain-report", "v1", "--max-cases", "1000000000"], "1 to 1000"),
        (["explain-report", "v1", "--kernelshap-samples", "1000000000000"], "1000000000000"),
        (["explain-report", "v1", "--gradientshap-samples=-5"], "'-5'"),
        (["explain-report", "v1", "--cohort", "/dev/null"], "/dev/null"),
        (["validate", "--bootstrap", "1000000000000"], "1 to 100000"),
        (["validate", "--seed", str(2**40)], str(2**40)),
        (["validate", "--min-cases=-1"], "'-1'"),
        (["calibrator", "fit", "NORTH", "--folds", "1000000000"], "2 to 100"),
        (["drift", "--budget", "inf"], "'inf'"),
        (["drift", "--budget", "0.001"], "0.1"),
        (["outcomes", "load-ground-truth", "/dev/zero"], "/dev/zero"),
        (["outcomes", "load-ground-truth", "{tmp}/fifo"], "{tmp}/fifo"),
    ],
)
def test_bad_counts_and_paths_exit_2_before_any_work(
    home: Path, no_work: None, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    # Execute
    err = _refused(capsys, home, [a.replace("{tmp}", str(home)) for a in [*argv, "--json"]])

    # Assert
    assert needle.replace("{tmp}", str(home)) in err


@pytest.mark.parametrize(
    ("words", "bound"),
    [
        (["sample-data"], "1 to 5000"),
        (["bench"], "1 to 100"),
        (["train"], "1 to 1000"),
        (["explain-report"], "1 to 1000"),
        (["validate"], "1 to 100000"),
        (["calibrator", "fit"], "2 to 100"),
    ],
)
def test_help_states_the_bounds(capsys: pytest.CaptureFixture[str], words: list[str], bound: str) -> None:
    # Execute
    code = main([*words, "--help"])

    # Assert
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps help text anywhere
    assert code == 0 and bound in out


def test_copied_bounds_and_names_match_their_sources() -> None:
    # The CLI copies these so that building the parser imports neither the generator nor torch.
    from core.bench.suites import SUITES
    from core.cli import commands
    from core.sampledata import cohort

    assert commands.MAX_STUDIES_PER_SITE == cohort.MAX_STUDIES_PER_SITE
    assert commands.BENCH_SUITES == tuple(SUITES)


def test_generate_cohort_refuses_more_than_the_bound(tmp_path: Path) -> None:
    from core.errors import BadInputError
    from core.sampledata import generate_cohort
    from core.sampledata.cohort import MAX_STUDIES_PER_SITE

    with pytest.raises(BadInputError, match=str(MAX_STUDIES_PER_SITE)):
        generate_cohort(tmp_path / "c", studies_per_site=MAX_STUDIES_PER_SITE + 1)
    assert not (tmp_path / "c").exists()


# --- the one-line error, whatever the value holds ---------------------------------------------------


@pytest.mark.parametrize("bad", ["no\nsuch", "esc\x1b[2Jape", "line\u2028sep", "cr\rlf"])
def test_an_error_naming_a_value_with_control_characters_stays_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    # Execute: the path is named in the error; raw, its control character would split or garble the line
    err = _refused(capsys, home, ["ingest", str(home / bad), "--site", "NORTH", "--json"])

    # Assert
    assert "\x1b" not in err and "\r" not in err and "\u2028" not in err


def test_an_argument_that_is_not_utf8_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: the byte 0xFF in argv reaches Python as the lone surrogate U+DCFF
    assert main(["site", "add", "NORTH"]) == 0
    capsys.readouterr()

    # Execute
    err = _refused(capsys, home, ["model", "show", "v\udcff", "--json"])

    # Assert
    assert "UTF-8" in err and "\\udcff" in err


# --- start-up: building the parser loads no torch ----------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["explain", "--help"], ["calibrator", "approve", "x"]])
def test_help_and_usage_errors_do_not_import_torch(home: Path, argv: list[str]) -> None:
    # Prepare: a fresh interpreter (this one has long imported torch) on this checkout's code
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | {"PYTHONPATH": str(REPO)}
    script = (
        "import sys\n"
        "from core.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'captum', 'monai') if m in sys.modules)\n"
        "sys.stderr.write(f'HEAVY={heavy} CODE={code}\\n')\n"
    )

    # Execute
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )

    # Assert
    assert "HEAVY=[]" in done.stderr, done.stderr[-600:]
