"""Ingest DICOM files or folders into a registered site, through the strict gate.

The gate (:func:`core.imaging.gate.check_file`) reads and decodes every file before
anything is written. An accepted file's bytes (those the gate hashed) are written into the
content-addressed DICOM store under ``VIGIL_HOME`` and recorded with its study, instance and
audit entry in one transaction; a rejected file leaves only its audit entry behind. The streaming
pipeline (:mod:`core.pipeline`) gates in worker processes and stores many files per transaction
through the same code (:func:`record_batch`), each file still with its own rows and audit entry.

A site that de-identifies at ingest (``[vigil.deid] deidentify_at_ingest``) passes an
:class:`~core.services.deidentify.IngestDeid`: each accepted file is then replaced by its
de-identified copy (:func:`core.services.deidentify.deidentify_for_ingest`) before anything is
placed or recorded, so the stored file, its rows and its audit entry hold only the copy's values;
a file quarantined for burned-in annotation risk is rejected with that reason and not stored.

Several ingests may run at once, from processes or threads, on the same files: a stored file
is written, and removed when its rows do not commit, only under a lock on its content address
and only when no committed row points to it; an ingest that loses a race reports a duplicate.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from core.audit.events import AuditAction
from core.errors import DicomRejectedError
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.imaging.gate import check_file
from core.imaging.harmonize import harmonize_vendor
from core.imaging.image import DicomMeta
from core.imaging.scan import iter_dicom_paths
from core.services.deidentify import DeidentifiedFile, IngestDeid, deidentify_for_ingest
from core.services.locks import content_lock
from core.store import audit_log, sites, studies
from core.store.engine import SessionFactory, write_with_retries
from core.store.studies import InstanceIn, InstanceRecord, StudyIn
from core.types import JSONObject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "GatedFile",
    "IngestOutcome",
    "IngestReport",
    "IngestRun",
    "Recorded",
    "Rejection",
    "add_to_report",
    "ingest_paths",
    "record_batch",
    "stored_path",
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A file the gate refused, with the one-sentence reason."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class IngestReport:
    """Counts and details of one ingest run (the ``vigil ingest --json`` contract)."""

    site: str
    ingested: list[str] = field(default_factory=list)  # SOPInstanceUIDs
    duplicates: list[str] = field(default_factory=list)  # paths already in the store
    rejected: list[Rejection] = field(default_factory=list)


def stored_path(dicom_dir: Path, sha256: str) -> Path:
    """Where the content-addressed copy of a file with this SHA-256 lives."""
    return dicom_dir / sha256[:2] / f"{sha256}.dcm"


@dataclass(frozen=True, slots=True)
class IngestRun:
    """What every file of one ingest run shares (the serial path and :mod:`core.pipeline` alike)."""

    session_factory: SessionFactory
    site: str
    dicom_dir: Path
    actor: str
    now: Callable[[], datetime]
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    deid: IngestDeid | None = None  # de-identify each file before it is stored (None: store as it came)


class IngestOutcome(Enum):
    """What became of one gated file."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class GatedFile(Protocol):
    """A file that passed the gate, as the store needs it: :class:`core.imaging.gate.AcceptedInstance` is one.

    The pipeline's workers send back this much and not the decoded pixels.
    """

    @property
    def path(self) -> Path: ...  # noqa: D102 - named in the class docstring
    @property
    def sha256(self) -> str: ...  # noqa: D102
    @property
    def data(self) -> bytes: ...  # noqa: D102
    @property
    def meta(self) -> DicomMeta: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class Recorded:
    """One file's outcome; ``instance`` is the stored row it now maps to (new or duplicate), else None."""

    outcome: IngestOutcome
    reason: str = ""
    instance: InstanceRecord | None = None


T = TypeVar("T")

#: Threads writing a batch's files at once (their fsyncs overlap); a few saturate one disk's queue.
_PLACING_THREADS = 8


def ingest_paths(  # noqa: PLR0913 - the store, the input, and one keyword per setting of the run
    session_factory: SessionFactory,
    paths: Sequence[Path],
    *,
    site: str,
    dicom_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    deid: IngestDeid | None = None,
) -> IngestReport:
    """Gate and ingest every DICOM file under ``paths`` into ``site``.

    Parameters
    ----------
    paths : sequence of Path
        Files or folders (searched recursively).
    site : str
        A registered site; checked before any file is read.
    dicom_dir : Path
        Root of the content-addressed DICOM store.
    now : callable
        Clock for ``created_at`` and audit timestamps (UTC).
    max_file_bytes : int
        Files larger than this are rejected unread (``Settings.max_file_bytes``).
    deid : IngestDeid, optional
        De-identify each accepted file before it is stored (``core.services.deidentify.ingest_deid``
        for the site); None stores files as they come.

    Returns
    -------
    IngestReport
        Paths in it (and in the audit entries) are absolute.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered; nothing is read or written.
    PathNotFoundError
        A path does not exist; nothing is read or written.
    """
    with session_factory() as session:
        sites.get_site(session, site)
    files = iter_dicom_paths(paths)
    run = IngestRun(session_factory, site, dicom_dir, actor, now, max_file_bytes, deid)
    report = IngestReport(site=site)
    for path in files:
        _ingest_one(run, path, report)
        if progress:
            progress(1)
    return report


