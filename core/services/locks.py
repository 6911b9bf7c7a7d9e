"""Locks on the content-addressed file store, shared by processes and threads.

The database serializes rows; files beside it need their own lock, or one writer's clean-up
can delete another's committed file. ``flock`` locks belong to an open file description, so
two threads of one process that each open the lock file exclude each other just as two
processes do, and the kernel drops a lock when its holder dies (even by ``kill -9``).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["LOCK_DIR_NAME", "content_lock"]

#: Folder of lock files under the store's root; one file per first two hex digits of a hash,
#: so the number of lock files stays at 256 however many files are stored.
LOCK_DIR_NAME: Final = ".locks"


@contextmanager
def content_lock(store_dir: Path, sha256: str) -> Iterator[None]:
    """Hold the exclusive lock for the content address ``sha256`` under ``store_dir``.

    Parameters
    ----------
    store_dir : Path
        Root of a content-addressed store (created when missing).
    sha256 : str
        Hex digest of the content; files whose digests share the first two digits share a lock.
    """
    lock_dir = store_dir / LOCK_DIR_NAME
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{sha256[:2].lower()}.lock").open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
