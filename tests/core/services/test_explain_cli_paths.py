"""``vigil explain`` refuses unusable ``--out`` / ``--export-dicom`` paths before computing anything.

The probe's finding: these paths used to fail only after the explanation artifact, its row and
its audit entry were written. Now each exits 2 with one line naming the path, and the store, the
artifacts and the file system are as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.cli import main
from core.store.tables import ExplanationRow
from tests.core.services.conftest import Env
from tests.core.services.test_explain_report_study import _counts, _ready


@pytest.fixture
def cli_env(env: Env, small_cohort: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at ``env``'s store; return a scored study's UID."""
    uid = _ready(env, small_cohort)
    monkeypatch.setenv("VIGIL_HOME", str(env.settings.home))
    monkeypatch.setenv("VIGIL_DATABASE_URL", env.settings.database_url)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    return uid


def _explanation_rows(env: Env) -> int:
    with env.sf() as s:
        return int(s.scalar(select(func.count()).select_from(ExplanationRow)) or 0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--out", "{tmp}/file/x.npy"], "{tmp}/file"),
        (["--out", "{tmp}/folder.npy"], "{tmp}/folder.npy"),
        (["--out", "{tmp}/x.txt"], ".npy"),
        (["--export-dicom", "{tmp}/file/sub"], "{tmp}/file"),
        (["--export-dicom", "/dev/null"], "/dev/null"),
        (["--out", "{tmp}/same.npy", "--export-dicom", "{tmp}/same.npy"], "{tmp}/same.npy"),
        (["--out", "{tmp}/a.npy", "--export-dicom", "{tmp}/a.npy/dcm"], "{tmp}/a.npy"),
    ],
)
def test_an_unusable_output_path_exits_2_and_writes_nothing(
    env: Env, cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    # Prepare
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    (out_dir / "file").write_text("a regular file\n")
    (out_dir / "folder.npy").mkdir()
    argv = ["explain", cli_env, "--method", "gradcam", *[o.replace("{tmp}", str(out_dir)) for o in options], "--json"]
    before = (_counts(env), _explanation_rows(env), sorted(out_dir.rglob("*")))

    # Execute
    code = main(argv)
    out, err = capsys.readouterr()

    # Assert
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and named.replace("{tmp}", str(out_dir)) in err
    assert (_counts(env), _explanation_rows(env), sorted(out_dir.rglob("*"))) == before


def test_a_usable_out_under_a_new_folder_is_written(
    env: Env, cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    target = tmp_path / "new" / "deeper" / "map.npy"
    code = main(["explain", cli_env, "--method", "gradcam", "--out", str(target), "--json"])

    # Assert
    assert code == 0 and target.is_file()
    assert json.loads(capsys.readouterr().out)["out"] == str(target)
