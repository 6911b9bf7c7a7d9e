"""Where the pipeline's gate-and-preprocess stage runs: local worker processes, or a Dask cluster.

The stage is a pure function of a file path (:func:`core.pipeline.work.prepare`), so it runs on
any executor; the store writes, the forward pass and the audit entries stay in the process that
runs ``vigil ingest``, once per study, whatever ran the stage. A back-fill of years of archive
spreads the decoding (the pipeline's floor) over every core of a cluster:

- ``local``: :func:`core.pipeline.pool.make_pool`, one process per core of this machine.
- ``dask``: the workers of a running Dask distributed cluster (``dask scheduler`` on one machine,
  ``dask worker ADDRESS --nthreads 1`` on each of the others). Dask rather than Ray: the stage
  is CPU decoding of independent files, which needs a task queue with retries and no actors or
  object store. Measured (README, "Beyond one machine"): a local Dask cluster starts in 1.2 s,
  Ray's in 4.8 s; per task they cost 3.4 and 2.2 ms, both under 0.5 % of a 2,048² film's decode;
  Dask is 24 MB of pure Python, Ray 240 MB with its C++ raylet. A task whose worker dies is run again on another worker
  (Dask's own recovery), and its result reaches the store once because only this process writes.

The workers read the files themselves, so every worker must see them at the same path as the
machine that runs the command (the archive's shared mount); a worker that cannot is an error
that names the worker and the file, never a gate rejection recorded against the study.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from core.errors import BadInputError
from core.pipeline.pool import main_threads_beside, make_pool
from core.pipeline.work import GateFailure, Prepared, WorkOrder, prepare

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "CONNECT_TIMEOUT_S",
    "ENGINES",
    "ClusterLostError",
    "LOCAL",
    "Engine",
    "FileNotVisibleError",
    "Opened",
    "open_engine",
    "prepare_shared",
]

#: The engines ``--engine`` accepts.
ENGINES: tuple[str, ...] = ("local", "dask")

#: Seconds to wait for the Dask scheduler to answer before the run is refused.
CONNECT_TIMEOUT_S = 10.0


class FileNotVisibleError(BadInputError):
    """A cluster worker cannot see a file the command listed: the archive is not mounted there."""

    def __init__(self, path: Path, host: str) -> None:
        super().__init__(
            f"the worker on {host} cannot see {path}: every Dask worker must mount the files at the same "
            "path as the machine running vigil"
        )
        self.path = path
        self.host = host


class ClusterLostError(BadInputError):
    """Dask gave up on a task: no worker left, or a file whose reading kills every worker that tries."""

    def __init__(self, scheduler: str, what: str) -> None:
        super().__init__(
            f"the Dask cluster at {scheduler!r} stopped the run: {what}; every batch stored before it is kept, "
            "run the command again once workers are back"
        )
        self.scheduler = scheduler


@dataclass(frozen=True, slots=True)
class Engine:
    """Which executor runs the gate-and-preprocess stage.

    Attributes
    ----------
    kind : {"local", "dask"}
    scheduler : str or None
        The Dask scheduler's address (``tcp://10.0.0.5:8786``); required for ``dask``, None for ``local``.
    """

    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise BadInputError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.kind == "local":
            if self.scheduler is not None:
                raise BadInputError(f"--scheduler {self.scheduler!r} is for --engine dask, not {self.kind!r}")
        elif not (self.scheduler and self.scheduler.strip()):
            raise BadInputError("the dask engine needs the scheduler's address (--scheduler tcp://HOST:8786)")
        else:
            _check_address(self.scheduler)


def _check_address(address: str) -> None:
    """``tcp://HOST:PORT`` or ``tls://HOST:PORT``, checked before Dask sees it.

    Dask's client, given an address it cannot parse, fails inside its constructor and then spends
    20 s at exit closing the half-made client, with a traceback; a typo deserves one line.
    """
    problem = None
    if any(c.isspace() or not c.isprintable() for c in address):
        problem = "it holds spaces or control characters"
    else:
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError as exc:
            problem = str(exc)
        else:
            if parts.scheme not in _SCHEMES or not parts.hostname or port is None or parts.path or parts.query:
                problem = "expected tcp://HOST:PORT or tls://HOST:PORT"
    if problem is not None:
        raise BadInputError(f"--scheduler {address!r} is not a Dask scheduler address: {problem}")


#: The transports a scheduler address may name.
_SCHEMES = ("tcp", "tls")

#: This machine's worker processes: the default engine.
LOCAL: Final = Engine()


@dataclass(frozen=True, slots=True)
class Opened:
    """A running executor, how many files it works on at once, and the stage it runs on each file.

    Attributes
    ----------
    executor : Executor
    slots : int
        Its worker processes (local) or worker threads (the cluster's).
    prepare : callable
        :func:`core.pipeline.work.prepare`, or :func:`prepare_shared` on a cluster.
    """

    executor: Executor
    slots: int
    prepare: Callable[..., Prepared | GateFailure] = prepare


@contextmanager
def open_engine(engine: Engine, workers: int) -> Iterator[Opened]:
    """Start (local) or connect to (dask) the executor; shut it down or disconnect on exit.

    Parameters
    ----------
    engine : Engine
    workers : int
        Local worker processes to start; ignored for ``dask``, whose cluster has its own.

    Raises
    ------
    BadInputError
        The Dask scheduler does not answer within :data:`CONNECT_TIMEOUT_S`, or has no workers.
    ClusterLostError
        Raised on exit in place of Dask's own error when the cluster gave up on a task while the
        engine was open.
    """
    if engine.kind == "local":
        pool = make_pool(workers)
        try:
            with main_threads_beside(workers):
                yield Opened(pool, workers)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    assert engine.scheduler is not None  # checked by Engine
    client = _connect(engine.scheduler)
    try:
        executor = client.get_executor(pure=False)
        yield Opened(executor, _cluster_threads(client, engine.scheduler), prepare_shared)
    except Exception as exc:
        if (lost := _lost(exc)) is not None:
            raise ClusterLostError(engine.scheduler, lost) from exc
        raise
    finally:
        client.close()


def _lost(exc: Exception) -> str | None:
    """What the cluster lost, when ``exc`` is Dask giving up on a task; None for anything else."""
    from distributed import KilledWorker
    from distributed.scheduler import NoWorkerError

    if isinstance(exc, NoWorkerError):
        return "every worker left and none joined in time (the scheduler's no-workers-timeout)"
    if isinstance(exc, KilledWorker):
        return f"the workers running one file kept dying ({exc})"
    return None


def _connect(address: str) -> Client:
    from distributed import Client  # a cluster is optional: imported only when asked for

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInputError(f"no Dask scheduler answered at {address!r} within {CONNECT_TIMEOUT_S:g} s: {exc}") from exc
    from core.pipeline.dask_plugin import OneThreadPerWorker

    # Applies to every worker, including one that joins or restarts later in the run.
    client.register_plugin(OneThreadPerWorker(), name="vigil-one-thread")
    return client


def _cluster_threads(client: Client, address: str) -> int:
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info()["workers"].values())
    if threads < 1:
        client.close()
        raise BadInputError(f"the Dask scheduler at {address!r} has no workers: start `dask worker {address}`")
    return threads


def prepare_shared(path: Path, order: WorkOrder) -> Prepared | GateFailure:
    """:func:`core.pipeline.work.prepare` on a cluster worker, refusing a file the worker cannot see.

    A missing file would otherwise be a gate rejection stored against a study that exists; it
    means the worker lacks the archive's mount, which is the operator's to fix.

    Raises
    ------
    FileNotVisibleError
        Nothing exists at ``path`` on this worker (not even a dangling link).
    """
    if not os.path.lexists(path):
        raise FileNotVisibleError(path, socket.gethostname())
    return prepare(path, order)
