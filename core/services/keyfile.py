"""Secret key files under ``VIGIL_HOME/secrets``: read, or created once (0600) and never rewritten.

Used for the FHIR pseudonym key and the DICOM de-identification key. Creation is atomic against a
concurrent first use: the key is written to a private temporary file and hard-linked into place,
which fails if another process got there first; that process's key is then the one on disk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from core.errors import PseudonymKeyError
from core.files import file_kind

__all__ = ["install_key_file", "read_key_file"]

#: Permission bits for anyone but the owner; a key file must have none of them.
_GROUP_OR_OTHERS: Final = 0o077


def read_key_file(path: Path, size: int) -> bytes | None:
    """The key at ``path`` (None when there is none); writes nothing.

    Raises
    ------
    PseudonymKeyError
        ``path`` exists but is not a regular file of ``size`` bytes (a symbolic link is refused,
        not followed), or its permissions let group or others read, write or run it: a key
        others can read no longer protects anything, so it is refused, not used.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise PseudonymKeyError(path, f"it is {file_kind(info.st_mode)}, not a regular file")
    key = path.read_bytes()
    if len(key) != size:
        raise PseudonymKeyError(path, f"holds {len(key)} bytes, expected {size}; restore the site's key")
    if open_bits := stat.S_IMODE(info.st_mode) & _GROUP_OR_OTHERS:
        raise PseudonymKeyError(
            path,
            f"its mode is {stat.S_IMODE(info.st_mode):04o}, open to {_who(open_bits)}; "
            f"a key must be private to its owner (chmod 600 {path})",
        )
    return key


def _who(bits: int) -> str:
    group, others = bool(bits & 0o070), bool(bits & 0o007)
    return "group and others" if group and others else "group" if group else "others"


def install_key_file(path: Path, key: bytes) -> bytes:
    """Store ``key`` at ``path`` (0600, folder 0700) unless a key is there; return the key now on disk.

    A caller that used ``key`` before installing it must redo that work when the returned key differs.

    Raises
    ------
    PseudonymKeyError
        As :func:`read_key_file`, for a key another process left there.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stored = read_key_file(path, len(key))
    assert stored is not None  # just linked, or another process's key was there first
    return stored
