"""EMR outcomes into the store: parse and de-identify a FHIR payload, link its evidence to studies, store it.

One payload is one transaction with its audit entry (``outcomes_ingested``): the ingest run,
the new evidence (linked or not), new patients (by pseudonym), unmapped-code counts and an
``emr`` outcome row for every piece of evidence that links and decides something. Nothing is
written for a payload ``core.fhir.parse_payload`` rejects (a bad transaction bundle, malformed
JSON), and nothing new for a resource version stored before, so ingesting a payload twice
writes nothing the second time.

Evidence that links to no study yet is stored unlinked and linked later, when its study has
arrived: at every ingest, and on :func:`relink` (``vigil fhir relink``). The link rules are in
``core.services.linkage``; which label a study ends up with is ``core.services.outcomes``'.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.audit.records import BULK_HASH_KEY, RecordKind
from core.config import Settings
from core.errors import FhirPayloadError, PseudonymKeyError
from core.fhir import (
    Evidence,
    EvidenceType,
    Extraction,
    Outcome,
    OutcomeMapping,
    ResourceError,
    extract,
    load_mapping,
    parse_payload,
    pseudonym,
)
from core.imaging.deid import pseudonymous_uid
from core.services.keyfile import install_key_file, read_key_file
from core.services.linkage import Link, LinkTarget, StudyIndex, StudyKeys, link
from core.store import audit_log, emr, outcomes, record_hashes
from core.store.emr import EvidenceIn, EvidenceRecord, PatientIn, RunIn, UnmappedIn, UnmappedRecord
from core.store.engine import SessionFactory
from core.store.outcomes import OutcomeIn, OutcomeSource
from core.types import JSONObject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "KEY_BYTES",
    "IngestReport",
    "PreparedPayload",
    "RelinkReport",
    "ingest_payload",
    "ingest_prepared",
    "install_site_secret",
    "prepare_payload",
    "read_site_secret",
    "relink",
    "site_secret",
    "unmapped_codes",
]

#: Length of the site's pseudonym key (HMAC-SHA256 key, 256 bits).
KEY_BYTES: Final = 32
_SOURCE_REF_MAX: Final = 255
# A StudyInstanceUID as DICOM defines it (PS3.5 9.1): digits and dots, at most 64 characters. Anything
# else in that identifier is not a UID, links nothing, and is not stored (it could be any text).
_DICOM_UID: Final = re.compile(r"(?=.{1,64}\Z)(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


@dataclass(frozen=True, slots=True)
class PreparedPayload:
    """A payload parsed, validated and de-identified, ready to store (nothing written yet)."""

    name: str
    sha256: str
    kind: str
    n_entries: int
    n_accepted: int
    extraction: Extraction
    errors: tuple[ResourceError, ...]
    mapping_version: str


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one payload's ingest found and wrote.

    Attributes
    ----------
    rejected : tuple of ResourceError
        Each bad resource of a collection, batch, searchset or NDJSON payload (path and message);
        shown to the caller, never stored (a message may quote the bad value).
    evidence : int
        New evidence rows (resource versions not stored before).
    already_stored : int
        Evidence in the payload that was stored before (same resource and version).
    linked : dict
        Links made in this ingest by method, including older evidence whose study has arrived since.
    unlinked : int
        Of this payload's new evidence, how many link to no study yet (kept, linked later).
    ambiguous : int
        Evidence left unlinked because a rule matched several studies equally well.
    outcomes : int
        ``emr`` outcome rows written (linked evidence that is not indeterminate).
    run_id : int or None
        The ingest run, None when nothing was new (then nothing was written).
    """

    name: str
    sha256: str
    kind: str
    n_entries: int
    accepted: int
    rejected: tuple[ResourceError, ...]
    unmapped: int
    evidence: int
    already_stored: int
    patients: int
    linked: dict[str, int]
    unlinked: int
    ambiguous: int
    outcomes: int
    run_id: int | None

    def to_dict(self) -> JSONObject:
        """JSON-ready (the CLI's per-file object)."""
        return {
            "file": self.name,
            "sha256": self.sha256,
            "kind": self.kind,
            "entries": self.n_entries,
            "accepted": self.accepted,
            "rejected": [{"path": e.path, "message": e.message} for e in self.rejected],
            "unmapped": self.unmapped,
            "evidence": self.evidence,
            "already_stored": self.already_stored,
            "patients": self.patients,
            "linked": dict(self.linked),
            "unlinked": self.unlinked,
            "ambiguous": self.ambiguous,
            "outcomes": self.outcomes,
            "run_id": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class RelinkReport:
    """What :func:`relink` linked."""

    examined: int
    linked: dict[str, int]
    ambiguous: int
    outcomes: int

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "examined": self.examined,
            "linked": dict(self.linked),
            "ambiguous": self.ambiguous,
            "outcomes": self.outcomes,
        }


