"""Synthetic FHIR R4 test payloads (made up here, no real person) with canary strings in every identifying place.

Each canary is unique and appears nowhere else, so finding one in an extraction's repr means the
value leaked. The codes are the mapping file's real SNOMED CT and LOINC codes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"

STUDY_UID = "1.2.826.0.1.3680043.8.498.10001"
STUDY_UID_2 = "1.2.826.0.1.3680043.8.498.10002"
MRN = "CANARY-MRN-7Q1"
ACCESSION = "CANARY-ACC-4K9"
ACCESSION_2 = "CANARY-ACC-5W2"

# Every identifying value planted in the payload; none may leave extract().
CANARIES = (
    "CANARY-FAMILY-ZQX",
    "Canaryella",  # given name
    "CANARY-TEXTNAME-P3",
    MRN,
    ACCESSION,
    ACCESSION_2,
    "CANARY-LINE-8J",
    "Canaryville",
    "CANARY-POST-61",
    "canary-mail@example.org",
    "CANARY-PHONE-555",
    "CANARY-DOC-FAMILY-T5",
    "Canarina",  # practitioner's given name
    "CANARY-RELATIVE-M2",
    "CANARY-DISPLAY-D1",
    "CANARY-CCTEXT-C1",
    "CANARY-DIV-N1",
    "CANARY-NOTE-ONLY-X1",
    "CANARY-CONCL-ONLY-X2",
    "CANARY-PDF-ONLY-X3",
    "CANARY-ID-OBS-I1",
    "CANARY-ID-DR-I2",
    "CANARY-COND-NOTE-K1",
    "1931-04-05",  # birth date, ISO
    "04/05/1931",
    "5 April 1931",
    "555 0199 7788",
)


def b64(text: str, encoding: str = "utf-8") -> str:
    """Base64 of ``text`` in ``encoding``, as an Attachment's data."""
    return base64.b64encode(text.encode(encoding)).decode("ascii")


def concept(system: str, code: str, display: str = "CANARY-DISPLAY-D1") -> dict[str, Any]:
    """A CodeableConcept whose display and text carry canaries (Vigil must show the mapping file's display)."""
    return {"coding": [{"system": system, "code": code, "display": display}], "text": "CANARY-CCTEXT-C1"}


def narrative() -> dict[str, Any]:
    """Narrative text carrying a canary."""
    return {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">CANARY-DIV-N1 CANARY-FAMILY-ZQX</div>',
    }


def patient(pid: str = "p1", mrn: str = MRN, birth: str = "1931-04-05") -> dict[str, Any]:
    """A Patient with canaries in every identifying element; born 1931, so 90+ in 2024."""
    return {
        "resourceType": "Patient",
        "id": pid,
        "text": narrative(),
        "identifier": [{"type": {"coding": [{"system": V2, "code": "MR"}]}, "system": "urn:oid:1.2.3.4", "value": mrn}],
        "name": [{"family": "CANARY-FAMILY-ZQX", "given": ["Canaryella"], "text": "CANARY-TEXTNAME-P3"}],
        "telecom": [
            {"system": "phone", "value": "CANARY-PHONE-555"},
            {"system": "email", "value": "canary-mail@example.org"},
        ],
        "address": [{"line": ["CANARY-LINE-8J"], "city": "Canaryville", "postalCode": "CANARY-POST-61"}],
        "gender": "female",
        "birthDate": birth,
    }


def practitioner() -> dict[str, Any]:
    """A Practitioner whose names a note mentions."""
    return {
        "resourceType": "Practitioner",
        "id": "dr1",
        "name": [{"family": "CANARY-DOC-FAMILY-T5", "given": ["Canarina"]}],
    }


def related_person() -> dict[str, Any]:
    """A RelatedPerson whose name a note mentions."""
    return {
        "resourceType": "RelatedPerson",
        "id": "rp1",
        "patient": {"reference": "Patient/p1"},
        "name": [{"family": "CANARY-RELATIVE-M2"}],
    }


def imaging_study(sid: str = "is1", uid: str = STUDY_UID, accession: str = ACCESSION) -> dict[str, Any]:
    """An ImagingStudy with its StudyInstanceUID and accession identifiers."""
    return {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
            {"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": accession},
        ],
    }


