"""Link EMR evidence to imaging studies: StudyInstanceUID, then accession, then patient and date (pure).

The keys are compared as keyed pseudonyms (``core.fhir.pseudonym``): the caller hashes each stored
study's patient id and accession number with the site secret, so neither raw value is needed
beside the evidence, and none is stored. A study de-identified at ingest already stores those
pseudonyms, and a keyed UID: the caller indexes its values as they are, and passes ``uid_alias``
so that evidence naming the original StudyInstanceUID finds it.

Rules, first match wins:

1. ``study_uid``: the evidence references an ImagingStudy whose StudyInstanceUID is a stored study.
2. ``accession``: its accession hash equals exactly one stored study's.
3. ``patient_date``: its patient pseudonym has studies dated on or before the evidence's effective
   date, no more than :data:`WINDOW` earlier; the nearest one wins. Two studies of that patient on
   the nearest date make it ambiguous: unlinked, and counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final

__all__ = ["WINDOW", "Link", "LinkMethod", "LinkTarget", "StudyKeys", "StudyIndex", "link"]

#: How long after a study an outcome may be established and still be that study's (patient + date rule).
WINDOW: Final = timedelta(days=365)


class LinkMethod(StrEnum):
    """How evidence was linked to its study; the values are stored in ``emr_evidence.link_method``."""

    STUDY_UID = "study_uid"
    ACCESSION = "accession"
    PATIENT_DATE = "patient_date"


@dataclass(frozen=True, slots=True)
class StudyKeys:
    """A stored study's linkage keys (pseudonyms, not raw values)."""

    study_id: int
    study_uid: str
    accession: str | None
    patient: str | None
    study_date: date | None


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a piece of evidence offers for linkage."""

    study_uid: str | None
    accession: str | None
    patient: str | None
    effective: date | None


@dataclass(frozen=True, slots=True)
class Link:
    """The outcome of linking one piece of evidence.

    ``study_id`` and ``method`` are None when it did not link; ``ambiguous`` says that a rule
    matched several studies equally well (so it was left unlinked on purpose).
    """

    study_id: int | None
    method: LinkMethod | None
    ambiguous: bool = False


class StudyIndex:
    """Stored studies indexed by each linkage key; build once per ingest."""

    def __init__(self, studies: Iterable[StudyKeys], *, uid_alias: Callable[[str], str] | None = None) -> None:
        """Index ``studies``; ``uid_alias`` maps an original UID to the one a de-identified study stores."""
        self._uid_alias = uid_alias
        self._by_uid: dict[str, int] = {}
        self._by_accession: dict[str, list[int]] = defaultdict(list)
        self._by_patient: dict[str, list[tuple[date, int]]] = defaultdict(list)
        for s in studies:
            self._by_uid[s.study_uid] = s.study_id
            if s.accession:
                self._by_accession[s.accession].append(s.study_id)
            if s.patient and s.study_date is not None:
                self._by_patient[s.patient].append((s.study_date, s.study_id))

    def by_uid(self, study_uid: str) -> int | None:
        """The study with this StudyInstanceUID, or with its alias (a study de-identified at ingest)."""
        found = self._by_uid.get(study_uid)
        if found is None and self._uid_alias is not None:
            found = self._by_uid.get(self._uid_alias(study_uid))
        return found

    def by_accession(self, accession: str) -> Sequence[int]:
        """Studies with this accession hash (normally one)."""
        return self._by_accession.get(accession, ())

    def by_patient(self, patient: str) -> Sequence[tuple[date, int]]:
        """``(study_date, study_id)`` of the patient's dated studies."""
        return self._by_patient.get(patient, ())


def link(target: LinkTarget, index: StudyIndex) -> Link:
    """Find the study that ``target`` is evidence about (see the module docstring for the rules)."""
    if target.study_uid:
        found = index.by_uid(target.study_uid)
        if found is not None:
            return Link(found, LinkMethod.STUDY_UID)
    ambiguous = False
    if target.accession:
        matches = index.by_accession(target.accession)
        if len(matches) == 1:
            return Link(matches[0], LinkMethod.ACCESSION)
        ambiguous = len(matches) > 1
    if target.patient and target.effective is not None:
        chosen = _nearest_earlier(index.by_patient(target.patient), target.effective)
        if isinstance(chosen, int):
            return Link(chosen, LinkMethod.PATIENT_DATE)
        ambiguous = ambiguous or chosen == "ambiguous"
    return Link(None, None, ambiguous)


def _nearest_earlier(studies: Sequence[tuple[date, int]], effective: date) -> int | str | None:
    """The study nearest before ``effective`` within the window, ``"ambiguous"`` on a tie, else None."""
    eligible = [(d, sid) for d, sid in studies if d <= effective <= d + WINDOW]
    if not eligible:
        return None
    latest = max(d for d, _ in eligible)
    on_latest = [sid for d, sid in eligible if d == latest]
    return on_latest[0] if len(on_latest) == 1 else "ambiguous"