def site_secret(settings: Settings) -> bytes:
    """The site's pseudonym key, ``VIGIL_HOME/secrets/pseudonym.key``, created (0600) on first use.

    The key never leaves this machine: the same MRN gets the same pseudonym here, and a
    different one at a site with another key. Losing the key breaks linkage of new evidence
    with stored evidence, so it is created once and never rewritten.

    Raises
    ------
    PseudonymKeyError
        The key file exists but is not a regular file of :data:`KEY_BYTES` bytes.
    """
    return read_site_secret(settings) or install_site_secret(settings, secrets.token_bytes(KEY_BYTES))


def read_site_secret(settings: Settings) -> bytes | None:
    """The site's pseudonym key if it exists (None if not); writes nothing.

    Raises
    ------
    PseudonymKeyError
        As :func:`site_secret`.
    """
    return read_key_file(_key_path(settings), KEY_BYTES)


def install_site_secret(settings: Settings, key: bytes) -> bytes:
    """Store ``key`` as the site's pseudonym key unless one exists; return the key now on disk.

    Atomic (:func:`core.services.keyfile.install_key_file`): if another process got there first,
    that process's key is the site's, and is returned.
    A caller that pseudonymized with ``key`` before installing it must redo that work when the
    returned key differs.
    """
    if len(key) != KEY_BYTES:
        raise PseudonymKeyError("(new key)", f"holds {len(key)} bytes, expected {KEY_BYTES}")
    return install_key_file(_key_path(settings), key)


def _key_path(settings: Settings) -> Path:
    return settings.home / "secrets" / "pseudonym.key"


def prepare_payload(data: bytes, *, name: str, secret: bytes, mapping: OutcomeMapping) -> PreparedPayload:
    """Parse, validate and de-identify one payload without writing anything (pure).

    Raises
    ------
    FhirPayloadError
        Malformed bytes or JSON, a resource type or Bundle.type Vigil does not read, or any bad
        entry of a transaction bundle (the message names the entry's path).
    """
    parsed = parse_payload(data, name=name)
    extraction = extract(parsed, secret=secret, mapping=mapping)
    if parsed.kind == "transaction" and extraction.errors:
        # A transaction is all or nothing, also for faults only extraction sees (e.g. a dangling reference).
        first = extraction.errors[0]
        raise FhirPayloadError(name, first.path, first.message)
    # extract() reports the payload's own errors first, then the resources it could not use.
    errors = extraction.errors
    return PreparedPayload(
        name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        kind=parsed.kind,
        n_entries=parsed.n_entries,
        n_accepted=len(parsed.resources) - (len(errors) - len(parsed.errors)),
        extraction=extraction,
        errors=errors,
        mapping_version=mapping.version,
    )


def ingest_payload(
    sf: SessionFactory,
    data: bytes,
    *,
    name: str,
    secret: bytes,
    actor: str,
    now: Callable[[], datetime],
    mapping: OutcomeMapping | None = None,
) -> IngestReport:
    """Ingest one FHIR payload (a Bundle or bulk-export NDJSON) in one transaction with its audit entry.

    Parameters
    ----------
    data : bytes
        The payload as received.
    name : str
        What to call it in reports and errors (a file name).
    secret : bytes
        The site's pseudonym key (:func:`site_secret`).
    mapping : OutcomeMapping, optional
        The code mapping; the bundled ``core/fhir/outcome_codes.json`` when None.

    Raises
    ------
    FhirPayloadError
        As :func:`prepare_payload`; nothing is written.
    """
    prepared = prepare_payload(data, name=name, secret=secret, mapping=mapping or load_mapping())
    return ingest_prepared(sf, prepared, secret=secret, actor=actor, now=now)


def ingest_prepared(
    sf: SessionFactory, prepared: PreparedPayload, *, secret: bytes, actor: str, now: Callable[[], datetime]
) -> IngestReport:
    """Store a :func:`prepare_payload` result (one transaction; see :func:`ingest_payload`)."""
    with sf.begin() as session:
        plan = _plan(session, prepared, secret)
        if plan.nothing_new:
            return _report(prepared, plan, run_id=None, written=0)
        stamp = now()
        rows = [_outcome_row(e, lk, actor) for e, lk in plan.new] + [
            _outcome_row(r.evidence, lk, actor) for r, lk in plan.relinked
        ]
        added = _add_outcomes(session, [o for o in rows if o is not None], now=stamp)
        written = len(added)
        run_id = emr.add_run(session, _run_in(prepared, plan, written, actor), now=stamp)
        emr.add_evidence(
            session, [(e, lk.study_id, str(lk.method or "")) for e, lk in plan.new], ingest_run_id=run_id, now=stamp
        )
        emr.set_links(session, [(r.id, lk.study_id, str(lk.method)) for r, lk in plan.relinked if lk.study_id])
        emr.add_patients(session, plan.patients, now=stamp)
        if not plan.seen_before:
            # Counts are per distinct payload, so ingesting the same file twice does not double them.
            emr.add_unmapped(
                session,
                [UnmappedIn(u.system, u.code, u.resource_type, u.count) for u in prepared.extraction.unmapped],
                now=stamp,
            )
        report = _report(prepared, plan, run_id=run_id, written=written)
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.OUTCOMES_INGESTED,
            subject=f"emr_ingest_run:{run_id}",
            payload={
                **_audit_payload(report),
                BULK_HASH_KEY: record_hashes.hash_map(session, RecordKind.OUTCOME, added),
            },
            recorded_at=stamp.isoformat(),
        )
    return report


