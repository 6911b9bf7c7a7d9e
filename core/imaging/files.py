"""Read one file offered to the gate: regular files only, never more than a bound.

A path typed by a careless operator can name anything: ``/dev/zero`` (endless), a named FIFO
(opening it for reading blocks until a writer appears), a socket, a folder, or a file far larger
than any radiograph. Each is refused here with one sentence, before a byte of it is parsed.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

from core.errors import DicomRejectedError

__all__ = ["DEFAULT_MAX_FILE_BYTES", "file_kind", "read_regular_file"]

#: The default largest file the gate reads: far above a large radiograph (a 4,300 × 4,300
#: 16-bit film is about 37 MB uncompressed) and well below the machine's memory.
DEFAULT_MAX_FILE_BYTES: Final = 512 * 1024 * 1024

_CHUNK: Final = 1 << 20

_KINDS: Final = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),  # seen only through lstat(): callers that do not follow links
)


def file_kind(mode: int) -> str:
    """Name what a ``st_mode`` describes ("a regular file", "a character device", ...), for a message."""
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def read_regular_file(path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Read a regular file of at most ``max_bytes`` bytes.

    The file is opened without blocking (a FIFO would otherwise wait forever for a writer) and
    checked on the open descriptor, so a path swapped between a check and the read cannot
    slip through. The read itself stops one byte past the bound, so a file that grows while
    it is read is refused too.

    Parameters
    ----------
    path : Path
        What the operator named, or an entry of a folder they named.
    max_bytes : int
        The largest acceptable size in bytes (at least 1).

    Returns
    -------
    bytes
        The whole file.

    Raises
    ------
    DicomRejectedError
        Missing, unreadable, not a regular file (a device, FIFO, socket or folder), a dangling
        symbolic link, or larger than ``max_bytes``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DicomRejectedError(path, _open_failure(path, exc)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DicomRejectedError(path, f"{file_kind(info.st_mode)}, not a regular file: nothing was read.")
        if info.st_size > max_bytes:
            raise DicomRejectedError(path, _too_large(info.st_size, max_bytes))
        return _read_bounded(fd, path, max_bytes)
    except OSError as exc:
        raise DicomRejectedError(
            path, f"the file cannot be read ({type(exc).__name__}: {exc.strerror or exc})."
        ) from exc
    finally:
        os.close(fd)


def _read_bounded(fd: int, path: Path, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise DicomRejectedError(path, _too_large(total, max_bytes, growing=True))
    return b"".join(parts)


def _too_large(size: int, max_bytes: int, *, growing: bool = False) -> str:
    grew = " (it grew while being read)" if growing else ""
    return (
        f"the file is larger than the ingest limit{grew}: {'over ' if growing else ''}{size} bytes, "
        f"limit {max_bytes} bytes (setting max_file_mb)."
    )


def _open_failure(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"a dangling symbolic link (to {os.readlink(path)!r}): its target does not exist."
    return _unreadable(exc)


def _unreadable(exc: OSError) -> str:
    return f"the file cannot be read ({type(exc).__name__}: {exc.strerror or exc})."
