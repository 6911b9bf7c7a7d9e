"""Studies and their DICOM instances: duplicate detection, ingest, look-up and work queues."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, exists, func, insert, select
from sqlalchemy.orm import Session

from core.errors import BadInputError, DicomRejectedError, UnknownStudyError
from core.imaging.spacing import SpacingSource
from core.store.batching import chunks
from core.store.sites import get_site
from core.store.tables import InstanceRow, PredictionRow, SiteRow, StudyRow

__all__ = [
    "InstanceIn",
    "InstanceRecord",
    "StoredInstance",
    "StoredStudy",
    "StudyIn",
    "StudyRecord",
    "add_instances",
    "add_study_with_instance",
    "count_studies",
    "find_instance",
    "find_instance_by_uid",
    "first_instances",
    "get_study",
    "instances_by_uid",
    "instances_without_prediction",
    "list_instances",
    "list_studies",
    "path_is_referenced",
    "patient_studies",
    "site_conflict",
    "sites_of",
    "stored_studies",
]


@dataclass(frozen=True, slots=True)
class StudyIn:
    """Study-level header of an ingested file, harmonized by ``core.imaging``.

    Text attributes absent from the header are ``""``; ``study_date`` and ``kvp`` are None
    when absent. ``manufacturer_raw`` is the header's Manufacturer as read, ``vendor`` the
    harmonized name and ``vendor_mapped`` whether the harmonization table knew it.
    """

    study_uid: str
    patient_id: str
    accession_number: str
    study_date: date | None
    modality: str
    body_part: str
    view_position: str
    manufacturer_raw: str
    vendor: str
    vendor_mapped: bool
    manufacturer_model_name: str
    station_name: str
    institution_name: str
    software_versions: str
    protocol_name: str
    patient_age: str
    patient_sex: str
    kvp: float | None


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """A stored study: :class:`StudyIn`'s fields plus keys, its site's name and creation time."""

    id: int
    site_id: int
    site_name: str
    study_uid: str
    patient_id: str
    accession_number: str
    study_date: date | None
    modality: str
    body_part: str
    view_position: str
    manufacturer_raw: str
    vendor: str
    vendor_mapped: bool
    manufacturer_model_name: str
    station_name: str
    institution_name: str
    software_versions: str
    protocol_name: str
    patient_age: str
    patient_sex: str
    kvp: float | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InstanceIn:
    """One DICOM file: identity, content hash and pixel geometry.

    ``sha256`` is the hex SHA-256 of the file's bytes. ``pixel_spacing_row`` and
    ``pixel_spacing_col`` are the spacing lengths are measured with, in mm, and ``spacing_source``
    the attribute they came from (PixelSpacing, else ImagerPixelSpacing: see
    ``core.imaging.spacing``); all three are None when the header states no spacing.

    Raises
    ------
    BadInputError
        A spacing without its source or a source without a spacing (both named).
    """

    sop_instance_uid: str
    series_uid: str
    sop_class_uid: str
    path: str
    sha256: str
    rows: int
    columns: int
    pixel_spacing_row: float | None
    pixel_spacing_col: float | None
    photometric: str
    transfer_syntax_uid: str
    spacing_source: SpacingSource | None = None

    def __post_init__(self) -> None:
        stated = (self.pixel_spacing_row is not None, self.pixel_spacing_col is not None)
        if stated != (self.spacing_source is not None,) * 2:
            raise BadInputError(
                f"instance {self.sop_instance_uid}: a pixel spacing and the attribute it came from go together, got "
                f"({self.pixel_spacing_row!r}, {self.pixel_spacing_col!r}) mm from {self.spacing_source!r}"
            )


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A stored instance: :class:`InstanceIn`'s fields plus keys, its study's UID and creation time."""

    id: int
    study_id: int
    study_uid: str
    sop_instance_uid: str
    series_uid: str
    sop_class_uid: str
    path: str
    sha256: str
    rows: int
    columns: int
    pixel_spacing_row: float | None
    pixel_spacing_col: float | None
    photometric: str
    transfer_syntax_uid: str
    created_at: datetime
    spacing_source: SpacingSource | None


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What :func:`add_study_with_instance` staged; ``new_study`` is False when the study existed."""

    study: StudyRecord
    instance: InstanceRecord
    new_study: bool


@dataclass(frozen=True, slots=True)
class StoredStudy:
    """Where a stored study lives: its row id, its site's id and name."""

    id: int
    site_id: int
    site_name: str


