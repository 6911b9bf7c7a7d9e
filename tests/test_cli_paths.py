"""The output and input path checks every command runs before any work (``core.cli._paths``).

Also ``core.imaging.export.check_export_dir``, the export's own guard, which used to let a path
under a regular file through (``mkdir`` then failed after the explanation was stored).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from core.cli import _paths
from core.errors import BadInputError, PathNotFoundError, UnusablePathError
from core.imaging.export import check_export_dir


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.npy").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


def _at(zoo: Path, spec: str) -> Path:
    return Path(spec.replace("{z}", str(zoo)))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("{z}/file/x.npy", "is a regular file, not a folder"),
        ("{z}/file/deeper/x.npy", "is a regular file, not a folder"),
        ("{z}/dir.npy", "it is a folder"),
        ("{z}/fifo", "named pipe"),
        ("/dev/null", "character device"),
        ("{z}/dir/x.txt", "must end with .npy"),
        ("{z}/loop", "cannot use"),
        ("{z}/" + "n" * 300 + ".npy", "cannot use"),
        ("/proc/sys/vigil.npy", "/proc/sys"),
    ],
)
def test_an_unusable_output_file_is_refused_naming_it(zoo: Path, spec: str, reason: str) -> None:
    # Execute / Assert
    path = _at(zoo, spec)
    suffix = None if spec in ("{z}/fifo", "/dev/null", "{z}/loop") else ".npy"
    with pytest.raises(UnusablePathError, match="cannot use") as info:
        _paths.check_output_file(path, suffix=suffix)
    assert reason in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("spec", ["{z}/file", "{z}/file/sub", "{z}/fifo", "/dev/null", "/dev/null/sub", "/proc/x"])
def test_an_unusable_output_folder_is_refused_naming_it(zoo: Path, spec: str) -> None:
    # Execute / Assert
    with pytest.raises(UnusablePathError, match="cannot use"):
        _paths.check_output_dir(_at(zoo, spec))


@pytest.mark.parametrize(
    ("check", "spec"),
    [
        (lambda p: _paths.check_output_file(p, suffix=".npy"), "{z}/new.npy"),
        (lambda p: _paths.check_output_file(p, suffix=".npy"), "{z}/new/deeper/x.npy"),
        (lambda p: _paths.check_output_file(p), "{z}/file"),  # an existing file is overwritten
        (_paths.check_output_dir, "{z}/dir"),
        (_paths.check_output_dir, "{z}/new/deeper"),
        (_paths.check_input_file, "{z}/file"),
        (_paths.check_input_dir, "{z}/dir"),
        (_paths.check_existing_path, "{z}/fifo"),
    ],
)
def test_a_usable_path_passes_and_nothing_is_created(zoo: Path, check: Callable[[Path], None], spec: str) -> None:
    # Prepare
    before = sorted(p.name for p in zoo.rglob("*"))

    # Execute
    check(_at(zoo, spec))

    # Assert
    assert sorted(p.name for p in zoo.rglob("*")) == before


@pytest.mark.parametrize(
    ("check", "spec", "error"),
    [
        (_paths.check_input_file, "{z}/missing", PathNotFoundError),
        (_paths.check_input_file, "/dev/zero", UnusablePathError),
        (_paths.check_input_file, "{z}/fifo", UnusablePathError),
        (_paths.check_input_file, "{z}/dir", UnusablePathError),
        (_paths.check_input_dir, "{z}/file", UnusablePathError),
        (_paths.check_input_dir, "{z}/file/sub", PathNotFoundError),
        (_paths.check_existing_path, "{z}/missing", PathNotFoundError),
        (_paths.check_existing_path, "{z}/loop", UnusablePathError),
    ],
)
def test_an_unusable_input_is_refused(zoo: Path, check: Callable[[Path], None], spec: str, error: type) -> None:
    # Execute / Assert
    with pytest.raises(error):
        check(_at(zoo, spec))


@pytest.mark.parametrize("spec", ["{z}/file", "{z}/file/sub", "{z}/file/a/b", "{z}/fifo", "/dev/null/sub"])
def test_check_export_dir_refuses_what_cannot_become_a_folder(zoo: Path, spec: str) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="must name a"):
        check_export_dir(_at(zoo, spec))


@pytest.mark.parametrize("spec", ["{z}/dir", "{z}/new", "{z}/new/deeper"])
def test_check_export_dir_accepts_a_folder_or_a_new_path(zoo: Path, spec: str) -> None:
    # Execute
    check_export_dir(_at(zoo, spec))

    # Assert
    assert not (zoo / "new").exists()