def _ingest_one(run: IngestRun, path: Path, report: IngestReport) -> None:
    """Gate one file, then record it (or its rejection) in one transaction."""
    item: GatedFile | Rejection
    try:
        item = check_file(path, max_bytes=run.max_file_bytes)
    except DicomRejectedError as exc:
        item = Rejection(str(path), exc.reason)
    (recorded,), _ = record_batch(run, [item])
    add_to_report(report, item, recorded)


def add_to_report(report: IngestReport, item: GatedFile | Rejection, recorded: Recorded) -> None:
    """Count one file's outcome into ``report`` (the ``vigil ingest --json`` shape)."""
    if isinstance(item, Rejection):
        report.rejected.append(item)
    elif recorded.outcome is IngestOutcome.STORED:
        # The stored row's UID: a de-identified copy's is not the file's own.
        report.ingested.append(recorded.instance.sop_instance_uid if recorded.instance else item.meta.sop_instance_uid)
    elif recorded.outcome is IngestOutcome.DUPLICATE:
        report.duplicates.append(str(item.path))
    else:
        report.rejected.append(Rejection(str(item.path), recorded.reason))


def record_batch(
    run: IngestRun,
    items: Sequence[GatedFile | Rejection],
    *,
    then: Callable[[Session, list[Recorded]], T] | None = None,
) -> tuple[list[Recorded], T | None]:
    """Store and record a batch of gated files and rejections in one transaction.

    Each file is placed in the content-addressed store and recorded with its own audit entry,
    each rejection gets its own audit entry, exactly as one file at a time would; only the
    transaction is shared. Safe against concurrent ingests of the same content: every ingest
    holds the content locks of its files from writing them until their clean-up, so a file is
    removed only when no committed row points to it (no concurrent run can commit a row for it in
    between, or have its own committed file deleted). Locks are taken in sorted order, so two
    batches never wait on each other in a cycle.

    Parameters
    ----------
    run : IngestRun
    items : sequence of GatedFile or Rejection
        In the order their audit entries are appended.
    then : callable, optional
        ``then(session, recorded)`` runs last inside the same transaction (the pipeline records
        the batch's predictions there); whatever it raises rolls the whole batch back.

    Returns
    -------
    tuple of (list of Recorded, then's result or None)
        One :class:`Recorded` per item, in order.
    """
    if run.deid is not None:
        items = [_deidentified(item, run.deid) for item in items]
    accepted = [(i, item) for i, item in enumerate(items) if not isinstance(item, Rejection)]
    targets = {i: stored_path(run.dicom_dir, item.sha256) for i, item in accepted}
    with contextlib.ExitStack() as locks:
        for prefix in sorted({item.sha256[:2].lower() for _, item in accepted}):
            locks.enter_context(content_lock(run.dicom_dir, prefix))
        created = _place_all({targets[i]: item for i, item in reversed(accepted)})  # one write per content
        try:
            recorded, extra = write_with_retries(
                run.session_factory, functools.partial(_record_all, run=run, items=items, targets=targets, then=then)
            )
        except BaseException:
            for target in created:
                _remove_unreferenced(run.session_factory, target)
            raise
        kept = {targets[i] for i, _ in accepted if recorded[i].outcome is IngestOutcome.STORED}
        for target in created - kept:
            _remove_unreferenced(run.session_factory, target)
    return recorded, extra


def _deidentified(item: GatedFile | Rejection, deid: IngestDeid) -> GatedFile | Rejection:
    """The copy of ``item`` the store keeps, or its rejection (quarantined, or beyond de-identifying)."""
    if isinstance(item, Rejection):
        return item
    try:
        return deidentify_for_ingest(item.data, item.path, item.meta, deid)
    except DicomRejectedError as exc:
        return Rejection(str(item.path), exc.reason)


def _place_all(contents: dict[Path, GatedFile]) -> set[Path]:
    """Place every content under its target; the targets this call wrote.

    Several at once from threads: each write ends in an fsync, which releases the GIL and waits
    on the disk, so a batch's files share that wait instead of paying it one after another.
    """
    if len(contents) <= 1:
        return {target for target, item in contents.items() if _place_content(item, target)}
    with ThreadPoolExecutor(max_workers=min(_PLACING_THREADS, len(contents))) as pool:
        made = list(pool.map(lambda kv: _place_content(kv[1], kv[0]), contents.items()))
    return {target for target, wrote in zip(contents, made, strict=True) if wrote}


