"""Read a file someone named: regular files only, never more than a bound, never waiting.

A path typed by a careless operator can name anything: ``/dev/zero`` (endless), a named FIFO
(opening it for reading blocks until a writer appears), a socket, a folder, or a file far larger
than anything Vigil reads. :func:`read_regular_file` refuses each with one sentence before a byte
is parsed; the DICOM gate, the change-control plan and the identity provider's secrets all read
through it, and each caller words the refusal for its own users.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

from core.errors import UnusablePathError

__all__ = ["FileTooLargeError", "file_kind", "read_regular_file"]

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


class FileTooLargeError(UnusablePathError):
    """A file over the reader's bound: ``size`` bytes (at least; more if it was still growing)."""

    def __init__(self, path: object, size: int, max_bytes: int, *, growing: bool) -> None:
        grew, over = (" (it grew while being read)", "over ") if growing else ("", "")
        super().__init__(path, f"larger than the limit{grew}: {over}{size} bytes, limit {max_bytes}")
        self.size, self.max_bytes, self.growing = size, max_bytes, growing


def file_kind(mode: int) -> str:
    """Name what a ``st_mode`` describes ("a regular file", "a character device", ...), for a message."""
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` bytes.

    The file is opened without blocking (a FIFO would otherwise wait forever for a writer) and
    checked on the open descriptor, so a path swapped between a check and the read cannot slip
    through. The read itself stops one byte past the bound, so a file that grows while it is read
    is refused too. Symbolic links are followed.

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
    FileTooLargeError
        Larger than ``max_bytes``, before or while it was read.
    UnusablePathError
        Missing, unreadable, not a regular file (a device, FIFO, socket or folder) or a dangling
        symbolic link; the ``OSError`` behind it, if any, is its ``__cause__``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnusablePathError(path, _open_failure(path, exc)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusablePathError(path, f"{file_kind(info.st_mode)}, not a regular file: nothing was read.")
        if info.st_size > max_bytes:
            raise FileTooLargeError(path, info.st_size, max_bytes, growing=False)
        return _read_bounded(fd, path, max_bytes)
    except OSError as exc:
        raise UnusablePathError(path, _unreadable(exc)) from exc
    finally:
        os.close(fd)


def _read_bounded(fd: int, path: Path, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLargeError(path, total, max_bytes, growing=True)
    return b"".join(parts)


def _open_failure(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"a dangling symbolic link (to {os.readlink(path)!r}): its target does not exist."
    return _unreadable(exc)


def _unreadable(exc: OSError) -> str:
    return f"the file cannot be read ({type(exc).__name__}: {exc.strerror or exc})."
