"""Worker processes fed with a bounded number of files, their results handed back in batches.

Processes, not threads: pydicom decoding holds the GIL, so threads do not decode in parallel.
The pool starts its workers with ``forkserver`` (``spawn`` where that is missing), never
``fork``: a forked copy of a process that has started torch's thread pools can deadlock.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch

from core.errors import BadInputError
from core.pipeline.work import init_worker

__all__ = [
    "Arrived",
    "FlowLimits",
    "default_workers",
    "main_threads_beside",
    "make_pool",
    "start_workers",
    "stream_batches",
]

R = TypeVar("R")


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """How much work the pipeline holds at once.

    Attributes
    ----------
    workers : int
        Worker processes, >= 1.
    batch_size : int
        Results per batch handed to the caller (one transaction and one forward pass), >= 1.
    max_in_flight : int
        Files submitted and not yet handed back, >= 1: what bounds memory whatever the number of
        files (each holds its bytes and model input until its batch is stored).
    max_wait_s : float
        The longest a finished result waits for its batch to fill, in seconds: a lone study at an
        idle pipeline is stored after at most this delay, not when 63 more have arrived.
    """

    workers: int
    batch_size: int
    max_in_flight: int
    max_wait_s: float = 0.05

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "max_in_flight"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if not self.max_wait_s >= 0:
            raise BadInputError(f"max wait must be >= 0 seconds, got {self.max_wait_s}")

    @classmethod
    def for_workers(cls, workers: int | None, batch_size: int) -> FlowLimits:
        """Defaults: one worker per core, and enough files in flight to keep them busy while a batch fills."""
        n = default_workers() if workers is None else workers
        return cls(workers=n, batch_size=batch_size, max_in_flight=batch_size + 4 * n)


@dataclass(frozen=True, slots=True)
class Arrived(Generic[R]):
    """One worker result with the moment its file entered the pipeline (``time.perf_counter``)."""

    path: Path
    submitted_at: float
    result: R


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are pinned to one thread each (:func:`core.pipeline.work.init_worker`)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # Import the worker's code once in the server, so each worker forks with it loaded.
        ctx.set_forkserver_preload(["core.pipeline.work"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker)


@contextlib.contextmanager
def main_threads_beside(workers: int) -> Iterator[int]:
    """Give this process's forward passes only the cores ``workers`` local processes leave, at least one.

    Torch's intra-op threads spin while they wait for work; beside worker processes that keep
    every core decoding, two of them on two cores took the CPU from the decoders and made each
    forward twice as slow (BENCHMARKS.md, issue 19). Restored on exit. Torch's thread count is
    the process's, so one engine is open at a time in a process (the commands and the benchmark
    open one each).

    Yields
    ------
    int
        The intra-op threads in effect inside the block.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, default_workers() - workers)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def start_workers(pool: Executor, slots: int) -> None:
    """Start every worker now (each imports torch and pydicom once), so no run pays for it."""
    for future in [pool.submit(time.sleep, 0.05) for _ in range(slots)]:
        future.result()


def stream_batches(
    pool: Executor,
    paths: Iterable[Path],
    work: Callable[[Path], R],
    limits: FlowLimits,
    *,
    peak: list[int] | None = None,
) -> Iterator[list[Arrived[R]]]:
    """Run ``work`` on every path in ``pool`` and yield the results in batches as they finish.

    ``pool`` is any :class:`concurrent.futures.Executor`: the local process pool or a Dask cluster's
    (:mod:`core.pipeline.engine`).

    At most ``limits.max_in_flight`` files are between submission and being handed back at any
    time (the caller stores one batch before the next is gathered), so memory stays bounded
    however many paths there are. A batch is handed back when it holds ``batch_size`` results,
    when its oldest result has waited ``max_wait_s``, or when nothing else is running.

    Parameters
    ----------
    work : callable
        Picklable (a module-level function or a ``functools.partial`` of one).
    peak : list of int, optional
        ``peak[0]`` is raised to the most files ever in flight (a counter for tests and benchmarks).

    Yields
    ------
    list of Arrived
        In completion order, not path order.
    """
    todo = iter(paths)
    running: dict[Future[R], tuple[Path, float]] = {}
    ready: list[Arrived[R]] = []
    oldest = 0.0
    exhausted = False
    while True:
        while not exhausted and len(running) + len(ready) < limits.max_in_flight:
            path = next(todo, None)
            if path is None:
                exhausted = True
                break
            running[pool.submit(work, path)] = (path, time.perf_counter())
        if peak is not None:
            peak[0] = max(peak[0], len(running) + len(ready))
        if not running and not ready:
            return
        if running:
            timeout = None if not ready else max(0.0, oldest + limits.max_wait_s - time.perf_counter())
            done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                path, submitted = running.pop(future)
                if not ready:
                    oldest = time.perf_counter()
                ready.append(Arrived(path, submitted, future.result()))
        full = len(ready) >= limits.batch_size
        if full or (ready and (not running or time.perf_counter() >= oldest + limits.max_wait_s)):
            batch, ready = ready[: limits.batch_size], ready[limits.batch_size :]
            oldest = time.perf_counter()
            yield batch