def find_instance(session: Session, sop_instance_uid: str, sha256: str) -> InstanceRecord | None:
    """Return the stored instance with this SOP Instance UID and content hash, if any (duplicate check)."""
    query = _instances().where(InstanceRow.sop_instance_uid == sop_instance_uid, InstanceRow.sha256 == sha256)
    row = session.execute(query).one_or_none()
    return None if row is None else _instance_record(row[0], row[1])


def find_instance_by_uid(session: Session, sop_instance_uid: str) -> InstanceRecord | None:
    """The stored instance with this SOPInstanceUID, whatever its content; None when absent.

    Ingest uses it to tell a true duplicate (same content hash) from a different image
    written under a UID that is already taken.
    """
    return instances_by_uid(session, [sop_instance_uid]).get(sop_instance_uid)


def instances_by_uid(session: Session, sop_instance_uids: Iterable[str]) -> dict[str, InstanceRecord]:
    """:func:`find_instance_by_uid` for many UIDs in a few statements: each stored UID's first instance.

    Parameters
    ----------
    session : Session
    sop_instance_uids : iterable of str
        Repeats are looked up once.

    Returns
    -------
    dict of str to InstanceRecord
        Only the UIDs that are stored, each with its lowest-id instance.
    """
    found: dict[str, InstanceRecord] = {}
    for chunk in chunks(sorted(set(sop_instance_uids))):
        query = _instances().where(InstanceRow.sop_instance_uid.in_(chunk)).order_by(InstanceRow.id)
        for row, study_uid in session.execute(query):
            found.setdefault(row.sop_instance_uid, _instance_record(row, study_uid))
    return found


def stored_studies(session: Session, study_uids: Iterable[str]) -> dict[str, StoredStudy]:
    """The studies among ``study_uids`` that are stored, by StudyInstanceUID, with their site."""
    found: dict[str, StoredStudy] = {}
    for chunk in chunks(sorted(set(study_uids))):
        query = (
            select(StudyRow.study_uid, StudyRow.id, StudyRow.site_id, SiteRow.name)
            .join(SiteRow, StudyRow.site_id == SiteRow.id)
            .where(StudyRow.study_uid.in_(chunk))
        )
        found.update({uid: StoredStudy(id_, site_id, name) for uid, id_, site_id, name in session.execute(query)})
    return found


def add_instances(
    session: Session, *, site_id: int, files: Sequence[tuple[StudyIn, InstanceIn]], now: datetime
) -> list[InstanceRecord]:
    """Stage many instances, and each one's study unless stored, in two INSERT statements.

    What :func:`add_study_with_instance` called once per file, in order, would stage: a study new
    to the store takes the header of its first file here, and a stored study keeps its own. The
    caller owns the transaction and decides duplicates first (:func:`instances_by_uid`).

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    site_id : int
        ``SiteRecord.id`` of the site every file was ingested for.
    files : sequence of (StudyIn, InstanceIn)
        The harmonized headers, one pair per file.
    now : datetime
        Aware creation time of every row staged.

    Returns
    -------
    list of InstanceRecord
        One per file, in order.

    Raises
    ------
    DicomRejectedError
        If a study is already stored for another site (the first such file is named; nothing is staged).
    sqlalchemy.exc.IntegrityError
        If a (SOP Instance UID, SHA-256) is already stored or repeated in ``files``.
    """
    if not files:
        return []
    known = stored_studies(session, (study.study_uid for study, _ in files))
    for study, instance in files:
        if (stored := known.get(study.study_uid)) is not None and stored.site_id != site_id:
            new_site = session.scalars(select(SiteRow.name).where(SiteRow.id == site_id)).one_or_none()
            raise DicomRejectedError(instance.path, site_conflict(study.study_uid, stored.site_name, new_site))
    study_ids = {uid: stored.id for uid, stored in known.items()}
    new: dict[str, StudyIn] = {}  # in order of first appearance, each with its first file's header
    for study, _ in files:
        if study.study_uid not in study_ids:
            new.setdefault(study.study_uid, study)
    if new:
        staged = [{**_values(study), "site_id": site_id, "created_at": now} for study in new.values()]
        returned = session.scalars(insert(StudyRow).returning(StudyRow.id, sort_by_parameter_order=True), staged)
        study_ids.update(zip(new, returned, strict=True))
    rows = [
        {**_values(instance), "study_id": study_ids[study.study_uid], "created_at": now} for study, instance in files
    ]
    inserted = session.execute(
        insert(InstanceRow).returning(InstanceRow.id, InstanceRow.created_at, sort_by_parameter_order=True), rows
    ).all()
    return [
        InstanceRecord(
            id=id_,
            study_id=row["study_id"],
            study_uid=study.study_uid,
            created_at=created_at,
            **_values(instance),
        )
        for (study, instance), row, (id_, created_at) in zip(files, rows, inserted, strict=True)
    ]


