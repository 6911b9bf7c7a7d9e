"""Score stored studies with the serving model: one transaction per batch, one audit entry per study.

Several ``vigil predict`` runs (or a run and the app) may score the same site at once: each
batch's transaction re-reads which instances already have a prediction from the model and
records only the others, so no instance is ever scored twice by one model version.

Sites may be served by different versions (a promotion may name sites, see
``core.store.deployments``): a run scores only the studies of sites its version serves, and
:func:`predict_serving` runs one pass per version serving a site in scope.

A promotion or rollback may switch the serving version while a run is scoring. Each batch's
transaction takes the ledger's head lock and re-reads which version serves each of its studies'
sites before it writes (the switch holds the same lock): a batch scored by a version that stopped
serving one of them is dropped, not stored, and the run ends with ``superseded`` set so that its
caller loads the new version and goes on. So every stored prediction carries exactly the version
that was serving its study's site when it was committed.

**The benchmark as a reference.** Drift at a site is measured against the benchmark as scored by
the version serving that site (``core.services.monitoring``). A version switched in at some sites
only does not serve the benchmark site, so :func:`score_reference` scores the benchmark's studies
with it, marked ``"reference": true`` in their audit entries: the one exception to the rule
above, allowed only for benchmark studies and only while the version serves some site. Readers of
the benchmark site still see the version serving it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.audit.events import AuditAction
from core.audit.records import RECORD_HASH_KEY, RecordKind
from core.errors import BadInputError, ServingVersionChangedError
from core.imaging.dicom import read_dicom
from core.imaging.image import DicomImage
from core.models.inference import ImagePrediction, predict_images
from core.models.loading import LoadedModel
from core.services.score_maps import MapInput, WrittenMap, map_scorer, record_maps, write_maps
from core.store import audit_log, deployments, model_versions, predictions, record_hashes, sites, studies
from core.store.engine import SessionFactory, write_with_retries
from core.store.model_versions import ModelVersionRecord
from core.store.predictions import PredictionIn
from core.store.sites import SiteRecord
from core.store.studies import InstanceRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "PredictReport",
    "Recording",
    "ScoreTally",
    "Scorer",
    "pending_work",
    "predict_pending",
    "predict_serving",
    "record_scores",
    "score_reference",
    "serving_version",
    "store_scores",
    "superseded_report",
    "unreadable_prediction",
]


@dataclass(frozen=True, slots=True)
class PredictReport:
    """What ``vigil predict`` did."""

    model_version: str
    scored: int
    skipped: int  # stored, not scored: outside the intended use or unreadable, with the reason logged
    positives: int
    device: str
    superseded: bool = False  # the serving version changed mid-run; the rest is for the new version
    maps: int = 0  # Grad-CAM maps stored with the scores (0 unless asked for)


def predict_pending(  # noqa: PLR0913 - keyword-only; the scope, the batch and the run's hooks
    session_factory: SessionFactory,
    model: LoadedModel,
    *,
    site: str | None,
    batch_size: int,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    maps_dir: Path | None = None,
) -> PredictReport:
    """Predict every stored instance of a site ``model`` serves that has no prediction from it yet.

    Parameters
    ----------
    site : str or None
        Restrict to one registered site; every site ``model``'s version serves when None.
    batch_size : int
        Studies per forward pass and per transaction.
    on_total : callable, optional
        Told how many instances are pending before work starts (for a progress bar).
    maps_dir : Path, optional
        Store each new score's Grad-CAM map here (``Settings.artifacts_dir``), in the score's
        transaction, from the model input just scored (:mod:`core.services.score_maps`); the
        viewer then opens the study with its map made. None stores scores only.
    """
    if batch_size < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    work = pending_work(session_factory, model, site=site)
    if work is None:  # switched away before this run began: the caller loads what serves now
        return superseded_report(model)
    mv, pending = work
    if on_total:
        on_total(len(pending))
    return _score(session_factory, model, mv, pending, batch_size, Recording(actor, now, progress, maps_dir=maps_dir))


def pending_work(
    session_factory: SessionFactory, model: LoadedModel, *, site: str | None
) -> tuple[ModelVersionRecord, list[InstanceRecord]] | None:
    """``model``'s stored version and the instances it should score now; None when it serves no site.

    The instances of ``site`` (every site when None) with no prediction from ``model`` whose
    study's site ``model`` serves: studies of sites another version serves are that version's work.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    """
    with session_factory() as session:
        site_id = sites.get_site(session, site).id if site is not None else None
        mv = model_versions.get_by_version(session, model.card.version)
        serving = set(deployments.serving_by_site(session).values()) | {model_versions.serving_id(session)}
        queued = studies.instances_without_prediction(session, model_version_id=mv.id, site_id=site_id)
        served = deployments.serving_for_studies(session, {i.study_id for i in queued})
        pending = [i for i in queued if served[i.study_id] == mv.id]
    return (mv, pending) if mv.id in serving else None


def superseded_report(model: LoadedModel) -> PredictReport:
    """The report of a pass whose version stopped serving before it began."""
    return ScoreTally().report(model, superseded=True)


class Scorer(Protocol):
    """Scores what one version has pending, as :func:`predict_pending` does (its signature)."""

    def __call__(  # noqa: PLR0913 - predict_pending's
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
        """One pass: every instance pending for ``model`` at ``site`` (every site when None)."""


@dataclass(frozen=True, slots=True)
class Recording:
    """Who records a scoring run's predictions, when, and who hears of each batch."""

    actor: str
    now: Callable[[], datetime]
    progress: Callable[[int], None] | None = None
    reference: bool = False
    lock: threading.Lock | None = None  # a model shared with other threads: held around each forward pass
    maps_dir: Path | None = None  # where each new score's Grad-CAM map is written (None: no maps)


