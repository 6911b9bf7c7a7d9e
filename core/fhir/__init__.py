"""FHIR R4 outcomes from the EMR: parse, validate, de-identify, map to outcomes, extract evidence.

fhir.resources lives here (its ``R4B`` module; see :mod:`core.fhir.parse` for why). Pure: bytes and
models in, frozen dataclasses out; the store and the services own persistence.
"""

from __future__ import annotations

from core.fhir.deid import PatientRecord, pseudonym
from core.fhir.extract import Evidence, Extraction, UnmappedCode, extract
from core.fhir.mapping import MappedCode, OutcomeMapping, load_mapping
from core.fhir.parse import ParsedPayload, ResourceError, parse_payload
from core.fhir.vocabulary import EvidenceType, Outcome

__all__ = [
    "Evidence",
    "EvidenceType",
    "Extraction",
    "MappedCode",
    "Outcome",
    "OutcomeMapping",
    "ParsedPayload",
    "PatientRecord",
    "ResourceError",
    "UnmappedCode",
    "extract",
    "load_mapping",
    "parse_payload",
    "pseudonym",
]
