from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import PathNotFoundError
from core.imaging.scan import iter_dicom_paths


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with nested files, a hidden file and an empty subfolder."""
    root = tmp_path / "incoming"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    for rel in ["z.dcm", "a.dcm", "b/deep/x.dcm", "b/y", ".DS_Store"]:
        (root / rel).write_bytes(b"x")
    return root


def test_folder_is_listed_recursively_and_sorted(tree: Path) -> None:
    # Execute
    found = iter_dicom_paths([tree])

    # Assert: hidden and extension-less files are kept for the gate to reject; folders are not listed
    assert [p.relative_to(tree).as_posix() for p in found] == [".DS_Store", "a.dcm", "b/deep/x.dcm", "b/y", "z.dcm"]


def test_files_come_first_in_given_order_and_once(tree: Path) -> None:
    # Prepare
    single = tree / "z.dcm"

    # Execute
    found = iter_dicom_paths([single, tree / "b", single])

    # Assert
    assert found == [single, tree / "b" / "deep" / "x.dcm", tree / "b" / "y"]


def test_missing_path_raises_before_anything_is_listed(tree: Path) -> None:
    # Prepare
    missing = tree / "nope.dcm"

    # Execute / Assert
    with pytest.raises(PathNotFoundError, match="nope.dcm") as info:
        iter_dicom_paths([tree, missing])
    assert info.value.path == missing


def test_empty_folder_gives_no_files(tree: Path) -> None:
    # Execute / Assert
    assert iter_dicom_paths([tree / "empty"]) == []
