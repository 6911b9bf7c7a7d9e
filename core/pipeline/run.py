"""The streaming pipeline: files → gate and preprocess in workers → store, score and audit per batch.

Each batch is one transaction that stores its files and records their studies, instances,
rejections and predictions, with one audit entry per study action exactly as ``vigil ingest``
followed by ``vigil predict`` would (the record-and-audit code is theirs:
:func:`core.services.ingestion.record_batch`, :func:`core.services.prediction.record_scores`).

Resumable and exactly-once: a batch commits whole or not at all, files are content-addressed,
an instance is stored once per (UID, content) and scored once per model version. A run killed at
any point (even ``kill -9``) and run again stores and scores what the first run did not commit,
and reports what it did commit as duplicates.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from core.errors import ServingVersionChangedError
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.imaging.scan import iter_dicom_paths
from core.models.inference import ImagePrediction
from core.models.loading import LoadedModel
from core.pipeline.engine import LOCAL, Engine, open_engine
from core.pipeline.memory import release_freed_memory
from core.pipeline.pool import Arrived, FlowLimits, start_workers, stream_batches
from core.pipeline.scoring import score_and_map_prepared, score_prepared
from core.pipeline.work import GateFailure, Prepared, WorkOrder, prepare
from core.services.deidentify import IngestDeid
from core.services.ingestion import IngestReport, IngestRun, Recorded, Rejection, add_to_report, record_batch
from core.services.prediction import record_scores
from core.services.score_maps import WrittenMap, write_maps
from core.store import model_versions, sites
from core.store.engine import SessionFactory
from core.store.model_versions import ModelVersionRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["PipelineReport", "StreamingPipeline"]


@dataclass(frozen=True, slots=True)
class PipelineReport:
    """What one pipeline run did.

    Attributes
    ----------
    ingest : IngestReport
        As ``vigil ingest`` reports it.
    model_version : str or None
        The model that scored; None when the run only ingested.
    scored, skipped, positives : int
        Predictions this run recorded (as ``vigil predict`` counts them).
    superseded : bool
        The serving version changed mid-run: from then on files were stored but not scored, so
        the caller scores them with the version now serving (``predict_pending``).
    maps : int
        Grad-CAM maps stored with this run's scores (0 unless the pipeline was given ``maps_dir``).
    latencies_s : tuple of float
        Per file, seconds from entering the pipeline to its batch's commit.
    peak_in_flight : int
        The most files held at once (submitted and not yet stored).
    """

    ingest: IngestReport
    model_version: str | None
    device: str
    scored: int = 0
    skipped: int = 0
    positives: int = 0
    superseded: bool = False
    maps: int = 0
    latencies_s: tuple[float, ...] = field(default=(), repr=False)
    peak_in_flight: int = 0


@dataclass(slots=True)
class _Tally:
    """Counters a run accumulates batch by batch."""

    scored: int = 0
    skipped: int = 0
    positives: int = 0
    superseded: bool = False
    maps: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, made: Sequence[ImagePrediction]) -> None:
        self.scored += sum(p.score is not None for p in made)
        self.skipped += sum(p.score is None for p in made)
        self.positives += sum(bool(p.label) for p in made)


class StreamingPipeline:
    """A pool of gate-and-preprocess workers and the main-process loop that stores and scores.

    Use as a context manager; the workers live until it exits, so several runs (or a benchmark's
    lone studies arriving at an idle pipeline) reuse warm workers.

    Parameters
    ----------
    session_factory : SessionFactory
    dicom_dir : Path
        Root of the content-addressed DICOM store.
    model : LoadedModel or None
        The serving model; None ingests only.
    limits : FlowLimits
    actor : str
    now : callable
        Clock for ``created_at`` and audit timestamps (UTC).
    max_file_bytes : int
        Files larger than this are rejected unread.
    maps_dir : Path, optional
        With a model: store each newly scored study's Grad-CAM map here (``Settings.artifacts_dir``),
        recorded in the score's transaction exactly as ``vigil explain`` / the viewer would record
        it, so the case opens with its map already made. None stores scores only.
    engine : Engine, optional
        Where the gate and preprocessing run (:mod:`core.pipeline.engine`): this machine's worker
        processes (the default) or a Dask cluster's workers. On a cluster, at least enough files
        are kept in flight to keep each of its worker threads busy while a batch fills.
    """

    def __init__(  # noqa: PLR0913 - the run's collaborators, named
        self,
        session_factory: SessionFactory,
        *,
        dicom_dir: Path,
        model: LoadedModel | None,
        limits: FlowLimits,
        actor: str,
        now: Callable[[], datetime],
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        maps_dir: Path | None = None,
        engine: Engine = LOCAL,
    ) -> None:
        self._sf = session_factory
        self._dicom_dir = dicom_dir
        self._model = model
        self._limits = limits
        self._actor = actor
        self._now = now
        self._max_file_bytes = max_file_bytes
        self._engine = engine
        self._maps_dir = maps_dir
        self._pool: Executor | None = None
        self._slots = limits.workers
        self._prepare: Callable[..., Prepared | GateFailure] = prepare
        self._stack = ExitStack()

    def __enter__(self) -> StreamingPipeline:
        opened = self._stack.enter_context(open_engine(self._engine, self._limits.workers))
        self._pool, self._slots, self._prepare = opened.executor, opened.slots, opened.prepare
        # A cluster has its own workers, however many were asked for: keep enough files in flight for all.
        wanted = FlowLimits.for_workers(opened.slots, self._limits.batch_size).max_in_flight
        if self._engine.kind != "local" and self._limits.max_in_flight < wanted:
            self._limits = dataclasses.replace(self._limits, max_in_flight=wanted)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool = None
        # Not close(): the engine sees the exception that ended the block (and may name it better).
        self._stack.__exit__(exc_type, exc, tb)

    @property
    def slots(self) -> int:
        """How many files the engine works on at once (local processes, or the cluster's worker threads)."""
        return self._slots

    def warm_up(self) -> None:
        """Start every worker now (each imports torch and pydicom once), so no run pays for it."""
        start_workers(self._require_pool(), self._slots)

    def run(
        self,
        paths: Sequence[Path],
        *,
        site: str,
        progress: Callable[[int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
        deid: IngestDeid | None = None,
    ) -> PipelineReport:
        """Ingest, and score when a model was given, every file under ``paths`` into ``site``.

        Parameters
        ----------
        paths : sequence of Path
            Files or folders (searched recursively), as for ``vigil ingest``.
        site : str
            A registered site; checked before any file is read.
        progress : callable, optional
            Called with the number of files just stored (pass ``tqdm.update``).
        on_total : callable, optional
            Told how many files there are before work starts.
        deid : IngestDeid, optional
            De-identify each file before it is stored, as :func:`core.services.ingestion.ingest_paths`
            does; scores are of the same pixels (the profile leaves them as they are).

        Raises
        ------
        UnknownSiteError
            ``site`` is not registered; nothing is read or written.
        PathNotFoundError
            A path does not exist; nothing is read or written.
        """
        pool = self._require_pool()
        mv = self._check(site)
        files = iter_dicom_paths(paths)
        if on_total:
            on_total(len(files))
        run = IngestRun(self._sf, site, self._dicom_dir, self._actor, self._now, self._max_file_bytes, deid)
        model = self._model
        order = WorkOrder(
            self._max_file_bytes,
            preprocessing=model.preprocessing if model else None,
            intended_use=model.card.intended_use if model else None,
        )
        report, tally, peak = IngestReport(site=site), _Tally(), [0]
        work = functools.partial(self._prepare, order=order)
        for batch in stream_batches(pool, files, work, self._limits, peak=peak):
            self._store(run, mv, batch, report, tally)
            n, batch = len(batch), []  # its bytes and model inputs are freed before the heap is trimmed
            release_freed_memory()
            if progress:
                progress(n)
        return PipelineReport(
            ingest=report,
            model_version=model.card.version if model else None,
            device=str(model.device) if model else "none",
            scored=tally.scored,
            skipped=tally.skipped,
            positives=tally.positives,
            superseded=tally.superseded,
            maps=tally.maps,
            latencies_s=tuple(tally.latencies),
            peak_in_flight=peak[0],
        )

    def _require_pool(self) -> Executor:
        if self._pool is None:
            raise RuntimeError("StreamingPipeline is used as a context manager: `with StreamingPipeline(...) as p:`")
        return self._pool

    def _check(self, site: str) -> ModelVersionRecord | None:
        """The site must exist; the model's stored version row (None when ingesting only)."""
        with self._sf() as session:
            sites.get_site(session, site)
            return model_versions.get_by_version(session, self._model.card.version) if self._model else None

    def _store(
        self,
        run: IngestRun,
        mv: ModelVersionRecord | None,
        batch: list[Arrived[Prepared | GateFailure]],
        report: IngestReport,
        tally: _Tally,
    ) -> None:
        """One transaction: the batch's files, rows, predictions and audit entries."""
        items = [_ingest_item(a.result) for a in batch]
        then = None
        if self._model is not None and mv is not None and not tally.superseded:
            prepared = [a.result for a in batch]
            gated = [p for p in prepared if isinstance(p, Prepared)]
            maps = None
            if self._maps_dir is None:
                preds = score_prepared(self._model, gated)
            else:
                preds, inputs = score_and_map_prepared(self._model, gated)
                maps = write_maps(self._model, inputs, preds, self._maps_dir)
            then = functools.partial(
                self._record_scores, model=self._model, mv=mv, prepared=prepared, preds=preds, maps=maps
            )
        try:
            recorded, done = record_batch(run, items, then=then)
        except ServingVersionChangedError:
            # Scored by a version that stopped serving: store the files, leave the scores to the new one.
            tally.superseded = True
            recorded, done = record_batch(run, items)
        stored_at = time.perf_counter()
        tally.latencies.extend(stored_at - a.submitted_at for a in batch)
        for item, rec in zip(items, recorded, strict=True):
            add_to_report(report, item, rec)
        if done is not None:
            tally.add(done[0])
            tally.maps += done[1]

    def _record_scores(
        self,
        session: Session,
        recorded: list[Recorded],
        *,
        model: LoadedModel,
        mv: ModelVersionRecord,
        prepared: list[Prepared | GateFailure],
        preds: list[ImagePrediction],
        maps: list[WrittenMap | None] | None,
    ) -> tuple[list[ImagePrediction], int]:
        """Inside the batch's transaction: score every stored instance (new or duplicate) not yet scored.

        With maps, each instance scored here also gets its Grad-CAM row; returns what was scored and
        how many maps were recorded.
        """
        gated = iter(range(len(preds)))
        chunk, results, chunk_maps = [], [], []
        for item, rec in zip(prepared, recorded, strict=True):
            if isinstance(item, GateFailure):
                continue
            i = next(gated)
            if rec.instance is not None:
                chunk.append(rec.instance)
                results.append(preds[i])
                chunk_maps.append(maps[i] if maps is not None else None)
        return record_scores(
            session,
            model=model,
            model_version=mv,
            chunk=chunk,
            results=results,
            maps=chunk_maps if maps is not None else None,
            actor=self._actor,
            now=self._now,
        )


def _ingest_item(result: Prepared | GateFailure) -> Prepared | Rejection:
    return Rejection(str(result.path), result.reason) if isinstance(result, GateFailure) else result
