"""The versioned mapping from SNOMED CT and LOINC codes to Vigil outcomes and evidence types.

The mapping lives in a JSON file (``core/fhir/outcome_codes.json`` by default) that an admin can
extend: codes that are not in it are counted and listed (``Extraction.unmapped``), never guessed.
Three kinds of entry (see the file's ``description``):

- a finding or disorder (outcome and evidence type): decides as a Condition's code, or as the
  code, value or conclusion of an Observation or DiagnosticReport;
- a qualifier (outcome, no evidence type), e.g. Positive / Negative: decides only as a value or
  conclusion, with the evidence type of the resource's own code;
- a report, note or procedure type (evidence type, no outcome): decides nothing by itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from core.errors import ConfigError
from core.fhir.codes import LOINC, SNOMED, code_problem
from core.fhir.vocabulary import EvidenceType, Outcome

__all__ = ["DEFAULT_MAPPING_PATH", "MappedCode", "OutcomeMapping", "load_mapping"]

DEFAULT_MAPPING_PATH: Final = Path(__file__).with_name("outcome_codes.json")
_SYSTEMS: Final = frozenset({SNOMED, LOINC})


@dataclass(frozen=True, slots=True)
class MappedCode:
    """One entry of the mapping file.

    Attributes
    ----------
    system, code : str
        The coding (SNOMED CT or LOINC).
    display : str
        The code's real display, as written in the mapping file.
    resource_types : frozenset of str
        Resource types in which the code is read.
    outcome : Outcome or None
        What the code says about the finding; None for a report, note or procedure type.
    evidence_type : EvidenceType or None
        The evidence the code stands for; None for a qualifier (Positive, Negative).
    """

    system: str
    code: str
    display: str
    resource_types: frozenset[str]
    outcome: Outcome | None
    evidence_type: EvidenceType | None

    @property
    def token(self) -> str:
        """``"system|code"``, FHIR's token form."""
        return f"{self.system}|{self.code}"


@dataclass(frozen=True, slots=True)
class OutcomeMapping:
    """A loaded mapping file: its version and its entries keyed by (system, code)."""

    version: str
    entries: Mapping[tuple[str, str], MappedCode]

    def lookup(self, system: str | None, code: str | None, resource_type: str) -> MappedCode | None:
        """The entry for a coding read in a resource of ``resource_type``, or None when unmapped there."""
        entry = self.entries.get((system or "", code or ""))
        if entry is None or resource_type not in entry.resource_types:
            return None
        return entry


def load_mapping(path: Path | None = None) -> OutcomeMapping:
    """Read and check a mapping file.

    Parameters
    ----------
    path : Path, optional
        Defaults to ``core/fhir/outcome_codes.json``.

    Raises
    ------
    ConfigError
        Unreadable JSON, a missing version, a code that fails its system's format or check digit,
        an unknown outcome or evidence type, or a code listed twice (the message names it).

    Examples
    --------
    >>> mapping = load_mapping()
    >>> mapping.lookup("http://snomed.info/sct", "786838002", "Condition").display
    'Nodule of lung'
    """
    where = path or DEFAULT_MAPPING_PATH
    try:
        document = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the outcome mapping {where}: {exc}") from exc
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version:
        raise ConfigError(f"the outcome mapping {where} has no version")
    entries: dict[tuple[str, str], MappedCode] = {}
    for i, raw in enumerate(document.get("codes", [])):
        entry = _entry(raw, f"{where}: codes[{i}]")
        key = (entry.system, entry.code)
        if key in entries:
            raise ConfigError(f"{where}: codes[{i}]: {entry.token} is listed twice")
        entries[key] = entry
    return OutcomeMapping(version, entries)


def _entry(raw: Any, where: str) -> MappedCode:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an entry must be a JSON object")
    system, code, display = raw.get("system"), raw.get("code"), raw.get("display")
    if system not in _SYSTEMS:
        raise ConfigError(f"{where}: system {system!r} is not SNOMED CT or LOINC")
    problem = code_problem(str(system), code if isinstance(code, str) else None)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    if not isinstance(display, str) or not display:
        raise ConfigError(f"{where}: {code!r} has no display")
    types = raw.get("resource_types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ConfigError(f"{where}: {code!r} needs a list of resource_types")
    try:
        outcome = None if raw.get("outcome") is None else Outcome(raw["outcome"])
        evidence_type = None if raw.get("evidence_type") is None else EvidenceType(raw["evidence_type"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if outcome is None and evidence_type is None:
        raise ConfigError(f"{where}: {code!r} maps to neither an outcome nor an evidence type")
    return MappedCode(str(system), str(code), display, frozenset(types), outcome, evidence_type)
