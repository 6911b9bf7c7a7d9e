"""Keep freed tensor memory inside the process while a long CPU job runs (glibc only).

glibc returns every freed block above its mmap threshold (128 KiB at start, adapting upwards)
straight to the operating system, so a training step that frees and reallocates the same
activations pays a page fault for every 4 KiB of them again. Training the bundled model in
float64 spent a third of its CPU time in the kernel doing exactly that; raising the thresholds
keeps those blocks for reuse. It is a process-wide setting, meant for a command-line process
that exits when the job ends (``vigil train``), not for a long-lived server whose resident
memory should fall back after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Final

__all__ = ["retain_freed_memory"]

#: ``mallopt`` parameters from glibc's ``malloc.h``.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def retain_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Serve allocations up to ``limit_bytes`` from the heap and never trim it below twice that.

    Parameters
    ----------
    limit_bytes : int, default 1 GiB
        Largest block kept in the heap rather than mapped on its own.

    Returns
    -------
    bool
        ``True`` when glibc accepted both settings; ``False`` on other C libraries (nothing changed).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * limit_bytes))
