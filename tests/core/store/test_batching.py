from __future__ import annotations

import pytest

from core.store.batching import IN_CHUNK, chunks


def test_chunks_cover_every_key_once_in_order_in_slices_no_longer_than_the_limit() -> None:
    keys = list(range(2 * IN_CHUNK + 7))
    got = list(chunks(keys))
    assert [len(c) for c in got] == [IN_CHUNK, IN_CHUNK, 7]
    assert [k for c in got for k in c] == keys
    assert list(chunks([])) == []


def test_a_chunk_size_below_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="at least 1 key, got 0"):
        list(chunks([1, 2], 0))
