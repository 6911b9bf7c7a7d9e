"""SIGTERM and SIGINT as a request to stop, for commands that wait (a PACS watch, a signer at the provider)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["interruptible_sleep", "stop_on_signals"]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (the previous handlers are restored).

    The handlers are installed even where SIGINT was inherited as ignored (a background job of a
    script, some test runners), so the command still stops when asked.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interruptible_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A ``sleep(seconds)`` that raises :class:`KeyboardInterrupt` once ``stop`` is set (at once if it already is)."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise KeyboardInterrupt

    return sleep