def condition(cid: str = "c1", code: str = "786838002", verification: str | None = "confirmed") -> dict[str, Any]:
    """A Condition coded in SNOMED CT."""
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "meta": {"versionId": "2"},
        "text": narrative(),
        "subject": {"reference": "Patient/p1"},
        "code": concept(SNOMED, code),
        "recordedDate": "2024-03-10",
        "note": [{"text": "CANARY-COND-NOTE-K1 CANARY-FAMILY-ZQX"}],
    }
    if verification is not None:
        out["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        }
    return out


NOTE_TEXT = (
    "Seen today with CANARY-FAMILY-ZQX Canaryella (MRN CANARY-MRN-7Q1), born 04/05/1931, of CANARY-LINE-8J, "
    "Canaryville CANARY-POST-61; tel 555 0199 7788, mail canary-mail@example.org.\n"
    "CANARY-NOTE-ONLY-X1 was discussed with her son CANARY-RELATIVE-M2.\n"
    "Dr. Canarina CANARY-DOC-FAMILY-T5 reviewed the CT of 5 April 1931 with Canaryella CANARY-FAMILY-ZQX: "
    "there is a 9 mm pulmonary nodule in the right upper lobe (accession CANARY-ACC-4K9).\n"
)


def document_reference(
    did: str = "d1", text: str = NOTE_TEXT, content_type: str = "text/plain; charset=utf-8", data: str | None = None
) -> dict[str, Any]:
    """A progress note linked to the ImagingStudy through context.related."""
    return {
        "resourceType": "DocumentReference",
        "id": did,
        "status": "current",
        "text": narrative(),
        "type": concept(LOINC, "11506-3"),
        "subject": {"reference": "Patient/p1"},
        "date": "2024-03-12T09:30:00Z",
        "description": "CANARY-FAMILY-ZQX progress note",
        "context": {"related": [{"reference": "ImagingStudy/is1"}]},
        "content": [{"attachment": {"contentType": content_type, "data": data if data is not None else b64(text)}}],
    }


def diagnostic_report(
    rid: str = "r1",
    code: str = "24627-2",
    conclusion_code: str | None = "10828004",
    conclusion: str = "CANARY-CONCL-ONLY-X2. Spiculated nodule in CANARY-FAMILY-ZQX's right lung.",
    study_ref: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A CT chest report linked to the ImagingStudy through imagingStudy."""
    out: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "identifier": [{"value": "CANARY-ID-DR-I2"}],
        "text": narrative(),
        "status": "final",
        "code": concept(LOINC, code),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-04-01T10:00:00Z",
        "issued": "2024-04-02T10:00:00Z",
        "imagingStudy": [study_ref or {"reference": "ImagingStudy/is1"}],
        "conclusion": conclusion,
        "presentedForm": [
            {"contentType": "text/plain", "data": b64("CANARY-PDF-ONLY-X3 Report for CANARY-FAMILY-ZQX Canaryella.")}
        ],
    }
    if conclusion_code is not None:
        out["conclusionCode"] = [concept(SNOMED, conclusion_code)]
    return out


def observation(oid: str = "o1", code: str = "36643-5", value_code: str | None = "260385009") -> dict[str, Any]:
    """A chest X-ray observation linked to the study by derivedFrom."""
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "identifier": [{"value": "CANARY-ID-OBS-I1"}],
        "text": narrative(),
        "status": "final",
        "code": concept(LOINC, code),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01",
        "derivedFrom": [{"reference": "ImagingStudy/is1"}],
        "note": [{"text": "CANARY-FAMILY-ZQX CANARY-COND-NOTE-K1"}],
    }
    if value_code is not None:
        out["valueCodeableConcept"] = concept(SNOMED, value_code)
    return out


def biopsy(pid: str = "bx1", report: str = "DiagnosticReport/path1") -> dict[str, Any]:
    """A completed lung biopsy naming its pathology report."""
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": concept(SNOMED, "78603008"),
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2024-06-01",
        "report": [{"reference": report}],
    }


def bundle(resources: list[dict[str, Any]], kind: str = "collection") -> dict[str, Any]:
    """A Bundle of ``kind`` with one entry per resource (transactions get a request each)."""
    entries = []
    for r in resources:
        entry: dict[str, Any] = {"resource": r}
        if kind in ("transaction", "batch"):
            entry["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r.get('id', '')}"}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def full_record() -> list[dict[str, Any]]:
    """Patient, practitioner, relative, study, note, CT report, X-ray observation, condition, biopsy and pathology."""
    pathology = diagnostic_report(
        rid="path1", code="11526-1", conclusion_code="363358000", conclusion="Adenocarcinoma of CANARY-FAMILY-ZQX lung."
    )
    return [
        patient(),
        practitioner(),
        related_person(),
        imaging_study(),
        document_reference(),
        diagnostic_report(),
        observation(),
        condition(),
        biopsy(),
        pathology,
    ]


def encode(document: Any) -> bytes:
    """JSON bytes of a document."""
    return json.dumps(document).encode("utf-8")
