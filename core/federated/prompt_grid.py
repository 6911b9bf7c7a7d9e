"""A Flower grid that collects the sites' replies as they arrive.

Flower's HTTP grid (the one a ServerApp gets in the deployment runtime) asks the SuperLink for
replies every 3 seconds, a constant in its ``send_and_receive``; its in-memory grid (simulation)
asks every 0.1 s. A round is one exchange for training and one for evaluation, and SecAgg+ adds
four: on loopback each exchange waited up to 3 s after the last reply had arrived.
:class:`PromptGrid` wraps the runtime's grid and polls at :data:`PULL_INTERVAL_S`; everything
else (message creation, pushing, pulling, node lists) is the wrapped grid's own.

The ServerApp runs at the coordinating centre beside the SuperLink, so the extra polls stay on
that host's network; each is one small request answered from the SuperLink's store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["PULL_INTERVAL_S", "PromptGrid"]

#: Seconds between two requests for replies (Flower's in-memory grid uses 0.1 s, its HTTP grid 3 s).
PULL_INTERVAL_S: Final = 0.2


class PromptGrid(Grid):
    """``inner`` with replies polled every ``interval`` seconds.

    Parameters
    ----------
    inner : Grid
        The grid Flower's runtime gave the ServerApp.
    interval : float
        Seconds between two pulls while replies are outstanding; positive.
    clock, sleep : callable
        The monotonic clock and the sleep (tests pass their own).
    """

    def __init__(
        self,
        inner: Grid,
        interval: float = PULL_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"the pull interval must be positive seconds, got {interval!r}")
        self._inner, self._interval, self._clock, self._sleep = inner, interval, clock, sleep

    def set_run(self, run: Run) -> None:  # noqa: D102 - Grid's
        self._inner.set_run(run)

    @property
    def run(self) -> Run:  # noqa: D102 - Grid's
        return self._inner.run

    def create_message(  # noqa: D102, PLR0913 - Grid's
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return self._inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102 - Grid's
        return self._inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:  # noqa: D102 - Grid's
        return self._inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102 - Grid's
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102 - Grid's
        return self._inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages`` and pull their replies until all arrived or ``timeout`` seconds passed.

        Flower's contract: the replies received so far are returned at the timeout, the caller
        deciding what missing ones mean.
        """
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else self._clock() + timeout
        replies: list[Message] = []
        while waiting:
            arrived = list(self.pull_messages(waiting))
            replies.extend(arrived)
            waiting.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not waiting or (deadline is not None and self._clock() >= deadline):
                break
            self._sleep(self._interval if deadline is None else max(0.0, min(self._interval, deadline - self._clock())))
        return replies