@dataclass(slots=True)
class ScoreTally:
    """Running counts of a scoring pass, frozen into its :class:`PredictReport` at the end."""

    scored: int = 0
    skipped: int = 0
    positives: int = 0
    maps: int = 0

    def add(self, recorded: Sequence[ImagePrediction], maps: int) -> None:
        """Count one stored batch: the predictions it recorded and the maps recorded with them."""
        self.scored += sum(r.score is not None for r in recorded)
        self.skipped += sum(r.score is None for r in recorded)
        self.positives += sum(bool(r.label) for r in recorded)
        self.maps += maps

    def report(self, model: LoadedModel, *, superseded: bool = False) -> PredictReport:
        """The counts so far as ``model``'s report."""
        device = str(model.device)
        return PredictReport(
            model.card.version, self.scored, self.skipped, self.positives, device, superseded, self.maps
        )


def store_scores(  # noqa: PLR0913 - the store, the model and its row, the batch, how to record it
    session_factory: SessionFactory,
    model: LoadedModel,
    mv: ModelVersionRecord,
    chunk: Sequence[InstanceRecord],
    results: Sequence[ImagePrediction],
    inputs: Sequence[MapInput | None],
    how: Recording,
) -> tuple[list[ImagePrediction], int]:
    """Write the batch's maps (when asked), then record its scores and maps in one transaction.

    Parameters
    ----------
    chunk, results, inputs
        One instance, its prediction and what its map is made from (None: no model input), each.

    Returns
    -------
    (list of ImagePrediction, int)
        What was recorded, and how many maps.

    Raises
    ------
    ServingVersionChangedError
        ``mv`` no longer serves a study of the batch: nothing was recorded (the maps written are
        unreferenced content-addressed files, found in place by the version that scores next).
    """
    with how.lock or contextlib.nullcontext():  # Grad-CAM runs the model too
        maps = write_maps(model, inputs, results, how.maps_dir) if how.maps_dir is not None else None
    record = functools.partial(
        record_scores,
        model=model,
        model_version=mv,
        chunk=chunk,
        results=results,
        maps=maps,
        actor=how.actor,
        now=how.now,
        reference=how.reference,
    )
    return write_with_retries(session_factory, record)


def _score(  # noqa: PLR0913 - the store, the model and its row, the work, how to record it
    session_factory: SessionFactory,
    model: LoadedModel,
    mv: ModelVersionRecord,
    pending: Sequence[InstanceRecord],
    batch_size: int,
    how: Recording,
) -> PredictReport:
    """Score ``pending`` in batches, one transaction each; stop (superseded) when ``mv`` may no longer record."""
    tally = ScoreTally()
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        with how.lock or contextlib.nullcontext():
            results, inputs = _predict_chunk(model, chunk, batch_size=batch_size, maps=how.maps_dir is not None)
        try:
            tally.add(*store_scores(session_factory, model, mv, chunk, results, inputs, how))
        except ServingVersionChangedError:
            return tally.report(model, superseded=True)
        if how.progress:
            how.progress(len(chunk))
    return tally.report(model)


