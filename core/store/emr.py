"""EMR outcomes: ingest runs, evidence and its links to studies, patients, unmapped codes, pull marks.

Every function takes the caller's session and never commits; ``core.services.fhir_ingest``
opens one transaction per ingest and writes its audit entry in it. Nothing stored here is a
direct identifier: patients and accession numbers arrive as keyed pseudonyms, resource ids as
keyed hashes, text already de-identified (``core.fhir``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core.store.batching import chunks
from core.store.tables import (
    EmrEvidenceRow,
    EmrIngestRunRow,
    EmrPatientRow,
    EmrPullMarkRow,
    EmrUnmappedCodeRow,
    SiteRow,
    StudyRow,
)

__all__ = [
    "EvidenceIn",
    "EvidenceRecord",
    "LinkCandidate",
    "PatientIn",
    "RunIn",
    "RunRecord",
    "UnmappedIn",
    "UnmappedRecord",
    "add_evidence",
    "add_patients",
    "add_run",
    "add_unmapped",
    "count_patients",
    "get_pull_mark",
    "link_candidates",
    "list_evidence",
    "list_runs",
    "list_unmapped",
    "payload_seen",
    "set_links",
    "set_pull_mark",
    "stored_evidence_keys",
    "stored_patients",
]


@dataclass(frozen=True, slots=True)
class RunIn:
    """One ingest run's counts (see ``EmrIngestRunRow``)."""

    source_name: str
    payload_sha256: str
    kind: str
    mapping_version: str
    n_entries: int
    n_accepted: int
    n_rejected: int
    n_unmapped: int
    n_evidence: int
    n_linked: int
    n_outcomes: int
    actor: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A stored ingest run."""

    id: int
    run: RunIn
    started_at: datetime


@dataclass(frozen=True, slots=True)
class EvidenceIn:
    """One resource version's evidence, already pseudonymized and de-identified.

    Attributes
    ----------
    ref : str
        ``"<resourceType>/<keyed hash of the id>"``.
    version : str
        ``meta.versionId`` or ``""``.
    patient, accession : str or None
        Keyed pseudonyms.
    study_uid : str or None
        The StudyInstanceUID the resource references, when it does.
    outcome, evidence_type : str
        Values of ``core.fhir.Outcome`` and ``core.fhir.EvidenceType``.
    strength : int
        The evidence type's strength (4 histopathology .. 1 note mention).
    """

    ref: str
    version: str
    patient: str | None
    study_uid: str | None
    accession: str | None
    effective: date | None
    outcome: str
    evidence_type: str
    strength: int
    code: str
    display: str
    text: str


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """Stored evidence with its ingest run, its study (None while unlinked) and how it was linked."""

    id: int
    evidence: EvidenceIn
    ingest_run_id: int
    study_id: int | None
    study_uid_linked: str | None
    site: str | None
    link_method: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PatientIn:
    """A patient by pseudonym: sex and age band only."""

    pseudonym: str
    gender: str
    age_band: str


@dataclass(frozen=True, slots=True)
class UnmappedIn:
    """A code the mapping does not know and how often a payload carried it."""

    system: str
    code: str
    resource_type: str
    count: int


@dataclass(frozen=True, slots=True)
class UnmappedRecord:
    """A stored unmapped code with its running count."""

    system: str
    code: str
    resource_type: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class LinkCandidate:
    """A stored study as linkage sees it: raw patient id and accession (hashed by the caller, never stored)."""

    study_id: int
    study_uid: str
    site: str
    patient_id: str
    accession_number: str
    study_date: date | None


def add_run(session: Session, run: RunIn, *, now: datetime) -> int:
    """Stage one ingest run; return its id."""
    row = EmrIngestRunRow(
        source_name=run.source_name,
        payload_sha256=run.payload_sha256,
        kind=run.kind,
        mapping_version=run.mapping_version,
        n_entries=run.n_entries,
        n_accepted=run.n_accepted,
        n_rejected=run.n_rejected,
        n_unmapped=run.n_unmapped,
        n_evidence=run.n_evidence,
        n_linked=run.n_linked,
        n_outcomes=run.n_outcomes,
        actor=run.actor,
        started_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def list_runs(session: Session, *, limit: int | None = None) -> list[RunRecord]:
    """Ingest runs, newest first."""
    query = select(EmrIngestRunRow).order_by(EmrIngestRunRow.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [_run(row) for row in session.scalars(query)]


def payload_seen(session: Session, payload_sha256: str) -> bool:
    """Whether an ingest run of a payload with this SHA-256 is stored."""
    query = select(EmrIngestRunRow.id).where(EmrIngestRunRow.payload_sha256 == payload_sha256).limit(1)
    return session.scalars(query).first() is not None


def stored_evidence_keys(session: Session, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The ``(ref, version)`` pairs among ``keys`` that are already stored."""
    wanted = set(keys)
    refs = {ref for ref, _ in wanted}
    if not refs:
        return set()
    found: set[tuple[str, str]] = set()
    for chunk in chunks(sorted(refs)):
        query = select(EmrEvidenceRow.ref, EmrEvidenceRow.version).where(EmrEvidenceRow.ref.in_(chunk))
        found.update((r, v) for r, v in session.execute(query).all())
    return found & wanted


