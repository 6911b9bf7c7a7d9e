"""Look-ups by many keys at once, in ``IN (...)`` lists every backend accepts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

__all__ = ["IN_CHUNK", "chunks"]

#: Keys bound per ``IN (...)`` list: SQLite caps the bound parameters of one statement, and 500
#: stays far below every backend's limit.
IN_CHUNK: Final = 500

K = TypeVar("K")


def chunks(keys: Sequence[K], size: int = IN_CHUNK) -> Iterator[Sequence[K]]:
    """``keys`` in consecutive slices of at most ``size`` (the last may be shorter; none when empty)."""
    if size < 1:
        raise ValueError(f"a chunk holds at least 1 key, got {size}")
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
