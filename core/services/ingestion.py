"""Ingest DICOM files or folders into a registered site, through the strict gate.

The gate (:func:`core.imaging.gate.check_file`) reads and decodes every file before
anything is written. An accepted file is copied into the content-addressed DICOM store
under ``VIGIL_HOME`` and recorded with its study, instance and audit entry in one
transaction; a rejected file leaves only its audit entry behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from core.audit.events import AuditAction
from core.errors import DicomRejectedError
from core.imaging.gate import AcceptedInstance, check_file
from core.imaging.harmonize import harmonize_vendor
from core.imaging.image import DicomMeta
from core.imaging.scan import iter_dicom_paths
from core.store import audit_log, sites, studies
from core.store.engine import SessionFactory
from core.store.studies import InstanceIn, StudyIn

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


def ingest_paths(
    session_factory: SessionFactory,
    paths: Sequence[Path],
    *,
    site: str,
    dicom_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
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
    report = IngestReport(site=site)
    for path in files:
        _ingest_one(session_factory, path, site=site, dicom_dir=dicom_dir, actor=actor, now=now, report=report)
        if progress:
            progress(1)
    return report


def _ingest_one(
    session_factory: SessionFactory,
    path: Path,
    *,
    site: str,
    dicom_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    report: IngestReport,
) -> None:
    """Gate one file, then record it (or its rejection) in one transaction."""
    try:
        accepted = check_file(path)
    except DicomRejectedError as exc:
        _record_rejection(session_factory, path, exc.reason, site=site, actor=actor, now=now)
        report.rejected.append(Rejection(str(path), exc.reason))
        return
    with session_factory() as session:
        conflict = studies.find_instance_by_uid(session, accepted.meta.sop_instance_uid)
    if conflict is not None and conflict.sha256 == accepted.sha256:
        report.duplicates.append(str(path))
        return
    if conflict is not None:
        reason = (
            f"SOPInstanceUID {accepted.meta.sop_instance_uid} is already stored with different content "
            f"(SHA-256 {conflict.sha256[:12]}...); refusing to store two images under one UID"
        )
        _record_rejection(session_factory, path, reason, site=site, actor=actor, now=now)
        report.rejected.append(Rejection(str(path), reason))
        return
    try:
        _record_accepted(session_factory, accepted, site=site, dicom_dir=dicom_dir, actor=actor, now=now)
    except DicomRejectedError as exc:  # e.g. the study UID is already stored for another site
        _record_rejection(session_factory, path, exc.reason, site=site, actor=actor, now=now)
        report.rejected.append(Rejection(str(path), exc.reason))
        return
    report.ingested.append(accepted.meta.sop_instance_uid)


def _record_rejection(
    session_factory: SessionFactory, path: Path, reason: str, *, site: str, actor: str, now: Callable[[], datetime]
) -> None:
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.INGEST_REJECTED,
            subject=str(path),
            payload={"path": str(path), "site": site, "reason": reason},
            recorded_at=now().isoformat(),
        )


def _record_accepted(
    session_factory: SessionFactory,
    accepted: AcceptedInstance,
    *,
    site: str,
    dicom_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> None:
    """Copy the file into the store and write its rows and audit entry, all or nothing."""
    target = stored_path(dicom_dir, accepted.sha256)
    created = _copy_atomically(accepted.path, target)
    try:
        with session_factory.begin() as session:
            site_rec = sites.get_site(session, site)
            stored = studies.add_study_with_instance(
                session,
                site_id=site_rec.id,
                study=_study_in(accepted.meta),
                instance=_instance_in(accepted, path=target),
                now=now(),
            )
            audit_log.append(
                session,
                actor=actor,
                action=AuditAction.STUDY_INGESTED,
                subject=accepted.meta.study_instance_uid,
                payload={
                    "sop_instance_uid": accepted.meta.sop_instance_uid,
                    "sha256": accepted.sha256,
                    "site": site,
                    "source_path": str(accepted.path),
                    "instance_id": stored.instance.id,
                },
                recorded_at=now().isoformat(),
            )
    except BaseException:
        # The copy is only kept when its rows committed; otherwise nothing of the file remains.
        if created:
            target.unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` via a temporary name; False when ``target`` already existed."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return True


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