def add_evidence(
    session: Session, evidence: Sequence[tuple[EvidenceIn, int | None, str]], *, ingest_run_id: int, now: datetime
) -> int:
    """Stage new evidence with one Core ``INSERT``; return how many rows.

    Each item is ``(evidence, study_id, link_method)``: ``(e, None, "")`` while it does not link.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        A ``(ref, version)`` is stored already; check :func:`stored_evidence_keys` first.
    """
    if not evidence:
        return 0
    values = [
        {
            "ref": e.ref,
            "version": e.version,
            "patient": e.patient,
            "study_uid": e.study_uid,
            "accession": e.accession,
            "effective": e.effective,
            "outcome": e.outcome,
            "evidence_type": e.evidence_type,
            "strength": e.strength,
            "code": e.code,
            "display": e.display,
            "text": e.text,
            "ingest_run_id": ingest_run_id,
            "study_id": study_id,
            "link_method": method,
            "created_at": now,
        }
        for e, study_id, method in evidence
    ]
    session.execute(insert(EmrEvidenceRow), values)
    return len(values)


def list_evidence(
    session: Session, *, unlinked_only: bool = False, study_id: int | None = None
) -> list[EvidenceRecord]:
    """Stored evidence in the order stored; only the unlinked, or only one study's, on request."""
    query = (
        select(EmrEvidenceRow, StudyRow.study_uid, SiteRow.name)
        .outerjoin(StudyRow, EmrEvidenceRow.study_id == StudyRow.id)
        .outerjoin(SiteRow, StudyRow.site_id == SiteRow.id)
        .order_by(EmrEvidenceRow.id)
    )
    if unlinked_only:
        query = query.where(EmrEvidenceRow.study_id.is_(None))
    if study_id is not None:
        query = query.where(EmrEvidenceRow.study_id == study_id)
    return [_evidence(row, uid, site) for row, uid, site in session.execute(query).all()]


def set_links(session: Session, links: Iterable[tuple[int, int, str]]) -> int:
    """Link still-unlinked evidence: ``(evidence_id, study_id, method)`` each; return how many changed.

    Evidence already linked is left as it is (a link is made once and never moved).
    """
    n = 0
    for evidence_id, study_id, method in links:
        result = session.execute(
            update(EmrEvidenceRow)
            .where(EmrEvidenceRow.id == evidence_id, EmrEvidenceRow.study_id.is_(None))
            .values(study_id=study_id, link_method=method)
        )
        n += result.rowcount  # type: ignore[attr-defined]
    return n


def stored_patients(session: Session, pseudonyms: Iterable[str]) -> set[str]:
    """The pseudonyms among ``pseudonyms`` that are already stored."""
    wanted = sorted(set(pseudonyms))
    found: set[str] = set()
    for chunk in chunks(wanted):
        found.update(session.scalars(select(EmrPatientRow.pseudonym).where(EmrPatientRow.pseudonym.in_(chunk))))
    return found


def add_patients(session: Session, patients: Sequence[PatientIn], *, now: datetime) -> int:
    """Stage patients not stored yet (check :func:`stored_patients` first); return how many."""
    if not patients:
        return 0
    values = [
        {"pseudonym": p.pseudonym, "gender": p.gender, "age_band": p.age_band, "created_at": now} for p in patients
    ]
    session.execute(insert(EmrPatientRow), values)
    return len(values)


