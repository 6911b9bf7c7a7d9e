"""The required bindings Vigil checks on top of fhir.resources, which accepts any string as a code.

Pure functions over plain values: the code systems Vigil knows, the shape and check digit of a
SNOMED CT concept id (Verhoeff) and of a LOINC code (mod 10), and the R4 value sets of the status
elements it reads.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "BINDINGS",
    "DICOM",
    "ICD10",
    "ICD10CM",
    "LOINC",
    "SNOMED",
    "V2_0203",
    "code_problem",
    "is_loinc_code",
    "is_snomed_concept_id",
    "system_problem",
]

SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
DICOM: Final = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"

_KNOWN_SYSTEMS: Final = frozenset({SNOMED, LOINC, ICD10CM, ICD10, DICOM})
# HL7's own code systems (v2 tables, v3 vocabularies, FHIR-defined ones) all live under this root.
_HL7_TERMINOLOGY: Final = "http://terminology.hl7.org/CodeSystem/"

# R4 required bindings of the elements Vigil reads (https://hl7.org/fhir/R4/valueset-*.html).
BINDINGS: Final[dict[str, frozenset[str]]] = {
    "Bundle.type": frozenset(
        {
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        }
    ),
    "Observation.status": frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
    ),
    "DiagnosticReport.status": frozenset(
        {
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    "Condition.clinicalStatus": frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    "Condition.verificationStatus": frozenset(
        {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}
    ),
    "Procedure.status": frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
    ),
    "DocumentReference.status": frozenset({"current", "superseded", "entered-in-error"}),
    "ImagingStudy.status": frozenset({"registered", "available", "cancelled", "entered-in-error", "unknown"}),
    "Patient.gender": frozenset({"male", "female", "other", "unknown"}),
}

_LOINC: Final = re.compile(r"(\d{1,7})-(\d)")
_SNOMED: Final = re.compile(r"[1-9]\d{5,17}")

# Verhoeff's dihedral-group tables (the check digit SNOMED CT identifiers carry).
_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
# Partition ids of a concept: "00" (short format, core namespace) and "10" (long format, extension).
_CONCEPT_PARTITIONS: Final = frozenset({"00", "10"})


def _verhoeff_ok(digits: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(ch)]]
    return check == 0


def is_snomed_concept_id(code: str) -> bool:
    """Whether ``code`` has the form of a SNOMED CT concept id: 6-18 digits, concept partition, Verhoeff digit.

    Examples
    --------
    >>> is_snomed_concept_id("786838002"), is_snomed_concept_id("786838003")
    (True, False)
    >>> is_snomed_concept_id("3772571013")  # a description id (partition 01), not a concept
    False
    """
    return bool(_SNOMED.fullmatch(code)) and code[-3:-1] in _CONCEPT_PARTITIONS and _verhoeff_ok(code)


def is_loinc_code(code: str) -> bool:
    """Whether ``code`` is NNNNN-C with LOINC's mod 10 check digit.

    Examples
    --------
    >>> is_loinc_code("24627-2"), is_loinc_code("24627-3"), is_loinc_code("24627")
    (True, False, False)
    """
    match = _LOINC.fullmatch(code)
    if match is None:
        return False
    total = 0
    # Luhn from the right: the rightmost digit of the number part is doubled.
    for i, ch in enumerate(reversed(match.group(1))):
        digit = int(ch) * (2 if i % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(match.group(2))


def system_problem(system: object) -> str | None:
    """Why a coding's system is not one Vigil reads, or None when it is."""
    if system is None or system == "":
        return "a coding without a system"
    if isinstance(system, str) and (system in _KNOWN_SYSTEMS or system.startswith(_HL7_TERMINOLOGY)):
        return None
    return f"unknown code system {system!r}"


def code_problem(system: str, code: str | None) -> str | None:
    """Why ``code`` is not a valid code of ``system`` (format and check digit), or None when it is."""
    if not code:
        return "a coding without a code"
    if system == SNOMED and not is_snomed_concept_id(code):
        return f"{code!r} is not a SNOMED CT concept id (format, partition or Verhoeff check digit)"
    if system == LOINC and not is_loinc_code(code):
        return f"{code!r} is not a LOINC code (NNNNN-C with a mod 10 check digit)"
    return None
