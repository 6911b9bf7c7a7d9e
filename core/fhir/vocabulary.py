"""What an EMR outcome says about the finding, and how strong the evidence behind it is."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EvidenceType", "Outcome"]


class Outcome(StrEnum):
    """What a piece of EMR evidence says about the finding (a pulmonary nodule) on the study."""

    CONFIRMED = "finding_confirmed"
    EXCLUDED = "finding_excluded"
    INDETERMINATE = "indeterminate"


class EvidenceType(StrEnum):
    """The kind of clinical evidence an outcome rests on, strongest first.

    The order follows the usual reference-standard hierarchy for lung nodules: tissue diagnosis
    over imaging follow-up over a coded diagnosis over a mention in a note.
    """

    HISTOPATHOLOGY = "histopathology"
    FOLLOW_UP_IMAGING = "follow_up_imaging"
    CLINICAL_DIAGNOSIS = "clinical_diagnosis"
    NOTE_MENTION = "note_mention"

    @property
    def strength(self) -> int:
        """4 for histopathology down to 1 for a note mention; higher wins a conflict."""
        return _STRENGTH[self]


_STRENGTH = {
    EvidenceType.HISTOPATHOLOGY: 4,
    EvidenceType.FOLLOW_UP_IMAGING: 3,
    EvidenceType.CLINICAL_DIAGNOSIS: 2,
    EvidenceType.NOTE_MENTION: 1,
}