def unmapped_codes(sf: SessionFactory) -> list[UnmappedRecord]:
    """Codes the mapping does not know, most frequent first, for an admin to map (``vigil fhir unmapped``)."""
    with sf() as session:
        return emr.list_unmapped(session)


def relink(sf: SessionFactory, *, secret: bytes, actor: str, now: Callable[[], datetime]) -> RelinkReport:
    """Link stored evidence whose study has arrived since, and write its outcome rows (one transaction).

    The audit entry (``emr_relinked``) is written only when something linked.
    """
    with sf.begin() as session:
        waiting = emr.list_evidence(session, unlinked_only=True)
        index = _study_index(session, secret)
        links = [link(_target(r.evidence), index) for r in waiting]
        made = [(r, lk) for r, lk in zip(waiting, links, strict=True) if lk.study_id is not None]
        ambiguous = sum(lk.ambiguous for lk in links)
        if not made:
            return RelinkReport(len(waiting), {}, ambiguous, 0)
        stamp = now()
        emr.set_links(session, [(r.id, lk.study_id, str(lk.method)) for r, lk in made if lk.study_id])
        rows = [_outcome_row(r.evidence, lk, actor) for r, lk in made]
        added = _add_outcomes(session, [o for o in rows if o is not None], now=stamp)
        report = RelinkReport(len(waiting), dict(Counter(str(lk.method) for _, lk in made)), ambiguous, len(added))
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.EMR_RELINKED,
            subject="emr_evidence",
            payload={**report.to_dict(), BULK_HASH_KEY: record_hashes.hash_map(session, RecordKind.OUTCOME, added)},
            recorded_at=stamp.isoformat(),
        )
    return report


@dataclass(frozen=True, slots=True)
class _Plan:
    """What an ingest will write, worked out inside its transaction before anything is staged."""

    already_stored: int
    new: tuple[tuple[EvidenceIn, Link], ...]  # this payload's evidence not stored before, with its link
    relinked: tuple[tuple[EvidenceRecord, Link], ...]  # stored unlinked evidence that links now
    patients: tuple[PatientIn, ...]
    seen_before: bool

    @property
    def linked(self) -> Counter[str]:
        return Counter(str(lk.method) for _, lk in self.new if lk.method) + Counter(
            str(lk.method) for _, lk in self.relinked
        )

    @property
    def nothing_new(self) -> bool:
        return not self.new and not self.patients and not self.relinked and self.seen_before


def _plan(session: Session, prepared: PreparedPayload, secret: bytes) -> _Plan:
    payload_evidence = _unique_evidence(prepared.extraction.evidence)
    known = emr.stored_evidence_keys(session, payload_evidence)
    index = _study_index(session, secret)
    new = tuple((e, link(_target(e), index)) for key, e in payload_evidence.items() if key not in known)
    waiting = emr.list_evidence(session, unlinked_only=True)
    relinked = tuple((r, lk) for r in waiting if (lk := link(_target(r.evidence), index)).study_id is not None)
    return _Plan(
        len(known),
        new,
        relinked,
        tuple(_new_patients(session, prepared.extraction)),
        emr.payload_seen(session, prepared.sha256),
    )


def _run_in(prepared: PreparedPayload, plan: _Plan, written: int, actor: str) -> RunIn:
    return RunIn(
        source_name=prepared.name,
        payload_sha256=prepared.sha256,
        kind=prepared.kind,
        mapping_version=prepared.mapping_version,
        n_entries=prepared.n_entries,
        n_accepted=prepared.n_accepted,
        n_rejected=len(prepared.errors),
        n_unmapped=sum(u.count for u in prepared.extraction.unmapped),
        n_evidence=len(plan.new),
        n_linked=sum(plan.linked.values()),
        n_outcomes=written,
        actor=actor,
    )


def _unique_evidence(evidence: Iterable[Evidence]) -> dict[tuple[str, str], EvidenceIn]:
    """The payload's evidence as store rows, one per ``(ref, version)`` (a repeated entry counts once)."""
    out: dict[tuple[str, str], EvidenceIn] = {}
    for e in evidence:
        row = _evidence_in(e)
        out.setdefault((row.ref, row.version), row)
    return out


