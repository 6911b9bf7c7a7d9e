"""Expand the paths given to ``vigil ingest`` into the files the gate will check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.errors import PathNotFoundError

__all__ = ["iter_dicom_paths"]


def iter_dicom_paths(paths: Sequence[Path]) -> list[Path]:
    """Every file to offer the ingest gate, in a stable order.

    Files named directly come first, in the order given; each folder contributes every file
    beneath it, recursively and sorted. Nothing is filtered by name or extension (not even
    hidden files such as ``.DS_Store``): a file that is not DICOM is reported as rejected, which
    is what a user who pointed Vigil at a folder expects to see. Only directories are skipped.
    A file reached twice is listed once.

    Parameters
    ----------
    paths : sequence of Path
        Files and folders.

    Returns
    -------
    list of Path

    Raises
    ------
    PathNotFoundError
        A path does not exist; raised before any file is listed or read.
    """
    for path in paths:
        if not path.exists():
            raise PathNotFoundError(path)
    found: list[Path] = []
    for path in paths:
        found.extend(_files_under(path) if path.is_dir() else [path])
    return list(dict.fromkeys(found))


def _files_under(folder: Path) -> list[Path]:
    # rglob follows no directory symlinks, so a link cycle cannot make the scan run forever.
    return sorted(p for p in folder.rglob("*") if p.is_file())
