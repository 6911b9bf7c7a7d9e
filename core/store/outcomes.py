"""The outcome store: labels by source (adjudicated, EMR, ground truth), and the evaluation view.

Outcome rows are never updated: a new adjudication or EMR outcome is a new row, and which label
a study ends up with is decided by ``core.services.outcomes`` (adjudicated first). Reader
feedback stays in ``clinician_feedback`` (``core.store.feedback``). ``scored_studies`` is the read
model metrics need: one row per study with its harmonizable header and one model version's score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from core.store.sites import get_site
from core.store.tables import InstanceRow, OutcomeRow, PredictionRow, SiteCalibratorRow, SiteRow, StudyRow

__all__ = [
    "OutcomeIn",
    "OutcomeRecord",
    "OutcomeSource",
    "ScoredStudy",
    "add_outcome",
    "add_outcomes",
    "count_outcomes",
    "find_outcome",
    "list_outcomes",
    "outcome_keys",
    "scored_studies",
    "stored_images",
    "study_ids_by_uid",
    "studies_with_outcome",
    "study_sites",
    "version_token",
]


class OutcomeSource(StrEnum):
    """Where a stored label came from; the values are stored (add members, never rename)."""

    ADJUDICATED = "adjudicated"  # a clinical champion's adjudication: the outcome of record
    EMR = "emr"  # an outcome mapped from the EMR (FHIR)
    GROUND_TRUTH = "ground_truth"  # a reference manifest (the synthetic cohort's truth), marked as such


@dataclass(frozen=True, slots=True)
class OutcomeIn:
    """One label to store.

    Attributes
    ----------
    study_id : int
    source : OutcomeSource
    label : bool
        True when the finding is present.
    source_ref : str
        What it came from, at most 255 characters: ``"manifest:<sha256>"``, a FHIR resource id, ...
    detail : str
        Free text kept with the label (e.g. the manifest's split), ``""`` when none.
    recorded_by : str
        The actor who stored it.
    effective_at : datetime or None
        When the outcome was established clinically, if known (aware).
    """

    study_id: int
    source: OutcomeSource
    label: bool
    source_ref: str
    recorded_by: str
    detail: str = ""
    effective_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """A stored label with the study and site it belongs to."""

    id: int
    study_id: int
    study_uid: str
    site: str
    source: OutcomeSource
    label: bool
    source_ref: str
    detail: str
    recorded_by: str
    effective_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ScoredStudy:
    """One study, its header fields that strata are built from, and one model version's score.

    ``score`` and ``threshold`` are None when the model version has not scored the study (or
    skipped it as outside its intended use). With several instances, the first scored one counts.
    """

    study_id: int
    study_uid: str
    site: str
    patient_id: str
    study_date: date | None
    vendor: str
    manufacturer_raw: str
    manufacturer_model_name: str
    protocol_name: str
    software_versions: str
    patient_age: str
    patient_sex: str
    score: float | None
    threshold: float | None


def add_outcome(session: Session, outcome: OutcomeIn, *, now: datetime) -> OutcomeRecord:
    """Stage one label. The caller owns the transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        The study already has a label from this source and reference, or the study does not exist.
    """
    row = OutcomeRow(
        study_id=outcome.study_id,
        source=str(outcome.source),
        label=outcome.label,
        source_ref=outcome.source_ref,
        detail=outcome.detail,
        recorded_by=outcome.recorded_by,
        effective_at=outcome.effective_at,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return list_outcomes(session, outcome_ids=[row.id])[0]


def add_outcomes(session: Session, outcomes: Sequence[OutcomeIn], *, now: datetime) -> list[int]:
    """Stage many labels with one Core ``INSERT`` (bulk loads); returns the ids of the rows staged.

    The ids let the caller put each row's hash in the audit entry of the same transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        As :func:`add_outcome`; check :func:`studies_with_outcome` first.
    """
    if not outcomes:
        return []
    values = [
        {
            "study_id": o.study_id,
            "source": str(o.source),
            "label": o.label,
            "source_ref": o.source_ref,
            "detail": o.detail,
            "recorded_by": o.recorded_by,
            "effective_at": o.effective_at,
            "created_at": now,
        }
        for o in outcomes
    ]
    return list(session.scalars(insert(OutcomeRow).returning(OutcomeRow.id), values))


def studies_with_outcome(session: Session, *, source: OutcomeSource, source_ref: str) -> set[int]:
    """Ids of the studies that already hold a label from ``source`` with ``source_ref``."""
    query = select(OutcomeRow.study_id).where(OutcomeRow.source == str(source), OutcomeRow.source_ref == source_ref)
    return set(session.scalars(query))


def find_outcome(session: Session, *, study_id: int, source: OutcomeSource, source_ref: str) -> OutcomeRecord | None:
    """The label of ``study_id`` stored from ``source`` under ``source_ref``, if any (the row's unique key)."""
    query = _records().where(
        OutcomeRow.study_id == study_id, OutcomeRow.source == str(source), OutcomeRow.source_ref == source_ref
    )
    row = session.execute(query).one_or_none()
    return None if row is None else _record(*row)


def outcome_keys(session: Session, *, source: OutcomeSource, source_refs: Iterable[str]) -> set[tuple[int, str]]:
    """``(study_id, source_ref)`` of the stored labels from ``source`` whose reference is in ``source_refs``."""
    refs = sorted(set(source_refs))
    found: set[tuple[int, str]] = set()
    for start in range(0, len(refs), 500):  # SQLite caps bound parameters per statement
        query = select(OutcomeRow.study_id, OutcomeRow.source_ref).where(
            OutcomeRow.source == str(source), OutcomeRow.source_ref.in_(refs[start : start + 500])
        )
        found.update((sid, ref) for sid, ref in session.execute(query).all())
    return found


def list_outcomes(
    session: Session,
    *,
    site: str | None = None,
    source: OutcomeSource | None = None,
    outcome_ids: Iterable[int] | None = None,
) -> list[OutcomeRecord]:
    """Stored labels in the order stored, optionally of one site, one source or given ids.

    Raises
    ------
    UnknownSiteError
        ``site`` is given but not registered.
    """
    query = _records().order_by(OutcomeRow.id)
    if site is not None:
        query = query.where(StudyRow.site_id == get_site(session, site).id)
    if source is not None:
        query = query.where(OutcomeRow.source == str(source))
    if outcome_ids is not None:
        query = query.where(OutcomeRow.id.in_(list(outcome_ids)))
    return [_record(*row) for row in session.execute(query)]


def count_outcomes(session: Session, *, source: OutcomeSource | None = None) -> int:
    """Count stored labels, optionally of one source."""
    query = select(func.count()).select_from(OutcomeRow)
    if source is not None:
        query = query.where(OutcomeRow.source == str(source))
    return session.scalars(query).one()


def study_ids_by_uid(session: Session, study_uids: Iterable[str] | None = None) -> dict[str, int]:
    """Map StudyInstanceUIDs to study ids (every stored study when ``study_uids`` is None)."""
    query = select(StudyRow.study_uid, StudyRow.id)
    if study_uids is not None:
        query = query.where(StudyRow.study_uid.in_(list(study_uids)))
    return dict(session.execute(query).all())


def stored_images(session: Session, sop_uids: Iterable[str]) -> set[tuple[str, str]]:
    """``(SOPInstanceUID, SHA-256)`` of every stored instance whose UID is in ``sop_uids``.

    The same UID with other bytes is another instance, so a UID may appear with several hashes.
    """
    query = select(InstanceRow.sop_instance_uid, InstanceRow.sha256).where(
        InstanceRow.sop_instance_uid.in_(list(sop_uids))
    )
    return {(uid, sha) for uid, sha in session.execute(query).all()}


def version_token(session: Session) -> str:
    """A token that changes whenever a pilot-drift report could: new labels, sites, calibrators or approvals.

    Index look-ups only; UI caches key on it (with the worklist's data version) instead of hashing frames.
    """
    stmt = select(
        select(func.max(OutcomeRow.id)).scalar_subquery(),
        select(func.max(SiteRow.id)).scalar_subquery(),
        select(func.max(SiteCalibratorRow.id)).scalar_subquery(),
        select(func.max(SiteCalibratorRow.approved_at)).scalar_subquery(),
    )
    o, s, c, a = session.execute(stmt).one()
    return f"o{o or 0}.s{s or 0}.c{c or 0}.a{a or ''}"


def study_sites(session: Session) -> dict[int, str]:
    """Map every stored study's id to its site's name."""
    query = select(StudyRow.id, SiteRow.name).join(SiteRow, StudyRow.site_id == SiteRow.id)
    return dict(session.execute(query).all())


def scored_studies(session: Session, model_version_id: int, *, site: str | None = None) -> list[ScoredStudy]:
    """Every study (of one site, or all), with ``model_version_id``'s score where it has one.

    Raises
    ------
    UnknownSiteError
        ``site`` is given but not registered.
    """
    scored = (
        select(InstanceRow.study_id, PredictionRow.score, PredictionRow.threshold, InstanceRow.id.label("iid"))
        .join(PredictionRow, PredictionRow.instance_id == InstanceRow.id)
        .where(PredictionRow.model_version_id == model_version_id, PredictionRow.score.is_not(None))
        .subquery()
    )
    first = select(scored.c.study_id, func.min(scored.c.iid).label("iid")).group_by(scored.c.study_id).subquery()
    chosen = select(scored).join(first, scored.c.iid == first.c.iid).subquery()
    columns = {
        "study_id": StudyRow.id,
        "study_uid": StudyRow.study_uid,
        "site": SiteRow.name,
        "patient_id": StudyRow.patient_id,
        "study_date": StudyRow.study_date,
        "vendor": StudyRow.vendor,
        "manufacturer_raw": StudyRow.manufacturer_raw,
        "manufacturer_model_name": StudyRow.manufacturer_model_name,
        "protocol_name": StudyRow.protocol_name,
        "software_versions": StudyRow.software_versions,
        "patient_age": StudyRow.patient_age,
        "patient_sex": StudyRow.patient_sex,
        "score": chosen.c.score,
        "threshold": chosen.c.threshold,
    }
    # Plain columns in ScoredStudy's field order, run on the connection: one tuple per study rather
    # than an ORM row object (a full scan's cost at a million studies was mostly the ORM's).
    in_field_order: list[Any] = [columns[f.name].label(f.name) for f in fields(ScoredStudy)]
    query = (
        select(*in_field_order)
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
        .outerjoin(chosen, chosen.c.study_id == StudyRow.id)
        .order_by(StudyRow.id)
    )
    if site is not None:
        query = query.where(StudyRow.site_id == get_site(session, site).id)
    return [ScoredStudy(*row) for row in session.connection().execute(query)]


def _records() -> Select[OutcomeRow, str, str]:
    return (
        select(OutcomeRow, StudyRow.study_uid, SiteRow.name)
        .join(StudyRow, OutcomeRow.study_id == StudyRow.id)
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
    )


def _record(row: OutcomeRow, study_uid: str, site: str) -> OutcomeRecord:
    return OutcomeRecord(
        id=row.id,
        study_id=row.study_id,
        study_uid=study_uid,
        site=site,
        source=OutcomeSource(row.source),
        label=row.label,
        source_ref=row.source_ref,
        detail=row.detail,
        recorded_by=row.recorded_by,
        effective_at=row.effective_at,
        created_at=row.created_at,
    )
