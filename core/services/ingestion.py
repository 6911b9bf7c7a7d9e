"""Ingest DICOM files or folders into a registered site, through the strict gate.

The gate (:func:`core.imaging.gate.check_file`) reads and decodes every file before
anything is written. An accepted file's bytes (those the gate hashed) are written into the
content-addressed DICOM store under ``VIGIL_HOME`` and recorded with its study, instance and
audit entry in one transaction; a rejected file leaves only its audit entry behind.

Several ingests may run at once, from processes or threads, on the same files: a stored file
is written, and removed when its rows do not commit, only under a lock on its content address
and only when no committed row points to it; an ingest that loses a race reports a duplicate.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from core.audit.events import AuditAction
from core.errors import DicomRejectedError
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.imaging.gate import AcceptedInstance, check_file
from core.imaging.harmonize import harmonize_vendor
from core.imaging.image import DicomMeta
from core.imaging.scan import iter_dicom_paths
from core.services.locks import content_lock
from core.store import audit_log, sites, studies
from core.store.engine import SessionFactory, write_with_retries
from core.store.studies import InstanceIn, StudyIn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["Rejection", "IngestReport", "ingest_paths", "stored_path"]


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
class _Run:
    """What every file of one ingest run shares."""

    session_factory: SessionFactory
    site: str
    dicom_dir: Path
    actor: str
    now: Callable[[], datetime]
    max_file_bytes: int


class _Outcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


def ingest_paths(
    session_factory: SessionFactory,
    paths: Sequence[Path],
    *,
    site: str,
    dicom_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
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
    run = _Run(session_factory, site, dicom_dir, actor, now, max_file_bytes)
    report = IngestReport(site=site)
    for path in files:
        _ingest_one(run, path, report)
        if progress:
            progress(1)
    return report


def _ingest_one(run: _Run, path: Path, report: IngestReport) -> None:
    """Gate one file, then record it (or its rejection) in one transaction."""
    try:
        accepted = check_file(path, max_bytes=run.max_file_bytes)
    except DicomRejectedError as exc:
        with run.session_factory.begin() as session:
            _append_rejection(session, run, path, exc.reason)
        report.rejected.append(Rejection(str(path), exc.reason))
        return
    outcome, reason = _store_accepted(run, accepted)
    if outcome is _Outcome.STORED:
        report.ingested.append(accepted.meta.sop_instance_uid)
    elif outcome is _Outcome.DUPLICATE:
        report.duplicates.append(str(path))
    else:
        report.rejected.append(Rejection(str(path), reason))


def _store_accepted(run: _Run, accepted: AcceptedInstance) -> tuple[_Outcome, str]:
    """Put the file's bytes in the store and record it, safely against concurrent ingests.

    Every ingest of the same content holds the same lock from writing the file until its
    clean-up, so the file is removed only when no committed row points to it: no concurrent run
    can commit a row for it in between, or have its own committed file deleted.
    """
    target = stored_path(run.dicom_dir, accepted.sha256)
    with content_lock(run.dicom_dir, accepted.sha256):
        created = _place_content(accepted, target)
        try:
            outcome, reason = write_with_retries(
                run.session_factory, lambda session: _record(session, run, accepted, target)
            )
        except BaseException:
            if created:
                _remove_unreferenced(run.session_factory, target)
            raise
        if created and outcome is not _Outcome.STORED:
            _remove_unreferenced(run.session_factory, target)
    return outcome, reason


def _record(session: Session, run: _Run, accepted: AcceptedInstance, target: Path) -> tuple[_Outcome, str]:
    """Decide duplicate, conflict or new inside the caller's write transaction, and stage the result.

    SQLite serializes writers at ``BEGIN IMMEDIATE``, so these reads see every committed ingest;
    elsewhere a lost unique-key race makes :func:`write_with_retries` run this again.
    """
    conflict = studies.find_instance_by_uid(session, accepted.meta.sop_instance_uid)
    if conflict is not None and conflict.sha256 == accepted.sha256:
        return _Outcome.DUPLICATE, ""
    if conflict is not None:
        reason = (
            f"SOPInstanceUID {accepted.meta.sop_instance_uid} is already stored with different content "
            f"(SHA-256 {conflict.sha256[:12]}...); refusing to store two images under one UID"
        )
        _append_rejection(session, run, accepted.path, reason)
        return _Outcome.REJECTED, reason
    try:
        with session.begin_nested():  # a refused study leaves the transaction usable for its rejection
            _add_rows(session, run, accepted, target)
    except DicomRejectedError as exc:  # e.g. the study UID is already stored for another site
        _append_rejection(session, run, accepted.path, exc.reason)
        return _Outcome.REJECTED, exc.reason
    return _Outcome.STORED, ""


def _add_rows(session: Session, run: _Run, accepted: AcceptedInstance, target: Path) -> None:
    site_rec = sites.get_site(session, run.site)
    stored = studies.add_study_with_instance(
        session,
        site_id=site_rec.id,
        study=_study_in(accepted.meta),
        instance=_instance_in(accepted, path=target),
        now=run.now(),
    )
    audit_log.append(
        session,
        actor=run.actor,
        action=AuditAction.STUDY_INGESTED,
        subject=accepted.meta.study_instance_uid,
        payload={
            "sop_instance_uid": accepted.meta.sop_instance_uid,
            "sha256": accepted.sha256,
            "site": run.site,
            "source_path": str(accepted.path),
            "instance_id": stored.instance.id,
        },
        recorded_at=run.now().isoformat(),
    )


def _append_rejection(session: Session, run: _Run, path: Path, reason: str) -> None:
    audit_log.append(
        session,
        actor=run.actor,
        action=AuditAction.INGEST_REJECTED,
        subject=str(path),
        payload={"path": str(path), "site": run.site, "reason": reason},
        recorded_at=run.now().isoformat(),
    )


def _place_content(accepted: AcceptedInstance, target: Path) -> bool:
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


def _instance_in(accepted: AcceptedInstance, *, path: Path) -> InstanceIn:
    meta = accepted.meta
    row_mm, col_mm = meta.pixel_spacing_mm if meta.pixel_spacing_mm else (None, None)
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
    )


def _parse_da(value: str) -> date | None:
    """DICOM DA (YYYYMMDD) to a date; an absent or malformed date is unknown, not a guess."""
    try:
        return datetime.strptime(value.strip(), "%Y%m%d").date() if value.strip() else None
    except ValueError:
        return None