def _record_all(
    session: Session,
    *,
    run: IngestRun,
    items: Sequence[GatedFile | Rejection],
    targets: dict[int, Path],
    then: Callable[[Session, list[Recorded]], T] | None,
) -> tuple[list[Recorded], T | None]:
    """Stage every item's rows and audit entries (and ``then``'s) inside the caller's transaction.

    A few statements per batch rather than a few per file: the stored UIDs and studies are read
    at once, each file is decided in order against them and against the files before it, and the
    new rows and the entries are staged together. The outcome is the one recording the files one
    at a time, in order, would give.
    """
    accepted = [item for item in items if not isinstance(item, Rejection)]
    site_id = None
    if accepted:
        # Ingests queue here on PostgreSQL (SQLite's BEGIN IMMEDIATE already did), so the reads
        # below see every committed ingest: no two contents are ever stored under one UID.
        audit_log.lock_head(session)
        site_id = sites.get_site(session, run.site).id  # once per transaction, not per file
    plans, fresh = _decide(session, run, items)
    added: list[InstanceRecord] = []
    if fresh:
        assert site_id is not None  # every new file is an accepted one
        staged = [(_study_in(item.meta), _instance_in(item, path=targets[i])) for i, item in fresh]
        added = studies.add_instances(session, site_id=site_id, files=staged, now=run.now())
    recorded = [_resolve(plan, added) for plan in plans]
    drafts = [
        draft
        for item, outcome in zip(items, recorded, strict=True)
        if (draft := _entry(run, item, outcome)) is not None
    ]
    audit_log.append_many(session, drafts)
    return recorded, (then(session, recorded) if then is not None else None)


@dataclass(frozen=True, slots=True)
class _New:
    """A file whose rows are staged: the ``index``-th of the batch's new instances."""

    index: int


@dataclass(frozen=True, slots=True)
class _Again:
    """A file with the same UID and content as the ``index``-th new instance before it: a duplicate."""

    index: int


def _decide(
    session: Session, run: IngestRun, items: Sequence[GatedFile | Rejection]
) -> tuple[list[Recorded | _New | _Again], list[tuple[int, GatedFile]]]:
    """Each item's outcome, deciding duplicate, UID conflict, site conflict or new in order.

    Also returns the new files to store, with their positions among ``items``, in the order of
    their :class:`_New` indices.

    Reads inside the caller's write transaction (see :func:`_record_all`); elsewhere a lost
    unique-key race makes :func:`write_with_retries` run the whole batch again.
    """
    accepted = [item for item in items if not isinstance(item, Rejection)]
    stored = studies.instances_by_uid(session, (item.meta.sop_instance_uid for item in accepted))
    known = studies.stored_studies(session, (item.meta.study_instance_uid for item in accepted))
    new: dict[str, tuple[str, int]] = {}  # UID -> (SHA-256, index) of this batch's new instances
    plans: list[Recorded | _New | _Again] = []
    fresh: list[tuple[int, GatedFile]] = []
    for i, item in enumerate(items):
        if isinstance(item, Rejection):
            plans.append(Recorded(IngestOutcome.REJECTED, item.reason))
            continue
        uid, sha = item.meta.sop_instance_uid, item.sha256
        prior, earlier, study = stored.get(uid), new.get(uid), known.get(item.meta.study_instance_uid)
        if prior is not None and prior.sha256 == sha:
            plans.append(Recorded(IngestOutcome.DUPLICATE, "", prior))
        elif earlier is not None and earlier[0] == sha:
            plans.append(_Again(earlier[1]))
        elif prior is not None:
            plans.append(Recorded(IngestOutcome.REJECTED, _uid_conflict(uid, prior.sha256)))
        elif earlier is not None:
            plans.append(Recorded(IngestOutcome.REJECTED, _uid_conflict(uid, earlier[0])))
        elif study is not None and study.site_name != run.site:
            reason = studies.site_conflict(item.meta.study_instance_uid, study.site_name, run.site)
            plans.append(Recorded(IngestOutcome.REJECTED, reason))
        else:
            new[uid] = (sha, len(fresh))
            plans.append(_New(len(fresh)))
            fresh.append((i, item))
    return plans, fresh


def _uid_conflict(sop_instance_uid: str, stored_sha256: str) -> str:
    return (
        f"SOPInstanceUID {sop_instance_uid} is already stored with different content "
        f"(SHA-256 {stored_sha256[:12]}...); refusing to store two images under one UID"
    )


