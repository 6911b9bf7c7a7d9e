"""The ServerApp's grid collects replies as they arrive, and keeps Flower's timeout contract.

The loopback runs of ``vigil fl run`` (tests/test_fl_cli.py) use it against a real SuperLink;
here a grid that releases one reply per pull shows the polling itself, on a clock the test owns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from flwr.app import Message, Metadata, RecordDict

from core.federated.prompt_grid import PULL_INTERVAL_S, PromptGrid


class _Clock:
    """A monotonic clock that only moves when the grid sleeps."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, list[float]()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds


def _reply_to(message_id: str) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=f"r-{message_id}",
        src_node_id=7,
        dst_node_id=0,
        reply_to_message_id=message_id,
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type="train",
    )
    return Message(content=RecordDict(), metadata=metadata)


class _TrickleGrid:
    """Answers one outstanding message per pull, starting at pull ``first``; records what it was asked."""

    def __init__(self, first: int = 0) -> None:
        self.pulls, self.first, self.pushed = 0, first, list[Message]()
        self.run = SimpleNamespace(run_id=1)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.pushed = list(messages)
        return [f"m-{i}" for i in range(len(self.pushed))]

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        self.pulls += 1
        waiting = sorted(message_ids)
        return [_reply_to(waiting[0])] if self.pulls > self.first and waiting else []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"PromptGrid asked the inner grid for {name}")


def _grid(inner: _TrickleGrid, clock: _Clock) -> PromptGrid:
    return PromptGrid(inner, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_replies_are_pulled_every_interval_until_the_last_arrives() -> None:
    inner, clock = _TrickleGrid(first=2), _Clock()
    replies = list(_grid(inner, clock).send_and_receive([_reply_to("x")] * 3, timeout=None))
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m-0", "m-1", "m-2"]
    assert inner.pulls == 5  # two empty pulls, then one reply per pull
    assert clock.sleeps == [PULL_INTERVAL_S] * 4  # none after the last reply


def test_at_the_timeout_the_replies_so_far_are_returned() -> None:
    inner, clock = _TrickleGrid(first=1), _Clock()
    replies = list(_grid(inner, clock).send_and_receive([_reply_to("x")] * 50, timeout=1.0))
    assert 0 < len(replies) < 50
    assert clock.now == pytest.approx(1.0)  # the last sleep is cut to the deadline
    assert all(s <= PULL_INTERVAL_S for s in clock.sleeps)


def test_everything_else_is_the_inner_grids() -> None:
    inner = _TrickleGrid()
    grid = PromptGrid(inner)  # type: ignore[arg-type]
    assert grid.run.run_id == 1
    assert list(grid.push_messages([_reply_to("a")])) == ["m-0"]
    with pytest.raises(AssertionError, match="get_node_ids"):
        grid.get_node_ids()


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_a_pull_interval_that_is_not_positive_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="pull interval must be positive"):
        PromptGrid(_TrickleGrid(), interval)  # type: ignore[arg-type]
