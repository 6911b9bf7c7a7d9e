"""The gate's file reader: regular files only, never more than its bound, never blocking."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.errors import DicomRejectedError
from core.imaging.files import read_regular_file


def _reason(path: Path, **kwargs: int) -> str:
    with pytest.raises(DicomRejectedError) as info:
        read_regular_file(path, **kwargs)
    return info.value.reason


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x" * 3000)
    assert read_regular_file(path, max_bytes=3000) == b"x" * 3000


def test_the_zero_device_is_refused_unread() -> None:
    # On c038d86 this read until memory ran out.
    assert "character device" in _reason(Path("/dev/zero"))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # Prepare: a named pipe nobody writes to (on c038d86 reading it hung forever)
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    reasons: list[str] = []

    def read() -> None:
        reasons.append(_reason(fifo))

    # Execute
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)

    # Assert
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert reasons and "FIFO" in reasons[0]


def test_a_folder_is_refused(tmp_path: Path) -> None:
    assert "a folder" in _reason(tmp_path)


def test_a_file_over_the_bound_is_refused_naming_size_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.dcm"
    path.write_bytes(b"x" * 1001)
    reason = _reason(path, max_bytes=1000)
    assert "1001 bytes" in reason and "limit 1000 bytes" in reason


def test_a_dangling_link_names_its_target(tmp_path: Path) -> None:
    link = tmp_path / "gone.dcm"
    link.symlink_to(tmp_path / "moved-away.dcm")
    assert "dangling symbolic link" in _reason(link) and "moved-away.dcm" in _reason(link)