def _resolve(plan: Recorded | _New | _Again, added: Sequence[InstanceRecord]) -> Recorded:
    if isinstance(plan, _New):
        return Recorded(IngestOutcome.STORED, "", added[plan.index])
    if isinstance(plan, _Again):
        return Recorded(IngestOutcome.DUPLICATE, "", added[plan.index])
    return plan


def _entry(run: IngestRun, item: GatedFile | Rejection, recorded: Recorded) -> audit_log.EntryDraft | None:
    """The audit entry of one file's outcome: its ingestion or its rejection (a duplicate has none)."""
    if recorded.outcome is IngestOutcome.DUPLICATE:
        return None
    if recorded.outcome is IngestOutcome.REJECTED:
        return _rejection(run, Path(item.path), recorded.reason)
    assert recorded.instance is not None and not isinstance(item, Rejection)
    return audit_log.EntryDraft(
        actor=run.actor,
        action=AuditAction.STUDY_INGESTED,
        subject=item.meta.study_instance_uid,
        payload={
            "sop_instance_uid": item.meta.sop_instance_uid,
            "sha256": item.sha256,
            "site": run.site,
            **_source(item),
            "instance_id": recorded.instance.id,
        },
        recorded_at=run.now().isoformat(),
    )


def _source(accepted: GatedFile) -> JSONObject:
    """What the audit entry says of the file's origin: its path, or for a de-identified copy only hashes."""
    if isinstance(accepted, DeidentifiedFile):
        return accepted.audit_source()
    return {"source_path": str(accepted.path)}


def _rejection(run: IngestRun, path: Path, reason: str) -> audit_log.EntryDraft:
    return audit_log.EntryDraft(
        actor=run.actor,
        action=AuditAction.INGEST_REJECTED,
        subject=str(path),
        payload={"path": str(path), "site": run.site, "reason": reason},
        recorded_at=run.now().isoformat(),
    )


def _place_content(accepted: GatedFile, target: Path) -> bool:
    """Make ``target`` hold exactly the accepted bytes; True when this call wrote it.

    The bytes written are the ones the gate hashed (the source may have changed since). Called
    under the content lock, so no other ingest writes or removes ``target`` meanwhile.
    """
    if target.is_file() and _sha256_of(target) == accepted.sha256:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name no other process or thread can pick; a crash leaves at most a stray temporary file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(accepted.data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _remove_unreferenced(session_factory: SessionFactory, target: Path) -> None:
    """Delete ``target`` unless a committed row points to it (only ever under its content lock)."""
    with session_factory() as session:
        referenced = studies.path_is_referenced(session, str(target))
    if not referenced:
        target.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _study_in(meta: DicomMeta) -> StudyIn:
    """The study row: raw header values kept beside the harmonized vendor."""
    vendor = harmonize_vendor(meta.manufacturer)
    return StudyIn(
        study_uid=meta.study_instance_uid,
        patient_id=meta.patient_id,
        accession_number=meta.accession_number,
        study_date=_parse_da(meta.study_date),
        modality=meta.modality,
        body_part=meta.body_part_examined,
        view_position=meta.view_position,
        manufacturer_raw=meta.manufacturer,
        vendor=vendor.vendor,
        vendor_mapped=vendor.mapped,
        manufacturer_model_name=meta.manufacturer_model_name,
        station_name=meta.station_name,
        institution_name=meta.institution_name,
        software_versions=meta.software_versions,
        protocol_name=meta.protocol_name,
        patient_age=meta.patient_age,
        patient_sex=meta.patient_sex,
        kvp=meta.kvp,
    )


def _instance_in(accepted: GatedFile, *, path: Path) -> InstanceIn:
    meta = accepted.meta
    spacing = meta.measurement_spacing
    row_mm, col_mm = spacing.mm if spacing is not None else (None, None)
    return InstanceIn(
        sop_instance_uid=meta.sop_instance_uid,
        series_uid=meta.series_instance_uid,
        sop_class_uid=meta.sop_class_uid,
        path=str(path),
        sha256=accepted.sha256,
        rows=meta.rows,
        columns=meta.columns,
        pixel_spacing_row=row_mm,
        pixel_spacing_col=col_mm,
        photometric=meta.photometric_interpretation,
        transfer_syntax_uid=meta.transfer_syntax_uid,
        spacing_source=spacing.source if spacing is not None else None,
    )


def _parse_da(value: str) -> date | None:
    """DICOM DA (YYYYMMDD) to a date; an absent or malformed date is unknown, not a guess."""
    try:
        return datetime.strptime(value.strip(), "%Y%m%d").date() if value.strip() else None
    except ValueError:
        return None
