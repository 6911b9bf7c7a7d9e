"""Hand the heap pages freed by a scored batch back to the operating system.

Each study scored leaves behind many allocations under glibc's ``mmap`` threshold (128 KiB
by default): decoded headers, small arrays, rows, audit entries. They come from the heap, and
the store's rows and caches allocated between them stay alive, so what a batch frees sits
below live chunks and ``free`` cannot shrink the heap past them: the process keeps it
resident. Over tens of thousands of studies that reads as a leak (peak RSS doubling from
2,000 to 20,000 studies, ``BENCHMARKS.md``) although Python holds none of it.
``malloc_trim(0)`` returns every whole free page inside the heap to the kernel
(``madvise(MADV_DONTNEED)``); once per batch, its cost is lost in the batch's.

Other C libraries (musl, macOS) have no ``malloc_trim``; there the call does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or ``None`` where it has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the heap's free pages to the operating system.

    Returns
    -------
    bool
        True when the C library released memory; False when it had none to release or has
        no ``malloc_trim``.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