def count_patients(session: Session) -> int:
    """How many patients the EMR has told Vigil about."""
    return session.scalars(select(func.count()).select_from(EmrPatientRow)).one()


def add_unmapped(session: Session, codes: Iterable[UnmappedIn], *, now: datetime) -> None:
    """Add each code's count to its running total (a new row on first sight)."""
    for c in codes:
        row = session.scalars(
            select(EmrUnmappedCodeRow).where(
                EmrUnmappedCodeRow.system == c.system,
                EmrUnmappedCodeRow.code == c.code,
                EmrUnmappedCodeRow.resource_type == c.resource_type,
            )
        ).one_or_none()
        if row is None:
            session.add(
                EmrUnmappedCodeRow(
                    system=c.system,
                    code=c.code,
                    resource_type=c.resource_type,
                    count=c.count,
                    first_seen=now,
                    last_seen=now,
                )
            )
        else:
            row.count += c.count
            row.last_seen = now
    session.flush()


def list_unmapped(session: Session) -> list[UnmappedRecord]:
    """Unmapped codes, most frequent first."""
    query = select(EmrUnmappedCodeRow).order_by(
        EmrUnmappedCodeRow.count.desc(), EmrUnmappedCodeRow.system, EmrUnmappedCodeRow.code
    )
    return [
        UnmappedRecord(r.system, r.code, r.resource_type, r.count, r.first_seen, r.last_seen)
        for r in session.scalars(query)
    ]


def link_candidates(session: Session) -> list[LinkCandidate]:
    """Every stored study with what linkage compares (the caller hashes patient id and accession)."""
    query = (
        select(
            StudyRow.id,
            StudyRow.study_uid,
            SiteRow.name,
            StudyRow.patient_id,
            StudyRow.accession_number,
            StudyRow.study_date,
        )
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
        .order_by(StudyRow.id)
    )
    return [LinkCandidate(*row) for row in session.execute(query).all()]


def get_pull_mark(session: Session, server: str, resource_type: str) -> str | None:
    """The ``meta.lastUpdated`` high-water mark of the last pull of ``resource_type`` from ``server``."""
    query = select(EmrPullMarkRow.mark).where(
        EmrPullMarkRow.server == server, EmrPullMarkRow.resource_type == resource_type
    )
    return session.scalars(query).one_or_none()


def set_pull_mark(session: Session, server: str, resource_type: str, mark: str, *, now: datetime) -> None:
    """Stage the new high-water mark (insert or replace)."""
    row = session.scalars(
        select(EmrPullMarkRow).where(EmrPullMarkRow.server == server, EmrPullMarkRow.resource_type == resource_type)
    ).one_or_none()
    if row is None:
        session.add(EmrPullMarkRow(server=server, resource_type=resource_type, mark=mark, updated_at=now))
    else:
        row.mark = mark
        row.updated_at = now
    session.flush()


def _run(row: EmrIngestRunRow) -> RunRecord:
    run = RunIn(
        source_name=row.source_name,
        payload_sha256=row.payload_sha256,
        kind=row.kind,
        mapping_version=row.mapping_version,
        n_entries=row.n_entries,
        n_accepted=row.n_accepted,
        n_rejected=row.n_rejected,
        n_unmapped=row.n_unmapped,
        n_evidence=row.n_evidence,
        n_linked=row.n_linked,
        n_outcomes=row.n_outcomes,
        actor=row.actor,
    )
    return RunRecord(row.id, run, row.started_at)


def _evidence(row: EmrEvidenceRow, study_uid: str | None, site: str | None) -> EvidenceRecord:
    evidence = EvidenceIn(
        ref=row.ref,
        version=row.version,
        patient=row.patient,
        study_uid=row.study_uid,
        accession=row.accession,
        effective=row.effective,
        outcome=row.outcome,
        evidence_type=row.evidence_type,
        strength=row.strength,
        code=row.code,
        display=row.display,
        text=row.text,
    )
    return EvidenceRecord(
        id=row.id,
        evidence=evidence,
        ingest_run_id=row.ingest_run_id,
        study_id=row.study_id,
        study_uid_linked=study_uid,
        site=site,
        link_method=row.link_method,
        created_at=row.created_at,
    )
