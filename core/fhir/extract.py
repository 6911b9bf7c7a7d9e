"""Turn parsed FHIR resources into de-identified outcome evidence, linked to studies and patients.

Pure: models in, frozen dataclasses out. What leaves is only what Vigil stores: keyed hashes of
resource ids, patients' MRNs and accession numbers; StudyInstanceUIDs (not PHI); dates the outcome
was established; the outcome, its evidence type, the deciding code with the mapping file's display;
and the de-identified sentence(s) of a note or report that carry the mention. No name, identifier
value, display or free text of a resource leaves otherwise.

How a resource decides (codes through the mapping file, text through :func:`core.fhir.notes.read_note`):

- Condition: its code (a finding or disorder); ``refuted`` excludes, ``provisional``,
  ``differential`` or ``unconfirmed`` leave it indeterminate, ``entered-in-error`` is ignored.
- Observation, DiagnosticReport (final, amended, corrected, appended): a mapped value or
  conclusion code decides; else a finding code without a value; else the text (valueString,
  conclusion, presentedForm). The evidence type is that of the resource's own code (a pathology
  report is histopathology, a CT chest report follow-up imaging), and histopathology when a
  completed biopsy Procedure names the report (``Procedure.report``) or the Observation is
  ``partOf`` it.
- DocumentReference (current) of a mapped note type: its text, as a note mention.
- Procedure: decides nothing itself.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from core.fhir.codes import V2_0203
from core.fhir.deid import AttachmentError, PatientRecord, Scrubber, age_band, attachment_text, pseudonym
from core.fhir.mapping import MappedCode, OutcomeMapping
from core.fhir.notes import read_note
from core.fhir.parse import ParsedPayload, ResourceError
from core.fhir.vocabulary import EvidenceType, Outcome

__all__ = ["DICOM_UID_SYSTEM", "Evidence", "Extraction", "UnmappedCode", "extract"]

DICOM_UID_SYSTEM: Final = "urn:dicom:uid"
_USABLE_STATUS: Final = {
    "Observation": frozenset({"final", "amended", "corrected"}),
    "DiagnosticReport": frozenset({"final", "amended", "corrected", "appended"}),
    "DocumentReference": frozenset({"current"}),
    "Procedure": frozenset({"completed"}),
}
_MAPPED_CONCEPTS: Final[dict[str, tuple[str, ...]]] = {
    "Observation": ("code", "valueCodeableConcept"),
    "Condition": ("code",),
    "DiagnosticReport": ("code", "conclusionCode"),
    "Procedure": ("code",),
    "DocumentReference": ("type",),
}
_REF_TAIL: Final = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of de-identified EMR evidence about the finding.

    Attributes
    ----------
    ref : str
        ``"{resourceType}/{keyed hash of the resource id}"``, never the raw id.
    version : str
        ``meta.versionId`` or ``""``; a new version of a resource is new evidence.
    patient : str or None
        ``pseudonym(secret, "patient", mrn)`` of the subject.
    study_uid : str or None
        StudyInstanceUID of the referenced ImagingStudy.
    accession : str or None
        ``pseudonym(secret, "accession", value)`` of the study's accession number.
    effective : date or None
        When the outcome was established clinically.
    outcome : Outcome
    evidence_type : EvidenceType
    code : str
        ``"system|code"`` of the code that decided it (a report's own code when its text decided).
    display : str
        The deciding code's display from the mapping file.
    text : str
        De-identified sentence(s) of the note or report that carry the mention, ``""`` if none.
    """

    ref: str
    version: str
    patient: str | None
    study_uid: str | None
    accession: str | None
    effective: date | None
    outcome: Outcome
    evidence_type: EvidenceType
    code: str
    display: str
    text: str


@dataclass(frozen=True, slots=True)
class UnmappedCode:
    """A code Vigil read but the mapping file does not map, and how often it came."""

    system: str
    code: str
    resource_type: str
    count: int


@dataclass(frozen=True, slots=True)
class Extraction:
    """What a payload says about the finding, de-identified."""

    evidence: tuple[Evidence, ...]
    patients: tuple[PatientRecord, ...]
    unmapped: tuple[UnmappedCode, ...]
    errors: tuple[ResourceError, ...]


@dataclass(frozen=True, slots=True)
class _Link:
    patient: str | None
    study_uid: str | None
    accession: str | None


_NO_LINK: Final = _Link(None, None, None)
# What decided a piece of evidence: outcome, evidence type, the deciding mapping entry, the sentences.
_Decided = tuple[Outcome, EvidenceType, MappedCode, Sequence[str]]