def score_reference(  # noqa: PLR0913 - keyword-only; as predict_pending
    session_factory: SessionFactory,
    model: LoadedModel,
    *,
    batch_size: int,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
    lock: threading.Lock | None = None,
) -> PredictReport | None:
    """Score the benchmark's studies not yet scored by ``model``, as the reference of the sites it serves.

    Only for a version serving some site now that is not the benchmark's (the version serving the
    benchmark scores it through :func:`predict_pending`). Each entry is audited like any prediction,
    with ``"reference": true``.

    Parameters
    ----------
    lock : threading.Lock, optional
        The shared model's lock (the app's), held around each batch's forward pass only.

    Returns
    -------
    PredictReport or None
        None when there is nothing to do: no benchmark site, or ``model`` serves the benchmark
        site or no site at all. ``superseded`` when it stopped serving every site mid-run.
    """
    if batch_size < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    with session_factory() as session:
        mv = model_versions.get_by_version(session, model.card.version)
        bench = _reference_site(session, mv.id)
        if bench is None:
            return None
        pending = studies.instances_without_prediction(session, model_version_id=mv.id, site_id=bench.id)
    how = Recording(actor, now, progress, reference=True, lock=lock)
    return _score(session_factory, model, mv, pending, batch_size, how)


def _reference_site(session: Session, version_id: int) -> SiteRecord | None:
    """The benchmark site when ``version_id`` serves some site now but not it (its reference is to score), else None."""
    bench = sites.benchmark_site(session)
    return bench if _needs_reference(bench, deployments.serving_by_site(session), version_id) else None


def _needs_reference(bench: SiteRecord | None, by_site: Mapping[str, int | None], version_id: int) -> bool:
    """Whether ``version_id`` serves some site in ``by_site`` but not the benchmark ``bench``."""
    return bench is not None and by_site.get(bench.name) != version_id and version_id in by_site.values()


def _versions_needing_reference(session_factory: SessionFactory) -> list[str]:
    """The versions :func:`score_reference` has work for, by name: chosen before any is loaded."""
    with session_factory() as session:
        bench, by_site = sites.benchmark_site(session), deployments.serving_by_site(session)
        wanted = sorted(v for v in set(by_site.values()) if v is not None and _needs_reference(bench, by_site, v))
        return [model_versions.get_by_id(session, v).version for v in wanted]


def predict_serving(  # noqa: PLR0913 - keyword-only; as predict_pending, with a loader
    session_factory: SessionFactory,
    load: Callable[[str], LoadedModel],
    *,
    site: str | None,
    batch_size: int,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
    maps_dir: Path | None = None,
    scorer: Scorer | None = None,
) -> list[PredictReport]:
    """Score what is pending at ``site`` (every site when None) with the version serving each site.

    One :func:`predict_pending` pass per version serving a site in scope, loaded with
    ``load(version)``; again after a pass that a promotion or rollback superseded, until a round
    of passes finishes with nothing superseded. Over every site (``site`` None), each version
    serving sites other than the benchmark's then scores the benchmark as their reference
    (:func:`score_reference`). ``maps_dir`` is :func:`predict_pending`'s (a reference score gets no
    map: readers of the benchmark see the version serving it). ``scorer`` runs each pass in place of
    :func:`predict_pending` (the streaming pipeline's workers: ``core.pipeline.stored``).

    Returns
    -------
    list of PredictReport
        Every pass in order; a superseded pass is followed by the passes that took its work over.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        No version serves a site in scope.
    """
    reports: list[PredictReport] = []
    while True:
        superseded = False
        for version in _versions_serving(session_factory, site):
            report = (scorer or predict_pending)(
                session_factory,
                load(version),
                site=site,
                batch_size=batch_size,
                actor=actor,
                now=now,
                progress=progress,
                maps_dir=maps_dir,
            )
            reports.append(report)
            superseded = superseded or report.superseded
        if not superseded:
            break
    if site is None:  # everything pending: the benchmark's reference for versions serving other sites too
        for version in _versions_needing_reference(session_factory):
            reference = score_reference(
                session_factory, load(version), batch_size=batch_size, actor=actor, now=now, progress=progress
            )
            if reference is not None:
                reports.append(reference)
    return reports