def site_conflict(study_uid: str, stored_site: str | None, new_site: str | int | None) -> str:
    """The reason a file is refused whose study is already stored for another site."""
    return f"study {study_uid} is already stored for site {stored_site!r}, not {new_site!r}"


def path_is_referenced(session: Session, path: str) -> bool:
    """Whether a committed instance row names ``path`` as its stored copy."""
    return bool(session.scalar(select(exists().where(InstanceRow.path == path))))


def add_study_with_instance(
    session: Session, *, site_id: int, study: StudyIn, instance: InstanceIn, now: datetime
) -> StoredInstance:
    """Stage an instance, and its study unless the StudyInstanceUID is already stored.

    An existing study keeps the header it was first stored with. The caller owns the transaction.

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    site_id : int
        ``SiteRecord.id`` of the site the file was ingested for.
    study, instance : StudyIn, InstanceIn
        The harmonized header of one file.
    now : datetime
        Aware creation time.

    Returns
    -------
    StoredInstance

    Raises
    ------
    DicomRejectedError
        If the study is already stored for another site.
    sqlalchemy.exc.IntegrityError
        If the same (SOP Instance UID, SHA-256) is already stored (check :func:`find_instance`
        first), or ``site_id`` does not exist.
    """
    study_row = session.scalars(select(StudyRow).where(StudyRow.study_uid == study.study_uid)).one_or_none()
    new_study = study_row is None
    if study_row is None:
        study_row = StudyRow(site_id=site_id, created_at=now, **_values(study))
        session.add(study_row)
        session.flush()
    elif study_row.site_id != site_id:
        raise DicomRejectedError(instance.path, _site_conflict(session, study.study_uid, study_row.site_id, site_id))
    instance_row = InstanceRow(study_id=study_row.id, created_at=now, **_values(instance))
    session.add(instance_row)
    session.flush()  # fires UNIQUE(sop_instance_uid, sha256) now, inside the caller's transaction
    site_name = session.scalars(select(SiteRow.name).where(SiteRow.id == site_id)).one()
    return StoredInstance(
        study=_study_record(study_row, site_name),
        instance=_instance_record(instance_row, study_row.study_uid),
        new_study=new_study,
    )


def get_study(session: Session, study_uid: str) -> StudyRecord:
    """Look a study up by StudyInstanceUID.

    Raises
    ------
    UnknownStudyError
        If the study is not stored.
    """
    row = session.execute(_studies().where(StudyRow.study_uid == study_uid)).one_or_none()
    if row is None:
        raise UnknownStudyError(study_uid)
    return _study_record(row[0], row[1])


def list_studies(
    session: Session, *, site: str | None = None, limit: int | None = None, offset: int = 0
) -> list[StudyRecord]:
    """Studies in the order they were stored, optionally of one site, one page at a time.

    Raises
    ------
    UnknownSiteError
        If ``site`` is given but not registered (an empty list would hide a typo).
    """
    query = _studies().order_by(StudyRow.id).limit(limit).offset(offset)
    if site is not None:
        query = query.where(StudyRow.site_id == get_site(session, site).id)
    return [_study_record(study, name) for study, name in session.execute(query)]