class _Index:
    """The payload's resources by every name a reference may use."""

    def __init__(self, parsed: ParsedPayload) -> None:
        self.by_key: dict[str, Any] = {}
        urls = dict(parsed.full_urls)
        for path, model in parsed.resources:
            if model.id:
                self.by_key[f"{model.get_resource_type()}/{model.id}"] = model
            if path in urls:
                self.by_key[urls[path]] = model

    def resolve(self, ref: Any) -> Any:
        target = getattr(ref, "reference", None)
        if not target:
            return None
        if target in self.by_key:
            return self.by_key[target]
        match = _REF_TAIL.search(target)
        return self.by_key.get(f"{match.group(1)}/{match.group(2)}") if match else None


def extract(parsed: ParsedPayload, *, secret: bytes, mapping: OutcomeMapping) -> Extraction:
    """De-identified evidence, patients and unmapped codes of a parsed payload.

    Parameters
    ----------
    parsed : ParsedPayload
        From :func:`core.fhir.parse.parse_payload`.
    secret : bytes
        The site's pseudonym key.
    mapping : OutcomeMapping
        From :func:`core.fhir.mapping.load_mapping`.

    Returns
    -------
    Extraction
        ``errors`` holds the payload's per-resource errors.
    """
    index = _Index(parsed)
    scrubber = Scrubber(parsed.identifying)
    histology = _histology_targets(parsed, index, mapping)
    evidence: list[Evidence] = []
    errors = list(parsed.errors)
    for path, model in parsed.resources:
        found = _evidence(
            model, path, index=index, mapping=mapping, secret=secret, scrubber=scrubber, histology=histology
        )
        if isinstance(found, ResourceError):
            errors.append(found)
        elif found is not None:
            evidence.append(found)
    return Extraction(
        evidence=tuple(evidence),
        patients=_patients(parsed, secret, evidence),
        unmapped=_unmapped(parsed, mapping),
        errors=tuple(errors),
    )


def _evidence(
    model: Any,
    path: str,
    *,
    index: _Index,
    mapping: OutcomeMapping,
    secret: bytes,
    scrubber: Scrubber,
    histology: frozenset[int],
) -> Evidence | ResourceError | None:
    resource_type = model.get_resource_type()
    usable = _USABLE_STATUS.get(resource_type)
    if usable is not None and model.status not in usable:
        return None
    if resource_type == "Condition":
        decided = _condition(model, mapping)
        texts: list[str] = []
    elif resource_type in ("Observation", "DiagnosticReport"):
        try:
            texts = list(_report_texts(model))
        except AttachmentError as exc:
            return ResourceError(path, exc.reason)
        decided = _report(model, mapping, texts, upgrade=id(model) in histology)
    elif resource_type == "DocumentReference":
        try:
            texts = list(_note_texts(model))
        except AttachmentError as exc:
            return ResourceError(path, exc.reason)
        decided = _note(model, mapping, texts)
    else:
        return None
    if decided is None:
        return None
    outcome, evidence_type, entry, sentences = decided
    link = _link(model, index, secret)
    return Evidence(
        ref=f"{resource_type}/{_resource_hash(model, path, secret)}",
        version=str(model.meta.versionId) if model.meta is not None and model.meta.versionId else "",
        patient=link.patient,
        study_uid=link.study_uid,
        accession=link.accession,
        effective=_effective(model),
        outcome=outcome,
        evidence_type=evidence_type,
        code=entry.token,
        display=entry.display,
        text=" ".join(scrubber.scrub(s.strip()) for s in sentences),
    )


def _mapped(concept: Any, mapping: OutcomeMapping, resource_type: str) -> MappedCode | None:
    for coding in getattr(concept, "coding", None) or ():
        entry = mapping.lookup(coding.system, coding.code, resource_type)
        if entry is not None:
            return entry
    return None


def _condition(model: Any, mapping: OutcomeMapping) -> _Decided | None:
    entry = _mapped(model.code, mapping, "Condition")
    if entry is None or entry.outcome is None:
        return None
    status = _first_code(model.verificationStatus)
    if status == "entered-in-error":
        return None
    if status == "refuted":
        # Refuting a finding excludes it; refuting "normal lung" says only that something is there.
        outcome = Outcome.EXCLUDED if entry.outcome is Outcome.CONFIRMED else Outcome.INDETERMINATE
    elif status in ("provisional", "differential", "unconfirmed"):
        outcome = Outcome.INDETERMINATE
    else:
        outcome = entry.outcome
    return outcome, entry.evidence_type or EvidenceType.CLINICAL_DIAGNOSIS, entry, ()