def serving_version(session_factory: SessionFactory, site: str) -> str:
    """The name of the version serving ``site`` now (its own switch, else the fleet's).

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        No version serves it.
    """
    return _versions_serving(session_factory, site)[0]


def _versions_serving(session_factory: SessionFactory, site: str | None) -> list[str]:
    """The versions serving ``site`` (every site when None), the fleet's first."""
    with session_factory() as session:
        if site is not None:
            sites.get_site(session, site)
        by_site = deployments.serving_by_site(session)
        fleet = model_versions.serving_id(session)
        wanted = [by_site[site]] if site is not None else [fleet, *by_site.values()]
        ids = [v for v in dict.fromkeys(wanted) if v is not None]
        if not ids:
            raise BadInputError("no model version is serving: run `vigil init` to register the bundled model")
        return [model_versions.get_by_id(session, v).version for v in ids]


def _may_record(session: Session, model_version_id: int, chunk: Sequence[InstanceRecord], *, reference: bool) -> bool:
    """Whether the version may record predictions of ``chunk`` now (read after the head lock)."""
    ids = {inst.study_id for inst in chunk}
    if not reference:
        return all(v == model_version_id for v in deployments.serving_for_studies(session, ids).values())
    bench = sites.benchmark_site(session)
    serves = model_version_id in deployments.serving_by_site(session).values()
    return serves and bench is not None and studies.sites_of(session, ids) <= {bench.id}


def _predict_chunk(
    model: LoadedModel, chunk: Sequence[InstanceRecord], *, batch_size: int, maps: bool
) -> tuple[list[ImagePrediction], list[MapInput | None]]:
    """Read and score one chunk; a file that no longer decodes is logged as a fallback, never scored.

    Returns the predictions and, when ``maps``, for each what its Grad-CAM map is made from, the
    map itself where the scoring forward pass made it (:func:`map_scorer`); None where no model
    input was made (unreadable, or outside the intended use), and everywhere without ``maps``.
    """
    images: list[DicomImage] = []
    readable: list[int] = []
    failures: dict[int, str] = {}
    for i, inst in enumerate(chunk):
        try:
            images.append(read_dicom(Path(inst.path)))
            readable.append(i)
        except (OSError, ValueError, BadInputError) as exc:
            failures[i] = f"pixels unreadable: {type(exc).__name__}: {exc}"
    kept: dict[int, MapInput] = {}
    score = map_scorer(model, kept) if maps else None
    scored = iter(predict_images(model, images, batch_size=batch_size, score=score))
    preds = [
        unreadable_prediction(model, inst, failures[i]) if i in failures else next(scored)
        for i, inst in enumerate(chunk)
    ]
    by_chunk = {readable[j]: x for j, x in kept.items()}
    return preds, [by_chunk.get(i) for i in range(len(chunk))]


def unreadable_prediction(model: LoadedModel, inst: InstanceRecord, reason: str) -> ImagePrediction:
    """A stored file that no longer decodes: recorded with its reason, never scored."""
    return ImagePrediction(
        sop_instance_uid=inst.sop_instance_uid,
        study_instance_uid=inst.study_uid,
        model_version=model.card.version,
        score=None,
        label=None,
        input_sha256=None,
        latency_ms=None,
        device=None,
        peak_memory_bytes=None,
        amp=False,
        fallback=reason,
    )


