"""Expand the paths given to ``vigil ingest`` into the files the gate will check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.errors import PathNotFoundError

__all__ = ["iter_dicom_paths"]


def iter_dicom_paths(paths: Sequence[Path]) -> list[Path]:
    """Every file to offer the ingest gate, in a stable order.

    Files named directly come first, in the order given; each folder contributes every entry
    beneath it that is not a folder, recursively and sorted. Nothing is filtered by name, extension
    or kind (not even hidden files such as ``.DS_Store``, dangling symbolic links, FIFOs or
    devices): the gate refuses what is not a regular DICOM file with a reason, which is what a
    user who pointed Vigil at a folder expects to see. Folders, and links to folders (never
    followed, so a link cycle cannot make the scan run forever), are skipped. Paths are made
    absolute, so reports and the audit trail name a file unambiguously whatever the working
    directory; an entry reached twice is listed once.

    Parameters
    ----------
    paths : sequence of Path
        Files and folders.

    Returns
    -------
    list of Path
        Absolute (not resolved: a symbolic link keeps its own name).

    Raises
    ------
    PathNotFoundError
        A path does not exist; raised before any file is listed or read.
    """
    for path in paths:
        if not path.exists():
            raise PathNotFoundError(path)
    found: list[Path] = []
    for path in (p.absolute() for p in paths):
        found.extend(_entries_under(path) if path.is_dir() else [path])
    return list(dict.fromkeys(found))


def _entries_under(folder: Path) -> list[Path]:
    # rglob descends into no directory symlinks; is_dir() follows a link, so a link to a folder
    # is skipped too, while a dangling link (is_dir() False) reaches the gate and is reported.
    return sorted(p for p in folder.rglob("*") if not p.is_dir())