def _report(model: Any, mapping: OutcomeMapping, texts: Sequence[str], *, upgrade: bool) -> _Decided | None:
    resource_type = model.get_resource_type()
    own = _mapped(model.code, mapping, resource_type)
    values = [model.valueCodeableConcept] if resource_type == "Observation" else list(model.conclusionCode or ())
    values = [v for v in values if v is not None]
    deciding = next(
        (e for e in (_mapped(v, mapping, resource_type) for v in values) if e is not None and e.outcome is not None),
        None,
    )
    kind = own.evidence_type if own is not None and own.evidence_type is not None else None
    if kind is None and deciding is not None:
        kind = deciding.evidence_type
    if kind is None:
        return None  # neither the resource's code nor its value says what kind of evidence this is
    if upgrade:
        kind = EvidenceType.HISTOPATHOLOGY
    if deciding is not None and deciding.outcome is not None:
        return deciding.outcome, kind, deciding, ()
    if own is not None and own.outcome is not None:
        # A finding code decides alone only without a value: an unmapped value may negate it.
        has_value = bool(values) or getattr(model, "valueString", None) is not None
        return (own.outcome, kind, own, ()) if not has_value else None
    if own is None or not texts:
        return None
    reading = read_note("\n\n".join(texts))
    if reading is None:
        return None
    return reading.outcome, kind, own, reading.sentences


def _note(model: Any, mapping: OutcomeMapping, texts: Sequence[str]) -> _Decided | None:
    if model.docStatus == "entered-in-error":
        return None
    own = _mapped(model.type, mapping, "DocumentReference")
    if own is None or not texts:
        return None
    reading = read_note("\n\n".join(texts))
    if reading is None:
        return None
    return reading.outcome, own.evidence_type or EvidenceType.NOTE_MENTION, own, reading.sentences


def _report_texts(model: Any) -> Iterator[str]:
    if model.get_resource_type() == "Observation":
        if model.valueString:
            yield model.valueString
        return
    if model.conclusion:
        yield model.conclusion
    for attachment in model.presentedForm or ():
        if attachment.data is not None:
            yield attachment_text(attachment.contentType, attachment.data)


def _note_texts(model: Any) -> Iterator[str]:
    for content in model.content or ():
        attachment = content.attachment
        if attachment is not None and attachment.data is not None:
            yield attachment_text(attachment.contentType, attachment.data)


def _first_code(concept: Any) -> str | None:
    for coding in getattr(concept, "coding", None) or ():
        if coding.code:
            return str(coding.code)
    return None


def _has_code(concept: Any, code: str) -> bool:
    return any(c.code == code and c.system in (V2_0203, None) for c in getattr(concept, "coding", None) or ())


def _histology_targets(parsed: ParsedPayload, index: _Index, mapping: OutcomeMapping) -> frozenset[int]:
    """The ``id()`` of each report and observation that a completed biopsy produced."""
    procedures: set[int] = set()
    targets: set[int] = set()
    for _, model in parsed.resources:
        if model.get_resource_type() != "Procedure" or model.status != "completed":
            continue
        entry = _mapped(model.code, mapping, "Procedure")
        if entry is None or entry.evidence_type is not EvidenceType.HISTOPATHOLOGY:
            continue
        procedures.add(id(model))
        for ref in model.report or ():
            report = index.resolve(ref)
            if report is not None:
                targets.add(id(report))
    for _, model in parsed.resources:
        if model.get_resource_type() == "Observation":
            if any(id(index.resolve(ref)) in procedures for ref in model.partOf or ()):
                targets.add(id(model))
    return frozenset(targets)


def _study_refs(model: Any) -> Iterator[Any]:
    resource_type = model.get_resource_type()
    if resource_type == "DiagnosticReport":
        yield from model.imagingStudy or ()
    elif resource_type == "Observation":
        yield from model.derivedFrom or ()
        yield from model.partOf or ()
    elif resource_type == "DocumentReference" and model.context is not None:
        yield from model.context.related or ()


def _link(model: Any, index: _Index, secret: bytes) -> _Link:
    study = _NO_LINK
    for ref in _study_refs(model):
        study = _study_link(ref, index, secret)
        if study.study_uid is not None or study.accession is not None:
            break
    patient = _patient_of(getattr(model, "subject", None), index, secret)
    if patient is None and study.patient is not None:
        patient = study.patient
    return _Link(patient, study.study_uid, study.accession)