def count_studies(session: Session, *, site: str | None = None) -> int:
    """Count stored studies, optionally of one site (raises ``UnknownSiteError`` like :func:`list_studies`)."""
    query = select(func.count()).select_from(StudyRow)
    if site is not None:
        query = query.where(StudyRow.site_id == get_site(session, site).id)
    return session.scalars(query).one()


def list_instances(session: Session, study_uid: str) -> list[InstanceRecord]:
    """Every instance of a study, in the order stored.

    Raises
    ------
    UnknownStudyError
        If the study is not stored.
    """
    study = get_study(session, study_uid)
    query = _instances().where(InstanceRow.study_id == study.id).order_by(InstanceRow.id)
    return [_instance_record(row, uid) for row, uid in session.execute(query)]


def patient_studies(session: Session, *, site_id: int, patient_id: str) -> list[StudyRecord]:
    """Every study of ``patient_id`` at site ``site_id``, in the order stored (a case's prior candidates)."""
    query = _studies().where(StudyRow.site_id == site_id, StudyRow.patient_id == patient_id).order_by(StudyRow.id)
    return [_study_record(study, name) for study, name in session.execute(query)]


def first_instances(session: Session, study_ids: Iterable[int]) -> dict[int, InstanceRecord]:
    """Each study's first stored instance (lowest id), for the studies in ``study_ids``."""
    wanted = set(study_ids)
    found: dict[int, InstanceRecord] = {}
    query = _instances().order_by(InstanceRow.id)
    for row, uid in session.execute(query):
        if row.study_id in wanted and row.study_id not in found:
            found[row.study_id] = _instance_record(row, uid)
    return found


def instances_without_prediction(
    session: Session, model_version_id: int, *, site_id: int | None = None, limit: int | None = None
) -> list[InstanceRecord]:
    """Instances that ``model_version_id`` has no prediction row for (the ``vigil predict`` queue).

    Instances skipped as outside intended use have a prediction row (with ``fallback``), so
    they are not queued again.
    """
    has_prediction = exists().where(
        PredictionRow.instance_id == InstanceRow.id, PredictionRow.model_version_id == model_version_id
    )
    query = _instances().where(~has_prediction).order_by(InstanceRow.id).limit(limit)
    if site_id is not None:
        query = query.where(StudyRow.site_id == site_id)
    return [_instance_record(row, uid) for row, uid in session.execute(query)]


def sites_of(session: Session, study_ids: Iterable[int]) -> set[int]:
    """The site ids of the studies ``study_ids`` (an unknown id adds nothing)."""
    ids = sorted(set(study_ids))
    if not ids:
        return set()
    return set(session.scalars(select(StudyRow.site_id).where(StudyRow.id.in_(ids)).distinct()))


def _studies() -> Select[StudyRow, str]:
    return select(StudyRow, SiteRow.name).join(SiteRow, StudyRow.site_id == SiteRow.id)


def _instances() -> Select[InstanceRow, str]:
    return select(InstanceRow, StudyRow.study_uid).join(StudyRow, InstanceRow.study_id == StudyRow.id)


def _values(header: StudyIn | InstanceIn) -> dict[str, Any]:
    return {f.name: getattr(header, f.name) for f in fields(header)}


def _study_record(row: StudyRow, site_name: str) -> StudyRecord:
    values = {f.name: getattr(row, f.name) for f in fields(StudyRecord) if f.name != "site_name"}
    return StudyRecord(site_name=site_name, **values)


def _instance_record(row: InstanceRow, study_uid: str) -> InstanceRecord:
    values = {f.name: getattr(row, f.name) for f in fields(InstanceRecord) if f.name != "study_uid"}
    source = values.pop("spacing_source")
    return InstanceRecord(
        study_uid=study_uid, spacing_source=None if source is None else SpacingSource(source), **values
    )


def _site_conflict(session: Session, study_uid: str, stored_site_id: int, new_site_id: int) -> str:
    query = select(SiteRow.id, SiteRow.name).where(SiteRow.id.in_([stored_site_id, new_site_id]))
    names: dict[int, str] = dict(session.execute(query).all())
    return site_conflict(study_uid, names.get(stored_site_id), names.get(new_site_id, new_site_id))
