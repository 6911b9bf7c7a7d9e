"""Issue 19: files → stored scores through the streaming pipeline, against the decode floor of the same run.

The floor is the ingest gate alone (read, validate, decode) in as many worker processes as the
pipeline has, over the same files, with nothing sent back but each file's hash: no store, no
preprocessing, no model. The pipeline's rate is measured to stored score (the batch's transaction
committed). Rounds are interleaved floor, pipeline, floor, ... and each pipeline round writes into a
new store, so every round does the whole work (nothing is a duplicate). Studies come from the
cohort generator into a temporary folder; they are SYNTHETIC phantoms.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self

import numpy as np

from core.bench.films import MAX_FILM_SIZE, MIN_FILM_SIZE, enlarge_film
from core.bench.harness import BenchResult
from core.config import Settings
from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.models.card import read_card
from core.models.inference import predict_images
from core.models.loading import BUNDLED_DIR, LoadedModel
from core.pipeline import FlowLimits, PipelineReport, StoredScorer, StreamingPipeline, default_workers
from core.pipeline.pool import make_pool
from core.pipeline.work import WorkOrder, gate_only
from core.sampledata import SITES, generate_cohort
from core.services import models, prediction, sites
from core.services.prediction import PredictReport
from core.services.store import open_store
from core.store import predictions, studies
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["IDLE_TARGET_S", "RATE_TARGET", "ThroughputConfig", "run"]

#: The pipeline must reach this share of the decode floor's studies/s (issue 19).
RATE_TARGET: Final = 0.8
#: One study at an idle pipeline: p95 seconds from arrival to stored score (issue 19, 2 CPU cores).
IDLE_TARGET_S: Final = 1.0
#: Studies whose stored scores the guard compares with ``predict_images`` on the serial path.
_GUARD_STUDIES: Final = 8


@dataclass(frozen=True, slots=True)
class ThroughputConfig:
    """What the throughput suite runs.

    Attributes
    ----------
    studies : int
        Studies generated and pushed through each round, >= 1.
    workers : int or None
        Worker processes for the floor and the pipeline alike; None: one per core.
    batch_size : int
        Studies per forward pass and per transaction.
    lone : int
        Single studies sent one at a time to an idle, warm pipeline, for the idle-latency figure.
    film_size : int or None
        Enlarge every generated film to ``film_size``² pixels (:mod:`core.bench.films`; 2048 is a
        real chest radiograph); None keeps the generator's 240 to 320 pixels.
    """

    studies: int = 300
    workers: int | None = None
    batch_size: int = 64
    lone: int = 10
    film_size: int | None = None

    def __post_init__(self) -> None:
        if self.film_size is not None and not MIN_FILM_SIZE <= self.film_size <= MAX_FILM_SIZE:
            raise BadInputError(
                f"film size must be from {MIN_FILM_SIZE} to {MAX_FILM_SIZE} pixels, got {self.film_size}"
            )
        if self.studies < 1 or self.batch_size < 1 or self.lone < 1:
            raise BadInputError(
                f"throughput needs studies, batch size and lone studies >= 1, got {self.studies}, "
                f"{self.batch_size} and {self.lone}"
            )


@dataclass(frozen=True, slots=True)
class _Round:
    seconds: float
    report: PipelineReport
    main_peak_bytes: int
    workers_peak_bytes: int
    sf: SessionFactory
    model: LoadedModel
    home: Path


@dataclass(frozen=True, slots=True)
class _Backfill:
    """One back-fill round: the same ingested store scored in process and by the workers."""

    in_process_s: float
    workers_s: float
    in_process: PredictReport
    workers: PredictReport
    scores_equal: bool


def run(config: ThroughputConfig, *, rounds: int = 3) -> list[BenchResult]:
    """The suite's cases: the pipeline with and without the model against the decode floor, and one lone study.

    Returns
    -------
    list of BenchResult
        ``[end to end / floor, ingest only / floor]`` (time per study, target 1 / 0.8 each), the
        idle pipeline's p95 seconds from arrival to stored score (target 1), then stored studies
        scored by the workers against in process (``vigil predict --workers N`` against
        ``vigil predict``, time per study, target 1).

    Notes
    -----
    Each ingest-only round's store is then copied twice and its studies back-filled both ways,
    the order alternating between rounds.

    The ingest-only pipeline (gate in workers, store and audit in batches, no model) separates
    the pipeline's own cost from the model's forward pass, which on a CPU runs in the main process
    on the same cores as the decoding; the forward's own seconds are recorded too (the sum of the
    batches' ``latency_ms`` as stored with the predictions).
    """
    workers = config.workers or default_workers()
    with tempfile.TemporaryDirectory(prefix="vigil-throughput-") as tmp:
        root = Path(tmp)
        files = _generate(root / "cohort", config.studies, workers, film_size=config.film_size)
        limits = FlowLimits(workers, config.batch_size, max_in_flight=config.batch_size + 4 * workers)
        floors: list[float] = []
        ends: list[_Round] = []
        ingests: list[_Round] = []
        with make_pool(workers) as pool:
            _floor(pool, files[: 2 * workers], workers)  # start the workers, warm the page cache
            accepted = 0
            for r in range(rounds):  # interleaved: floor, pipeline, ingest only, floor, ...
                seconds, accepted = _floor(pool, files, workers)
                floors.append(seconds)
                ends.append(_end_to_end(root / f"store-{r}", files, limits, score=True))
                ingests.append(_end_to_end(root / f"ingest-{r}", files, limits, score=False))
        lone, lone_ok = _idle(root / "store-idle", files[: config.lone + 1], limits)
        fills = [
            _backfill(r.home, root / f"backfill-{i}", limits, workers_first=i % 2 == 1) for i, r in enumerate(ingests)
        ]
        return [
            _rate_result(config, workers, files, floors, ends, accepted),
            _ingest_result(files, floors, ingests, accepted),
            _idle_result(lone, guard_ok=lone_ok),
            _backfill_result(files, fills, workers, accepted),
        ]


def _generate(out: Path, n: int, workers: int, *, film_size: int | None) -> list[Path]:
    """``n`` studies spread over the cohort's sites, one generator process per site, enlarged in every worker."""
    counts = {site.name: n // len(SITES) + (i < n % len(SITES)) for i, site in enumerate(SITES)}
    counts = {name: c for name, c in counts.items() if c > 0}
    with make_pool(min(workers, len(counts))) as pool:
        list(pool.map(_generate_site, [out / name for name in counts], counts.items()))
    files = sorted(out.rglob("*.dcm"))
    if film_size is not None:
        with make_pool(workers) as pool:
            list(pool.map(functools.partial(enlarge_film, size=film_size), files, chunksize=4))
    return files


def _generate_site(out: Path, count: tuple[str, int]) -> None:
    generate_cohort(out, seed=19, studies_per_site={count[0]: count[1]})


def _floor(pool: ProcessPoolExecutor, files: Sequence[Path], workers: int) -> tuple[float, int]:
    """Seconds to gate every file in the pool's workers; how many passed.

    Files go out in chunks (about four per worker) so that dispatch does not count against the floor.
    """
    work = functools.partial(gate_only, order=WorkOrder(DEFAULT_MAX_FILE_BYTES))
    chunk = max(1, min(16, len(files) // (4 * workers)))
    t0 = time.perf_counter()
    shas = list(pool.map(work, files, chunksize=chunk))
    return time.perf_counter() - t0, sum(s is not None for s in shas)


def _new_store(home: Path) -> tuple[SessionFactory, LoadedModel]:
    """A store with the bundled model serving and a site ``bench``."""
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    home.mkdir(parents=True)
    sf = open_store(settings)
    card = read_card(BUNDLED_DIR / "card.json")
    models.register_model(sf, card, source_dir=BUNDLED_DIR, models_dir=home / "models", actor="bench", now=_now)
    sites.add_site(sf, "bench", benchmark=True, actor="bench", now=_now)
    return sf, models.load_serving(sf, models_dir=home / "models")


def _now() -> datetime:
    return datetime.now(UTC)


def _pipeline(home: Path, sf: SessionFactory, model: LoadedModel | None, limits: FlowLimits) -> StreamingPipeline:
    """As ``vigil ingest --predict`` runs it: with a model, each score's Grad-CAM map is stored with it."""
    maps = home / "artifacts" if model is not None else None
    return StreamingPipeline(
        sf, dicom_dir=home / "dicom", model=model, limits=limits, actor="bench", now=_now, maps_dir=maps
    )


def _end_to_end(home: Path, files: Sequence[Path], limits: FlowLimits, *, score: bool) -> _Round:
    """Seconds from the first file offered to the last batch committed, in a new store, with warm workers."""
    sf, model = _new_store(home)
    with _pipeline(home, sf, model if score else None, limits) as pipe:
        pipe.warm_up()
        reset_peak_rss()
        with RssSampler() as main:
            t0 = time.perf_counter()
            report = pipe.run(files, site="bench")
            seconds = time.perf_counter() - t0
        main_peak, workers_peak = max(main.peak_bytes, peak_rss_bytes()), descendants_peak_rss_bytes()
    return _Round(seconds, report, main_peak, workers_peak, sf, model, home)


def _idle(home: Path, files: Sequence[Path], limits: FlowLimits) -> tuple[list[float], bool]:
    """Seconds from arrival to stored score for single studies offered to a warm, idle pipeline.

    Also whether each of them was stored and scored (the guard).
    """
    sf, model = _new_store(home)
    out, all_scored = [], True
    with _pipeline(home, sf, model, limits) as pipe:
        pipe.warm_up()
        pipe.run(files[:1], site="bench")  # the first forward pays one-off costs; a running service has paid them
        for path in files[1:]:
            t0 = time.perf_counter()
            report = pipe.run([path], site="bench")
            out.append(time.perf_counter() - t0)
            all_scored &= len(report.ingest.ingested) == 1 and report.scored == 1 and report.maps == 1
    return out, all_scored


def _backfill(ingested: Path, root: Path, limits: FlowLimits, *, workers_first: bool) -> _Backfill:
    """Score an ingest-only store's studies as ``vigil predict`` does and as ``--workers`` does, each on a copy."""
    runs: dict[bool, tuple[float, PredictReport, SessionFactory]] = {}
    for pooled in (workers_first, not workers_first):
        home = root / ("workers" if pooled else "in-process")
        sf = _copy_store(ingested, home)
        model = models.load_serving(sf, models_dir=ingested / "models")
        with StoredScorer(limits) if pooled else contextlib.nullcontext() as scorer:
            if scorer is not None:
                scorer.warm_up()
            score: prediction.Scorer = scorer or prediction.predict_pending
            t0 = time.perf_counter()
            report = score(
                sf,
                model,
                site="bench",
                batch_size=limits.batch_size,
                actor="bench",
                now=_now,
                maps_dir=home / "artifacts",
            )
            runs[pooled] = (time.perf_counter() - t0, report, sf)
    (in_s, in_report, in_sf), (w_s, w_report, w_sf) = runs[False], runs[True]
    return _Backfill(in_s, w_s, in_report, w_report, _same_scores(_stored_scores(in_sf), _stored_scores(w_sf)))


def _copy_store(home: Path, to: Path) -> SessionFactory:
    """A copy of ``home``'s SQLite store at ``to`` (its instances keep pointing at ``home``'s files)."""
    to.mkdir(parents=True)
    with (
        contextlib.closing(sqlite3.connect(home / "vigil.db")) as src,
        contextlib.closing(sqlite3.connect(to / "vigil.db")) as dst,
    ):
        src.backup(dst)
    return open_store(Settings(home=to, database_url=f"sqlite:///{to / 'vigil.db'}"))


def _stored_scores(sf: SessionFactory) -> dict[int, float | None]:
    """Each instance's stored score (None: stored unscored, with the reason)."""
    with sf() as s:
        return {p.instance_id: p.score for p in predictions.list_predictions(s)}


def _same_scores(a: dict[int, float | None], b: dict[int, float | None]) -> bool:
    """The same instances scored, each within 1e-6 (batches are composed differently), or both unscored."""
    return a.keys() == b.keys() and all(a[k] == b[k] or _close(a[k], b[k]) for k in a)


def _rate_result(  # noqa: PLR0913 - the measurements of one suite run
    config: ThroughputConfig,
    workers: int,
    files: Sequence[Path],
    floors: Sequence[float],
    ends: Sequence[_Round],
    accepted: int,
) -> BenchResult:
    floor_s = statistics.median(floors)
    end_s = statistics.median(r.seconds for r in ends)
    last = ends[-1]
    latencies = np.asarray(last.report.latencies_s)
    guard_ok = all(
        len(r.report.ingest.ingested) == accepted
        and r.report.scored + r.report.skipped == accepted
        and r.report.maps == r.report.scored
        for r in ends
    ) and _scores_match_serial(last.sf, last.model, files[:_GUARD_STUDIES])
    n = len(files)
    return BenchResult(
        name=f"pipeline to stored score and map / decode floor, time per study ({n} studies, {workers} workers)",
        ratio=end_s / floor_s,
        target=round(1 / RATE_TARGET, 4),
        guard="every study the floor accepts is stored, scored and mapped once, in every round; stored scores "
        f"equal predict_images on the serial path for the first {_GUARD_STUDIES}",
        guard_ok=guard_ok,
        absolutes={
            "studies": n,
            "workers": workers,
            "batch_size": config.batch_size,
            "rounds": len(ends),
            "floor_s": round(floor_s, 4),
            "end_to_end_s": round(end_s, 4),
            "floor_studies_per_s": round(n / floor_s, 1),
            "end_to_end_studies_per_s": round(n / end_s, 1),
            "rate_over_floor": round(floor_s / end_s, 4),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
            "peak_rss_main_mib": round(last.main_peak_bytes / 2**20, 1),
            "peak_rss_workers_mib": round(last.workers_peak_bytes / 2**20, 1),
            "peak_in_flight": last.report.peak_in_flight,
            "forward_s": round(_forward_seconds(last.sf), 4),
            "model_device": last.report.device,
            "film_pixels": _film_sizes(files),
        },
    )


def _scores_match_serial(sf: SessionFactory, model: LoadedModel, files: Sequence[Path]) -> bool:
    """Stored scores of ``files`` equal ``predict_images`` on ``read_dicom`` (the serial path), to 1e-6."""
    with sf() as s:
        uid_of = {
            i.id: i.sop_instance_uid for st in studies.list_studies(s) for i in studies.list_instances(s, st.study_uid)
        }
        stored = {uid_of[p.instance_id]: p.score for p in predictions.list_predictions(s)}
    serial = predict_images(model, [read_dicom(p) for p in files], batch_size=len(files))
    return all(_close(stored.get(p.sop_instance_uid), p.score) for p in serial)


def _forward_seconds(sf: SessionFactory) -> float:
    """Seconds the model's forward passes took in a round: the stored per-study shares of each batch, summed."""
    with sf() as s:
        return sum(p.latency_ms or 0.0 for p in predictions.list_predictions(s)) / 1e3


def _ingest_result(
    files: Sequence[Path], floors: Sequence[float], ingests: Sequence[_Round], accepted: int
) -> BenchResult:
    floor_s = statistics.median(floors)
    ingest_s = statistics.median(r.seconds for r in ingests)
    n = len(files)
    return BenchResult(
        name=f"pipeline without the model (gate, store, audit) / decode floor, time per study ({n} studies)",
        ratio=ingest_s / floor_s,
        target=round(1 / RATE_TARGET, 4),
        guard="every study the floor accepts is stored once and nothing is scored, in every round",
        guard_ok=all(len(r.report.ingest.ingested) == accepted and r.report.scored == 0 for r in ingests),
        absolutes={
            "ingest_only_s": round(ingest_s, 4),
            "ingest_only_studies_per_s": round(n / ingest_s, 1),
            "rate_over_floor": round(floor_s / ingest_s, 4),
            "peak_rss_main_mib": round(ingests[-1].main_peak_bytes / 2**20, 1),
        },
    )


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-6)


def _film_sizes(files: Sequence[Path]) -> str:
    """The image sizes among the files (read from about 50 spread over every site)."""
    sample = files[:: max(1, len(files) // 50)]
    sizes = sorted({(m.rows, m.columns) for m in (read_dicom(p).meta for p in sample)})
    return ", ".join(f"{r}x{c}" for r, c in sizes)


def _idle_result(lone: Sequence[float], *, guard_ok: bool) -> BenchResult:
    p95 = float(np.percentile(lone, 95))
    absolutes: JSONObject = {
        "p50_s": round(float(np.percentile(lone, 50)), 4),
        "p95_s": round(p95, 4),
        "max_s": round(max(lone), 4),
    }
    return BenchResult(
        name=f"one study at an idle pipeline: p95 seconds from arrival to stored score and map ({len(lone)} studies)",
        ratio=p95,
        target=IDLE_TARGET_S,
        guard="each study is stored, scored and mapped before the next arrives",
        guard_ok=guard_ok,
        absolutes=absolutes,
    )


def _backfill_result(files: Sequence[Path], fills: Sequence[_Backfill], workers: int, accepted: int) -> BenchResult:
    in_s = statistics.median(f.in_process_s for f in fills)
    w_s = statistics.median(f.workers_s for f in fills)
    n = len(files)
    return BenchResult(
        name=f"back-fill: stored studies scored by {workers} workers / in process, time per study ({n} studies)",
        ratio=w_s / in_s,
        target=1.0,
        guard="both ways score and map every stored study once, to the same scores within 1e-6, in every round",
        guard_ok=all(
            f.scores_equal
            and f.in_process.scored + f.in_process.skipped == accepted
            and (f.workers.scored, f.workers.skipped, f.workers.maps)
            == (f.in_process.scored, f.in_process.skipped, f.in_process.maps)
            and f.in_process.maps == f.in_process.scored
            for f in fills
        ),
        absolutes={
            "in_process_s": round(in_s, 4),
            "workers_s": round(w_s, 4),
            "in_process_studies_per_s": round(n / in_s, 1),
            "workers_studies_per_s": round(n / w_s, 1),
            "speedup": round(in_s / w_s, 3),
            "rounds": len(fills),
        },
    )


# --------------------------------------------------------------------------- memory (Linux /proc)


def reset_peak_rss() -> None:
    """Reset this process's peak-RSS counter (VmHWM) to its current RSS, where the kernel allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        pass


class RssSampler:
    """The highest resident set of this process seen while the block runs, sampled by a thread.

    Scoring resets the kernel's peak counter (VmHWM) at every forward pass to measure that pass
    (``core.models.inference``), so after a run VmHWM is only the peak since the last forward
    began. Sampling VmRSS every ``interval`` seconds sees the whole run, missing only a spike
    shorter than the interval; the bench reports the larger of the two.

    Attributes
    ----------
    peak_bytes : int
        The highest VmRSS sampled, in bytes; 0 where /proc is missing.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="vigil-rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, _status_bytes("self", "VmRSS"))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _status_bytes(pid: str, field: str) -> int:
    """A ``/proc/PID/status`` memory field in bytes; 0 where /proc is missing or the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes(pid: str = "self") -> int:
    """VmHWM of a process in bytes; 0 where /proc is missing or the process is gone."""
    return _status_bytes(pid, "VmHWM")


def descendants_peak_rss_bytes() -> int:
    """Sum of the VmHWM of every live descendant (the pipeline's forkserver and its workers)."""
    seen: set[str] = set()
    todo = _children("self")
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(_children(pid))
    return sum(peak_rss_bytes(pid) for pid in seen)


def _children(pid: str) -> list[str]:
    out: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out.extend((task / "children").read_text(encoding="ascii").split())
    except OSError:
        pass
    return out