def record_scores(  # noqa: PLR0913 - keyword-only; the chunk, its results and maps, who records them
    session: Session,
    *,
    model: LoadedModel,
    model_version: ModelVersionRecord,
    chunk: Sequence[InstanceRecord],
    results: Sequence[ImagePrediction],
    actor: str,
    now: Callable[[], datetime],
    maps: Sequence[WrittenMap | None] | None = None,
    reference: bool = False,
) -> tuple[list[ImagePrediction], int]:
    """Stage the chunk's predictions, their maps and audit entries; return the predictions recorded and the maps.

    Shared by :func:`predict_pending` and the streaming pipeline (:mod:`core.pipeline`), so a
    prediction row, its map and their audit payloads are the same whichever path made them.

    An instance that another ``vigil predict`` scored with the same model while this one was
    computing is left as that run recorded it: one prediction per instance and model, ever (and
    its map, if any, is the one recorded with it).

    Each entry carries what the prediction was made from and how: the input tensor's SHA-256, the
    output, the model version's weights SHA-256 and the SHA-256 of its stored card (which pins the
    preprocessing, threshold and network), latency, device, peak memory, autocast and any fallback;
    and ``record_sha256``, the hash of the row as stored (``core.audit.records``).

    Parameters
    ----------
    maps : sequence of WrittenMap or None, optional
        One per item of ``chunk`` (:func:`core.services.score_maps.write_maps`); each instance
        scored here gets its map's row. None records no map.
    reference : bool
        The chunk is benchmark studies scored as the reference of a version serving other sites
        (:func:`score_reference`): checked as such, and marked in each audit entry.

    Raises
    ------
    ServingVersionChangedError
        ``model_version`` no longer serves the site of a study in ``chunk`` (with ``reference``:
        no longer serves any site, or a study is not the benchmark's); nothing may be recorded
        for it (roll back).
    """
    staged = _stage(session, model, model_version, chunk, results, actor=actor, now=now, reference=reference)
    made = [res for _, res, _ in staged]
    if maps is None:
        return made, 0
    written = {inst.id: m for inst, m in zip(chunk, maps, strict=True)}
    scored = [(inst, pid, written[inst.id]) for inst, res, pid in staged if res.score is not None]
    return made, record_maps(session, scored, model=model, actor=actor, now=now)


def _stage(  # noqa: PLR0913 - record_scores' inputs
    session: Session,
    model: LoadedModel,
    model_version: ModelVersionRecord,
    chunk: Sequence[InstanceRecord],
    results: Sequence[ImagePrediction],
    *,
    actor: str,
    now: Callable[[], datetime],
    reference: bool,
) -> list[tuple[InstanceRecord, ImagePrediction, int]]:
    """The predictions and audit entries of :func:`record_scores`; each recorded instance, its result and row id."""
    model_version_id = model_version.id
    audit_log.lock_head(session)  # serializes with a deployment switch before what serves is read
    if not _may_record(session, model_version_id, chunk, reference=reference):
        raise ServingVersionChangedError(model_version.version)
    card_sha256 = hashlib.sha256(model_version.card_json.encode("utf-8")).hexdigest()
    done = predictions.predicted_instances(session, [inst.id for inst in chunk], model_version_id)
    todo: dict[int, tuple[InstanceRecord, ImagePrediction]] = {}
    for inst, res in zip(chunk, results, strict=True):
        if inst.id not in done:
            todo.setdefault(inst.id, (inst, res))  # an instance twice in one chunk is scored once
    stamped = [(inst, res, now()) for inst, res in todo.values()]
    recs = predictions.add_predictions(
        session, [(_prediction_in(model, model_version_id, inst, res), at) for inst, res, at in stamped]
    )
    digests = record_hashes.record_hashes(session, RecordKind.PREDICTION, [rec.id for rec in recs])
    drafts = [
        audit_log.EntryDraft(
            actor=actor,
            action=AuditAction.PREDICTION_MADE if res.score is not None else AuditAction.PREDICTION_SKIPPED,
            subject=inst.study_uid,
            payload={
                "prediction_id": rec.id,
                "sop_instance_uid": inst.sop_instance_uid,
                "model_version": model.card.version,
                "input_sha256": res.input_sha256,
                "score": res.score,
                "label": res.label,
                "fallback": res.fallback,
                "model_weights_sha256": model_version.weights_sha256,
                "model_card_sha256": card_sha256,
                "latency_ms": rec.latency_ms,
                "device": rec.device,
                "peak_memory_bytes": rec.peak_memory_bytes,
                "amp": res.amp,
                **({"reference": True} if reference else {}),
                RECORD_HASH_KEY: digests[rec.id],
            },
            recorded_at=at.isoformat(),
        )
        for (inst, res, at), rec in zip(stamped, recs, strict=True)
    ]
    audit_log.append_many(session, drafts)
    return [(inst, res, rec.id) for (inst, res, _), rec in zip(stamped, recs, strict=True)]


def _prediction_in(
    model: LoadedModel, model_version_id: int, inst: InstanceRecord, res: ImagePrediction
) -> PredictionIn:
    """The stored row of one instance's result."""
    return PredictionIn(
        instance_id=inst.id,
        model_version_id=model_version_id,
        input_sha256=res.input_sha256,
        score=res.score,
        label=res.label,
        threshold=model.card.operating_threshold,
        latency_ms=res.latency_ms,
        device=res.device or "none",
        peak_memory_bytes=res.peak_memory_bytes,
        fallback=res.fallback,
    )
