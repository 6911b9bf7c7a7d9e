"""The main process leaves the cores its local workers use: ``main_threads_beside`` and ``open_engine``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from core.pipeline.engine import LOCAL, open_engine
from core.pipeline.pool import default_workers, main_threads_beside


@pytest.fixture
def four_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("four_threads")
@pytest.mark.parametrize("spare", [0, 1, 100])
def test_forward_passes_get_the_cores_the_workers_leave_then_their_threads_back(spare: int) -> None:
    workers = max(1, default_workers() - spare)

    with main_threads_beside(workers) as inside:
        seen = torch.get_num_threads()

    assert seen == inside == max(1, min(4, default_workers() - workers))
    assert torch.get_num_threads() == 4


@pytest.mark.usefixtures("four_threads")
def test_threads_come_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="inside"), main_threads_beside(default_workers()):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 4


@pytest.mark.usefixtures("four_threads")
def test_a_local_engine_holds_one_thread_while_its_workers_take_every_core() -> None:
    with open_engine(LOCAL, default_workers()) as opened:
        assert opened.slots == default_workers() and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 4
