"""Checks of the paths a command is given, made before any work so that a refused path writes nothing.

A command that writes its result last (``vigil explain --out``, ``vigil sample-data --out``) would
otherwise store rows, audit entries and artifacts and only then fail on the path. Each check here
names the path and the problem in one sentence (exit code 2):

- an output file: refused when it is a folder, a device, a FIFO or a socket, or cannot be created;
- an output folder: refused when it is a file or any other non-folder, or cannot be created;
- "cannot be created": the nearest existing ancestor is not a folder (the path is under a regular
  file) or is not writable, which is probed with an anonymous temporary file because permission
  bits do not tell (root ignores them; ``/proc`` and ``/sys`` refuse new entries whatever they say);
- an input file or folder: refused when missing or of the wrong kind.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from core.errors import PathNotFoundError, UnusablePathError
from core.files import file_kind as kind_of

__all__ = [
    "check_existing_path",
    "check_input_dir",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "kind_of",
]

#: stat() errors that only mean "there is nothing at this path" (ENOTDIR: a component is a file).
_ABSENT: Final = (errno.ENOENT, errno.ENOTDIR)


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` (following links), ``None`` when nothing is there; other failures refuse the path.

    A dangling symbolic link is refused too: nothing is there to read, and writing through it
    would create its target somewhere else (or fail with "file exists" when making a folder).
    """
    try:
        return path.stat()
    except OSError as exc:
        if exc.errno not in _ABSENT:
            raise UnusablePathError(path, exc.strerror or str(exc)) from exc
    if os.path.lexists(path):
        raise UnusablePathError(path, f"it is a symbolic link to {os.readlink(path)!r}, which does not exist")
    return None


def check_output_file(path: Path, *, suffix: str | None = None) -> None:
    """Refuse a path a file cannot be written to, before any work.

    Parameters
    ----------
    path : Path
        Where the command will write one file; an existing regular file is overwritten.
    suffix : str, optional
        The suffix the name must end with (``".npy"``).

    Raises
    ------
    UnusablePathError
        Wrong suffix, an existing folder or non-regular file, or a place where it cannot be created.
    """
    if suffix is not None and path.suffix != suffix:
        raise UnusablePathError(path, f"the name must end with {suffix}")
    info = _stat(path)
    if info is None:
        _check_creatable(path)
    elif stat.S_ISDIR(info.st_mode):
        raise UnusablePathError(path, "it is a folder; the argument must name a file")
    elif not stat.S_ISREG(info.st_mode):
        raise UnusablePathError(path, f"it is {kind_of(info.st_mode)}; the argument must name a regular file")
    elif not os.access(path, os.W_OK):
        raise UnusablePathError(path, "the file is not writable")


def check_output_dir(path: Path) -> None:
    """Refuse a path a folder cannot be written into (existing) or created at (new), before any work.

    Raises
    ------
    UnusablePathError
        An existing file or other non-folder, or a folder that cannot be written or created.
    """
    info = _stat(path)
    if info is None:
        _check_creatable(path)
    elif not stat.S_ISDIR(info.st_mode):
        raise UnusablePathError(path, f"it is {kind_of(info.st_mode)}; the argument must name a folder")
    else:
        _check_writable_dir(path, path)


def check_input_file(path: Path) -> None:
    """Refuse a missing, unreadable or non-regular input file (a device or FIFO would never end or never start).

    Raises
    ------
    PathNotFoundError
    UnusablePathError
    """
    _require_existing(path, stat.S_ISREG, "a regular file")
    if not os.access(path, os.R_OK):
        raise UnusablePathError(path, "the file is not readable")


def check_input_dir(path: Path) -> None:
    """Refuse a missing input folder, or a path that is not a folder.

    Raises
    ------
    PathNotFoundError
    UnusablePathError
    """
    _require_existing(path, stat.S_ISDIR, "a folder")


def _require_existing(path: Path, is_kind: Callable[[int], bool], noun: str) -> None:
    """Refuse a missing ``path`` or one whose ``st_mode`` is not of the kind ``is_kind`` tests for."""
    info = _stat(path)
    if info is None:
        raise PathNotFoundError(path)
    if not is_kind(info.st_mode):
        raise UnusablePathError(path, f"it is {kind_of(info.st_mode)}; the argument must name {noun}")


def check_existing_path(path: Path) -> None:
    """Refuse a path with nothing there; what kind it is, is for the command to judge.

    Raises
    ------
    PathNotFoundError
    UnusablePathError
        The path cannot even be looked at (too long, a link loop, no permission).
    """
    if _stat(path) is None:
        raise PathNotFoundError(path)


def _check_creatable(path: Path) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a folder that accepts new entries."""
    for ancestor in path.parents:
        info = _stat(ancestor)
        if info is None:
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise UnusablePathError(path, f"{ancestor} is {kind_of(info.st_mode)}, not a folder")
        _check_writable_dir(ancestor, path)
        return
    raise UnusablePathError(path, "no part of it exists")  # unreachable for "." and "/", kept for safety


def _check_writable_dir(folder: Path, path: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnusablePathError(path, f"{folder} is not writable")
    try:
        # Anonymous (O_TMPFILE) where the filesystem allows it, else created and removed at once.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UnusablePathError(path, f"{folder} does not accept new files ({exc.strerror or exc})") from exc