def _study_link(ref: Any, index: _Index, secret: bytes) -> _Link:
    target = index.resolve(ref)
    if target is not None and target.get_resource_type() == "ImagingStudy":
        uid, accession = _study_identifiers(target.identifier or (), secret)
        return _Link(_patient_of(target.subject, index, secret), uid, accession)
    if ref.identifier is not None:
        # A logical reference: the StudyInstanceUID or accession number itself.
        uid, accession = _study_identifiers((ref.identifier,), secret)
        return _Link(None, uid, accession)
    return _NO_LINK


def _study_identifiers(identifiers: Iterable[Any], secret: bytes) -> tuple[str | None, str | None]:
    uid: str | None = None
    accession: str | None = None
    for identifier in identifiers:
        value = identifier.value
        if not value:
            continue
        if identifier.system == DICOM_UID_SYSTEM and uid is None:
            uid = value.removeprefix("urn:oid:")
        elif _has_code(identifier.type, "ACSN") and accession is None:
            accession = pseudonym(secret, "accession", value)
    return uid, accession


def _mrn(identifiers: Iterable[Any]) -> str | None:
    for identifier in identifiers:
        if identifier.value and _has_code(identifier.type, "MR"):
            return str(identifier.value)
    return None


def _patient_of(ref: Any, index: _Index, secret: bytes) -> str | None:
    if ref is None:
        return None
    target = index.resolve(ref)
    if target is not None and target.get_resource_type() == "Patient":
        mrn = _mrn(target.identifier or ())
    elif ref.identifier is not None:
        mrn = _mrn((ref.identifier,))
    else:
        mrn = None
    return None if mrn is None else pseudonym(secret, "patient", mrn)


def _resource_hash(model: Any, path: str, secret: bytes) -> str:
    resource_type = model.get_resource_type()
    if model.id:
        return pseudonym(secret, "resource", f"{resource_type}/{model.id}")
    # No id (a collection entry known only by urn:uuid): the content names it, so a resend is the same.
    digest = hashlib.sha256(model.model_dump_json().encode()).hexdigest()
    return pseudonym(secret, "resource-content", f"{resource_type}/{digest}")


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):  # a partial date: "1931" or "1931-04"
        parts = value.split("-")
        try:
            return date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, 1)
        except ValueError:
            return None
    return None


def _effective(model: Any) -> date | None:
    resource_type = model.get_resource_type()
    if resource_type in ("Observation", "DiagnosticReport"):
        period = model.effectivePeriod
        candidates = [
            model.effectiveDateTime,
            getattr(model, "effectiveInstant", None),
            period.start if period is not None else None,
            model.issued,
        ]
    elif resource_type == "Condition":
        candidates = [model.recordedDate, model.onsetDateTime]
    elif resource_type == "DocumentReference":
        period = model.context.period if model.context is not None else None
        candidates = [model.date, period.start if period is not None else None]
    else:
        candidates = []
    return next((d for d in map(_as_date, candidates) if d is not None), None)


def _patients(parsed: ParsedPayload, secret: bytes, evidence: Sequence[Evidence]) -> tuple[PatientRecord, ...]:
    latest: dict[str, date] = {}
    for item in evidence:
        if item.patient is not None and item.effective is not None:
            latest[item.patient] = max(item.effective, latest.get(item.patient, item.effective))
    fallback = max(latest.values(), default=None) or date.today()
    records: dict[str, PatientRecord] = {}
    for _, model in parsed.resources:
        if model.get_resource_type() != "Patient":
            continue
        mrn = _mrn(model.identifier or ())
        if mrn is None:
            continue
        key = pseudonym(secret, "patient", mrn)
        at = latest.get(key, fallback)
        records[key] = PatientRecord(key, str(model.gender or ""), age_band(_as_date(model.birthDate), at))
    return tuple(records.values())


def _unmapped(parsed: ParsedPayload, mapping: OutcomeMapping) -> tuple[UnmappedCode, ...]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for _, model in parsed.resources:
        resource_type = model.get_resource_type()
        for element in _MAPPED_CONCEPTS.get(resource_type, ()):
            value = getattr(model, element, None)
            for concept in value if isinstance(value, list) else ([value] if value is not None else []):
                if _mapped(concept, mapping, resource_type) is None:
                    for coding in concept.coding or ():
                        counts[(str(coding.system or ""), str(coding.code or ""), resource_type)] += 1
    return tuple(UnmappedCode(s, c, t, n) for (s, c, t), n in sorted(counts.items()))
