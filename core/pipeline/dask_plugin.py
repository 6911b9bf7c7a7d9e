"""The Dask worker plugin Vigil registers when it connects (imported only then: Dask is optional at run time)."""

from __future__ import annotations

from distributed import WorkerPlugin

from core.pipeline.work import init_worker

__all__ = ["OneThreadPerWorker"]


class OneThreadPerWorker(WorkerPlugin):  # type: ignore[misc]  # mypy skips distributed (untyped)
    """One torch thread per worker process, as :func:`core.pipeline.work.init_worker` gives the local pool.

    Run it as ``dask worker ADDRESS --nthreads 1 --nworkers N``: the processes are the parallelism
    (pydicom holds the GIL while it decodes, so threads in one worker would not decode in parallel).
    """

    def setup(self, worker: object) -> None:
        """Called in each worker when the plugin is registered and whenever a worker (re)starts."""
        init_worker()
