"""The one reader behind the DICOM gate, the change-control plan and the identity provider's secrets.

Each caller's wording is tested with the caller (tests/core/imaging/test_imaging_files.py,
tests/core/registry/test_plan.py, tests/core/services/test_shell_signature.py); here, what the
reader itself promises them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.errors import UnusablePathError
from core.files import FileTooLargeError, file_kind, read_regular_file


def test_a_missing_file_is_unusable_with_the_os_error_as_its_cause(tmp_path: Path) -> None:
    with pytest.raises(UnusablePathError) as info:
        read_regular_file(tmp_path / "absent.toml", max_bytes=10)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert str(tmp_path / "absent.toml") in str(info.value)


def test_a_file_over_the_bound_says_its_size_and_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLargeError) as info:
        read_regular_file(path, max_bytes=10)
    assert (info.value.size, info.value.max_bytes, info.value.growing) == (11, 10, False)


def test_a_file_longer_than_its_reported_size_is_cut_one_byte_past_the_bound() -> None:
    # /proc files report size 0 and then yield their text: what a file growing during the read looks like.
    with pytest.raises(FileTooLargeError) as info:
        read_regular_file(Path("/proc/self/status"), max_bytes=10)
    assert (info.value.size, info.value.growing) == (11, True)


def test_within_the_bound_the_whole_file_is_read_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_regular_file(tmp_path / "link", max_bytes=3) == b"abc"


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: os.mkfifo(p), "a named pipe (FIFO)"),
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
    ],
)
def test_anything_but_a_regular_file_is_refused_unread_and_without_waiting(
    tmp_path: Path, make: object, kind: str
) -> None:
    path = tmp_path / "named"
    make(path)  # type: ignore[operator]
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _attempt(path, outcome), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), f"reading {kind} blocked"
    assert isinstance(outcome[0], UnusablePathError) and not isinstance(outcome[0], FileTooLargeError)
    assert f"{kind}, not a regular file" in str(outcome[0])


def test_file_kind_names_a_mode_it_does_not_know() -> None:
    assert file_kind(0) == "an unknown kind of file"


def _attempt(path: Path, outcome: list[BaseException]) -> None:
    try:
        read_regular_file(path, max_bytes=1 << 20)
    except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
        outcome.append(exc)
