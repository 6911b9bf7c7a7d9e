"""Issue 19, item 5: the store at hospital scale: the worklist page, ``vigil validate`` and ``vigil drift``.

Two SYNTHETIC stores are built with the same generator, one at ``small`` and one at ``large``
prediction rows (10,000 and 1,000,000 for the issue's figures; a small default so that CI can run
the suite), and the same three reads are timed in each:

* the worklist's first page (:func:`core.services.worklist.worklist_page`, a reader's default
  triage filter), which reads one page and one count: target time(large) / time(small) <= 3;
* ``vigil validate`` (:func:`core.services.validation.validate`, not recorded in the ledger) and
  ``vigil drift --no-images`` (:func:`core.services.monitoring.run_monitoring` without a model),
  which scan every stored score: target <= 120 for 100 times the rows.

The rows come from :func:`core.store.reviews.insert_synthetic_worklist` (studies marked
SYNTHETIC, UIDs under ``2.25.999``), spread over a benchmark site and two deployment sites, with a
SYNTHETIC ground-truth label (drawn with the row's score as its probability) on every tenth study so
that ``validate`` has labelled cases to bootstrap, and the bench reader's SYNTHETIC feedback on every
twentieth. Generation time is recorded beside the figures.

The stores are SQLite files by default; with ``server`` (``--store-server URL``) each is a scratch
database on that PostgreSQL server (:func:`core.store.scratch.scratch_database`), dropped after.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import insert, select

from core.bench.harness import BenchResult
from core.config import Settings
from core.errors import BadInputError
from core.services import models as model_service
from core.services import monitoring, validation, worklist
from core.services import sites as site_service
from core.services.monitoring import MonitoringConfig
from core.services.permissions import Role, SignedInUser
from core.services.store import open_store
from core.store import model_versions, reviews, sites, users
from core.store.engine import SessionFactory
from core.store.scratch import scratch_database
from core.store.tables import FeedbackRow, InstanceRow, OutcomeRow, PredictionRow, StudyRow
from core.types import JSONObject

__all__ = ["PAGE_TARGET", "READS", "SCAN_TARGET", "StoreConfig", "build_store", "populate", "run"]

#: Issue 19's targets: time at ``large`` / time at ``small``.
PAGE_TARGET: Final = 3.0
SCAN_TARGET: Final = 120.0
#: The reads the suite can time, by their short names (``vigil bench --store-reads``).
READS: Final = ("page", "validate", "drift")
#: Every ``LABEL_EVERY``-th study gets a SYNTHETIC ground-truth label.
LABEL_EVERY: Final = 10
_SITES: Final = (("benchmark", True), ("site-a", False), ("site-b", False))
_READER: Final = "bench-reader"
_ACTOR: Final = "bench"
_CHUNK: Final = 10_000


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The two store sizes compared (prediction rows, one per study).

    Raises
    ------
    BadInputError
        ``small`` below 100 or ``large`` not above ``small``.
    """

    small: int = 10_000
    large: int = 100_000
    #: Which reads to time (short names: ``page``, ``validate``, ``drift``); all by default. At a
    #: million rows ``drift`` takes most of an hour, so the page can be measured on its own.
    reads: tuple[str, ...] = READS
    #: A PostgreSQL server URL whose role may create databases: each store is a scratch database
    #: there. None builds SQLite files.
    server: str | None = None

    def __post_init__(self) -> None:
        unknown = [r for r in self.reads if r not in READS]
        if unknown or not self.reads or len(set(self.reads)) != len(self.reads):
            raise BadInputError(f"store reads must be distinct names among {', '.join(READS)}, got {self.reads!r}")
        if self.small < 100:
            raise BadInputError(f"the small store needs at least 100 rows, got {self.small}")
        if self.large <= self.small:
            raise BadInputError(f"--rows ({self.large}) must exceed the small store's {self.small} rows")

    @classmethod
    def for_rows(cls, rows: int, reads: tuple[str, ...] = (), server: str | None = None) -> StoreConfig:
        """``rows`` in the large store against 10,000 (or ``rows // 10`` when that is fewer) in the small one."""
        return cls(small=min(10_000, rows // 10), large=rows, reads=reads or READS, server=server)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``: what the figures are of."""
        return "sqlite" if self.server is None else "postgresql"


def _now() -> datetime:
    return datetime.now(UTC)


def build_store(
    root: Path, *, rows: int, seed: int = 0, database_url: str | None = None
) -> tuple[SessionFactory, float]:
    """A SYNTHETIC store with ``rows`` scored studies; returns it and the seconds taken.

    The bundled model is registered and serving, three sites (one benchmark) and one reader exist;
    no audit entries are written for the bulk rows (never use this on a real installation).

    Parameters
    ----------
    root : Path
        Its ``VIGIL_HOME``: the model's files, and the SQLite file when ``database_url`` is None.
    database_url : str, optional
        An empty database to migrate and fill (a PostgreSQL scratch database); None makes
        ``root/vigil.db``.
    """
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{(root / 'vigil.db').resolve()}"
    settings = Settings(home=root, database_url=url)
    sf = open_store(settings)
    populate(sf, root, rows=rows, seed=seed)
    return sf, time.perf_counter() - start


def populate(sf: SessionFactory, root: Path, *, rows: int, seed: int = 0) -> None:
    """Fill an empty, migrated store (any backend) with :func:`build_store`'s SYNTHETIC rows.

    ``root`` holds the registered model's files and is the folder the synthetic image path names.
    """
    model_service.register_bundled(sf, models_dir=root / "models", actor=_ACTOR, now=_now)
    for name, benchmark in _SITES:
        site_service.add_site(sf, name, benchmark=benchmark, actor=_ACTOR, now=_now)
    threshold = _serving_threshold(sf, root)
    with sf.begin() as session:
        users.add_user(session, username=_READER, role=Role.RADIOLOGIST.value, password_hash="!synthetic", now=_now())
        serving = model_versions.serving(session)
        if serving is None:  # pragma: no cover - register_bundled made one serving
            raise BadInputError("no serving model after registration")
        reviews.insert_synthetic_worklist(
            session,
            n_studies=rows,
            site_ids=[s.id for s in sites.list_sites(session)],
            model_version_id=serving.id,
            image_path=str(root / "SYNTHETIC.dcm"),
            threshold=threshold,
            seed=seed,
            now=_now(),
        )
    _label_and_read(sf, seed)


def _serving_threshold(sf: SessionFactory, root: Path) -> float:
    """The serving model's operating threshold (read from its card, without loading its weights)."""
    return model_service.load_serving(sf, models_dir=root / "models").card.operating_threshold


def _label_and_read(sf: SessionFactory, seed: int) -> None:
    """SYNTHETIC labels on every :data:`LABEL_EVERY`-th study, and the reader's feedback on every other one of those.

    A label is positive with probability = the study's score; the bench reader's feedback makes the
    worklist's "not reviewed by me" filter meet real rows, as it does after weeks of reading.
    """
    rng = random.Random(seed + 1)
    with sf.begin() as session:
        reader = users.get_user(session, _READER).id
        scored = session.execute(
            select(StudyRow.id, PredictionRow.id, PredictionRow.score)
            .join(InstanceRow, InstanceRow.study_id == StudyRow.id)
            .join(PredictionRow, PredictionRow.instance_id == InstanceRow.id)
            .where(StudyRow.id % LABEL_EVERY == 0)
        ).all()
        now = _now()
        labels = [_outcome(study_id, rng.random() < (score or 0.0), now) for study_id, _, score in scored]
        reads = [
            _feedback(study_id, prediction_id, reader, now)
            for study_id, prediction_id, _ in scored
            if study_id % (2 * LABEL_EVERY) == 0
        ]
        for table, rows in ((OutcomeRow, labels), (FeedbackRow, reads)):
            for lo in range(0, len(rows), _CHUNK):
                session.execute(insert(table), rows[lo : lo + _CHUNK])


def _outcome(study_id: int, label: bool, now: datetime) -> dict[str, object]:
    return {
        "study_id": study_id,
        "source": "ground_truth",
        "label": label,
        "source_ref": "SYNTHETIC",
        "detail": "SYNTHETIC label for the store benchmark",
        "recorded_by": _ACTOR,
        "effective_at": now,
        "created_at": now,
    }


def _feedback(study_id: int, prediction_id: int, reader: int, now: datetime) -> dict[str, object]:
    return {
        "study_id": study_id,
        "prediction_id": prediction_id,
        "user_id": reader,
        "reader_role": Role.RADIOLOGIST.value,
        "agrees": True,
        "finding": "absent",
        "confidence": 3,
        "explanation_rating": None,
        "comment": "SYNTHETIC",
        "time_on_case_ms": 0,
        "supersedes_id": None,
        "idempotency_key": f"synthetic-{study_id}",
        "created_at": now,
    }


def _page(sf: SessionFactory) -> int:
    """The first page's length (a full page at any size)."""
    page = worklist.worklist_page(sf, SignedInUser(_READER, Role.RADIOLOGIST), worklist.WorklistFilter())
    return len(page.items)


def _validate(sf: SessionFactory) -> int:
    """How many scored studies the report counted (every row, at any size)."""
    report = validation.validate(sf, actor=_ACTOR, now=_now, record=False)
    return sum(c.n_scored for c in report.labels)


def _drift(sf: SessionFactory) -> int:
    """How many sites were monitored."""
    return len(monitoring.run_monitoring(sf, model=None, by=_ACTOR, now=_now, config=MonitoringConfig()).view.sites)


_PAGE: Final = "worklist page"
_READS: Final[dict[str, Callable[[SessionFactory], int]]] = {
    _PAGE: _page,
    "vigil validate": _validate,
    "vigil drift": _drift,
}
#: Short name (:data:`READS`) -> the read's label in the results.
_LABELS: Final = dict(zip(READS, _READS, strict=True))


@dataclass(frozen=True, slots=True)
class _Timed:
    seconds: float
    answer: int


def _time(fn: Callable[[SessionFactory], int], sf: SessionFactory, rounds: int, *, warm: bool) -> _Timed:
    if warm:
        fn(sf)  # the page is read by a running server: its caches are warm
    times, answer = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        answer = fn(sf)
        times.append(time.perf_counter() - t0)
    return _Timed(statistics.median(times), answer)


def _measure(
    root: Path, rows: int, rounds: int, names: list[str], server: str | None
) -> tuple[dict[str, _Timed], float]:
    with contextlib.ExitStack() as stack:
        url = None if server is None else stack.enter_context(scratch_database(server))
        sf, built = build_store(root, rows=rows, database_url=url)
        # validate and drift are CLI commands, each a fresh process: timed from their first call (drift's
        # first run also writes its alerts, at both sizes alike).
        timed = {name: _time(_READS[name], sf, rounds, warm=name == _PAGE) for name in names}
        sf.kw["bind"].dispose()  # its connections close before the scratch database is dropped
    return timed, built


def _guard(name: str, config: StoreConfig, small: _Timed, large: _Timed) -> tuple[str, bool]:
    """What must hold for the two timings to be comparable: the same work, scaled by the rows."""
    if name == _PAGE:
        return "a full page at both sizes", small.answer == large.answer == worklist.DEFAULT_PAGE_SIZE
    if name == "vigil validate":
        return "every row counted as scored", (small.answer, large.answer) == (config.small, config.large)
    deployment = sum(not benchmark for _, benchmark in _SITES)
    return "every deployment site monitored at both sizes", small.answer == large.answer == deployment


def run(config: StoreConfig, *, rounds: int = 3) -> list[BenchResult]:
    """Time each read at both sizes; one result per read, ratio = time(large) / time(small).

    Returns
    -------
    list of BenchResult
        Worklist page (target :data:`PAGE_TARGET`), validate and drift (target :data:`SCAN_TARGET`),
        each with both medians in seconds, the row counts and the generation seconds.
    """
    with tempfile.TemporaryDirectory(prefix="vigil-store-") as tmp:
        # Imports and first-call costs (scipy, the detectors) are paid once per process, not per
        # store: pay them on a throwaway store so that neither size's figures carry them.
        names = [_LABELS[r] for r in config.reads]
        warm_up, _ = _measure(Path(tmp) / "warm-up", 100, 1, names, config.server)
        small, small_built = _measure(Path(tmp) / "small", config.small, rounds, names, config.server)
        large, large_built = _measure(Path(tmp) / "large", config.large, rounds, names, config.server)
    results = []
    for name in names:
        absolutes: JSONObject = {
            "rows_small": config.small,
            "rows_large": config.large,
            "seconds_small": round(small[name].seconds, 6),
            "seconds_large": round(large[name].seconds, 6),
            "generation_seconds_small": round(small_built, 1),
            "generation_seconds_large": round(large_built, 1),
            "backend": config.backend,
            "data": "SYNTHETIC",
        }
        guard, ok = _guard(name, config, small[name], large[name])
        target = PAGE_TARGET if name == _PAGE else SCAN_TARGET
        backend = "SQLite" if config.server is None else "PostgreSQL"
        label = f"{name}: {config.large:,} / {config.small:,} rows ({backend}, SYNTHETIC)"
        results.append(BenchResult(label, large[name].seconds / small[name].seconds, target, guard, ok, absolutes))
    return results