def _evidence_in(e: Evidence) -> EvidenceIn:
    etype = EvidenceType(e.evidence_type)
    return EvidenceIn(
        ref=e.ref,
        version=e.version,
        patient=e.patient,
        study_uid=e.study_uid if e.study_uid and _DICOM_UID.fullmatch(e.study_uid) else None,
        accession=e.accession,
        effective=e.effective,
        outcome=str(e.outcome),
        evidence_type=str(etype),
        strength=etype.strength,
        code=e.code,
        display=e.display,
        text=e.text,
    )


def _new_patients(session: Session, ex: Extraction) -> list[PatientIn]:
    by_pseudonym = {p.pseudonym: PatientIn(p.pseudonym, p.gender, p.age_band) for p in ex.patients}
    stored = emr.stored_patients(session, by_pseudonym)
    return [p for key, p in by_pseudonym.items() if key not in stored]


def _study_index(session: Session, secret: bytes) -> StudyIndex:
    """Every stored study keyed by pseudonyms made with the site's key (raw values stay in ``study``).

    A study de-identified at ingest (``core.services.deidentify.deidentify_for_ingest``) stores the
    pseudonyms themselves, and ``pseudonymous_uid(secret, uid)`` for its UID. Which studies those
    are is not recorded, so every study is indexed both ways: its values hashed, and as stored.
    Neither way can meet the other's by chance: a stored raw value equals some value's pseudonym
    (or keyed UID) only for someone holding the key.
    """
    candidates = emr.link_candidates(session)
    hashed = (
        StudyKeys(
            study_id=c.study_id,
            study_uid=c.study_uid,
            accession=pseudonym(secret, "accession", c.accession_number) if c.accession_number else None,
            patient=pseudonym(secret, "patient", c.patient_id) if c.patient_id else None,
            study_date=c.study_date,
        )
        for c in candidates
    )
    as_stored = (
        StudyKeys(c.study_id, c.study_uid, c.accession_number or None, c.patient_id or None, c.study_date)
        for c in candidates
    )
    return StudyIndex(itertools.chain(hashed, as_stored), uid_alias=functools.partial(pseudonymous_uid, secret))


def _target(e: EvidenceIn) -> LinkTarget:
    return LinkTarget(study_uid=e.study_uid, accession=e.accession, patient=e.patient, effective=e.effective)


def _outcome_row(e: EvidenceIn, lk: Link, actor: str) -> OutcomeIn | None:
    """The ``emr`` outcome row of linked evidence; None for indeterminate evidence (it decides nothing)."""
    if lk.study_id is None or lk.method is None or e.outcome == Outcome.INDETERMINATE:
        return None
    return OutcomeIn(
        study_id=lk.study_id,
        source=OutcomeSource.EMR,
        label=e.outcome == Outcome.CONFIRMED,
        source_ref=f"{e.ref}@{e.version}"[:_SOURCE_REF_MAX],
        recorded_by=actor,
        detail=f"{e.evidence_type}:{lk.method}",
        effective_at=_midnight(e.effective),
    )


def _add_outcomes(session: Session, rows: Sequence[OutcomeIn], *, now: datetime) -> list[int]:
    # Evidence is linked once, so its row cannot exist yet; checked anyway, because the unique
    # constraint would otherwise turn a slip into a failed ingest.
    present = outcomes.outcome_keys(session, source=OutcomeSource.EMR, source_refs=[r.source_ref for r in rows])
    new = [r for r in rows if (r.study_id, r.source_ref) not in present]
    return outcomes.add_outcomes(session, new, now=now)


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)


def _report(prepared: PreparedPayload, plan: _Plan, *, run_id: int | None, written: int) -> IngestReport:
    links = [lk for _, lk in plan.new]
    return IngestReport(
        name=prepared.name,
        sha256=prepared.sha256,
        kind=prepared.kind,
        n_entries=prepared.n_entries,
        accepted=prepared.n_accepted,
        rejected=prepared.errors,
        unmapped=sum(u.count for u in prepared.extraction.unmapped),
        evidence=len(plan.new),
        already_stored=plan.already_stored,
        patients=len(plan.patients),
        linked=dict(plan.linked) if run_id is not None else {},
        unlinked=sum(lk.study_id is None for lk in links),
        ambiguous=sum(lk.ambiguous for lk in links),
        outcomes=written,
        run_id=run_id,
    )


def _audit_payload(report: IngestReport) -> JSONObject:
    """The report without the rejection messages: a message may quote a bad value, and the ledger keeps everything."""
    payload = report.to_dict()
    payload["rejected"] = [e.path for e in report.rejected]
    return payload
