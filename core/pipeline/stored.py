"""Score stored studies with the pipeline's workers: ``vigil predict --workers N``.

When a new version starts serving, every stored study of its sites waits for its score: years of
archive when a health system back-fills. :func:`core.services.prediction.predict_pending` reads
them one at a time in one Python thread (pydicom holds the GIL); this scorer has the pipeline's
worker processes re-read and preprocess the stored files (:func:`core.pipeline.work.prepare`, the
same gate and preprocessing as at ingest) while the main process scores each batch in one forward
pass and records it in one transaction, with its Grad-CAM maps, through the same
:func:`core.services.prediction.store_scores` as ``vigil predict``. So the rows and audit entries
are the ones ``vigil predict`` writes, and a run killed at any point resumes with exactly what it
had not committed (the pending list is re-read from the store).

A stored file the gate now refuses (changed or damaged on disk since it was stored) is recorded,
as ``vigil predict`` records a file it cannot read, as a prediction with no score and the reason.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType

from core.errors import BadInputError, ServingVersionChangedError
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.models.inference import ImagePrediction
from core.models.loading import LoadedModel
from core.pipeline.engine import LOCAL, Engine, Opened, open_engine
from core.pipeline.memory import release_freed_memory
from core.pipeline.pool import Arrived, FlowLimits, start_workers, stream_batches
from core.pipeline.scoring import map_input, score_and_map_prepared, score_prepared
from core.pipeline.work import GateFailure, Prepared, WorkOrder
from core.services.prediction import (
    PredictReport,
    Recording,
    ScoreTally,
    pending_work,
    store_scores,
    superseded_report,
    unreadable_prediction,
)
from core.services.score_maps import MapInput
from core.store.engine import SessionFactory
from core.store.studies import InstanceRecord

__all__ = ["StoredScorer"]


class StoredScorer:
    """Worker processes that re-read stored studies for scoring; a :class:`core.services.prediction.Scorer`.

    Use as a context manager (the workers live until it exits, so each version's pass of
    :func:`core.services.prediction.predict_serving` reuses them) and pass it as ``scorer``.

    Parameters
    ----------
    limits : FlowLimits
        Workers, batch size (one forward pass and one transaction) and files in flight.
    max_file_bytes : int
        The gate's size limit, as at ingest (``Settings.max_file_bytes``).
    engine : Engine, optional
        Where the re-reading runs: this machine's processes (the default) or a Dask cluster's
        workers, which must see the store at the same path.
    """

    def __init__(
        self, limits: FlowLimits, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, engine: Engine = LOCAL
    ) -> None:
        self._limits = limits
        self._max_file_bytes = max_file_bytes
        self._engine = engine
        self._opened: Opened | None = None  # while entered
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> StoredScorer:
        self._stack = contextlib.ExitStack()
        self._opened = self._stack.enter_context(open_engine(self._engine, self._limits.workers))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._opened = self._stack, None, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    def warm_up(self) -> None:
        """Start every worker now (each imports torch and pydicom once), so the first pass does not pay for it."""
        start_workers(self._require_opened().executor, self._require_opened().slots)

    def _require_opened(self) -> Opened:
        if self._opened is None:
            raise RuntimeError("StoredScorer is used as a context manager: `with StoredScorer(...) as scorer:`")
        return self._opened

    def __call__(  # noqa: PLR0913 - predict_pending's signature (core.services.prediction.Scorer)
        self,
        session_factory: SessionFactory,
        model: LoadedModel,
        *,
        site: str | None,
        batch_size: int,
        actor: str,
        now: Callable[[], datetime],
        progress: Callable[[int], None] | None = None,
        maps_dir: Path | None = None,
    ) -> PredictReport:
        """Score every instance pending for ``model`` at ``site`` (every site when None), as ``predict_pending``.

        ``batch_size`` is checked as ``predict_pending`` checks it; the batches are the limits'.

        Raises
        ------
        UnknownSiteError
            ``site`` is not registered; nothing is read.
        """
        if batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {batch_size}")
        opened = self._require_opened()
        work = pending_work(session_factory, model, site=site)
        if work is None:
            return superseded_report(model)
        mv, pending = work
        by_path: dict[Path, list[InstanceRecord]] = {}
        for inst in pending:  # the store is content-addressed: instances may share a file
            by_path.setdefault(Path(inst.path), []).append(inst)
        order = WorkOrder(self._max_file_bytes, model.preprocessing, model.card.intended_use)
        prep = functools.partial(opened.prepare, order=order)
        how = Recording(actor, now, progress, maps_dir=maps_dir)
        tally = ScoreTally()
        for batch in stream_batches(opened.executor, list(by_path), prep, self._limits):
            chunk, results, inputs = _chunk(model, batch, by_path, maps=maps_dir is not None)
            try:
                tally.add(*store_scores(session_factory, model, mv, chunk, results, inputs, how))
            except ServingVersionChangedError:
                return tally.report(model, superseded=True)
            batch, inputs = [], []  # the files' bytes and model inputs go before the heap is trimmed
            release_freed_memory()
            if progress:
                progress(len(chunk))
        return tally.report(model)


def _chunk(
    model: LoadedModel,
    batch: Sequence[Arrived[Prepared | GateFailure]],
    by_path: dict[Path, list[InstanceRecord]],
    *,
    maps: bool,
) -> tuple[list[InstanceRecord], list[ImagePrediction], list[MapInput | None]]:
    """One forward pass over the batch's prepared files; each instance with its prediction and map input.

    With ``maps``, the pass makes each scored file's map too where it may (``score_and_map_prepared``).
    """
    prepared = [a.result for a in batch if isinstance(a.result, Prepared)]
    if maps:
        preds, made = score_and_map_prepared(model, prepared)
    else:
        preds, made = score_prepared(model, prepared), [map_input(item) for item in prepared]
    scored, map_inputs = iter(preds), iter(made)
    chunk: list[InstanceRecord] = []
    results: list[ImagePrediction] = []
    inputs: list[MapInput | None] = []
    for arrived in batch:
        item, insts = arrived.result, by_path[arrived.path]
        if isinstance(item, GateFailure):
            results += [unreadable_prediction(model, inst, f"pixels unreadable: {item.reason}") for inst in insts]
            inputs += [None] * len(insts)
        else:
            results += [next(scored)] * len(insts)
            inputs += [next(map_inputs)] * len(insts)
        chunk += insts
    return chunk, results, inputs
