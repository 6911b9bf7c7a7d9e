"""Read a clinical note for what it says about a pulmonary nodule: affirmed, negated or uncertain.

A rule-based pipeline, no statistical model (nothing is downloaded at run time): spaCy's blank
English tokenizer, a rule-based sentence splitter that also breaks at line ends (notes are written
in lines and lists as often as in sentences), an ``EntityRuler`` that marks the target phrases, and
negspacy's NegEx run four times over the same mentions, each with its own termset and extension:

========================  ==========================================================================
extension                 a mention is ...
========================  ==========================================================================
``vigil_negated``         denied: "no evidence of pulmonary nodule", "negative for nodule", "without"
``vigil_uncertain``       hedged: "possible nodule", "cannot exclude a nodule", "may represent"
``vigil_historical``      about the past, not this episode: "history of lung nodule"
``vigil_other``           about *other* nodules: "no other nodules", "no new nodules"
========================  ==========================================================================

The note's reading (:func:`read_note`) follows from the mentions that count: a mention about
other nodules counts for nothing (it neither affirms nor denies the one reported); uncertain or
historical mentions make the note indeterminate unless a current, certain mention decides;
affirmed mentions alone confirm, negated mentions alone exclude, and both together (a note that
contradicts itself, or describes two findings) are indeterminate: a note never outranks a coded
result, so when it cannot be read one way it says so rather than guessing.

Target phrases, and why: the finding Vigil's models detect is a pulmonary nodule. "nodule" and its
lung-qualified forms, "nodular opacity/density" and lung "mass" (a nodule over 3 cm) name it; lung
cancer names (carcinoma, adenocarcinoma, NSCLC) affirm a malignant nodule. Left out on purpose:
bare "lesion" and "opacity" (a skin lesion, a bone lesion, consolidation and atelectasis are not
nodules), "granuloma" (a calcified granuloma is a benign distractor the cohort plants in negative
studies, not the finding) and "malignancy" (a benign biopsy says "negative for malignancy" of a
nodule that is there).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from core.fhir.vocabulary import Outcome

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

__all__ = ["NoteReading", "read_note"]

_LABEL: Final = "LUNG_NODULE"
_OTHER_LABEL: Final = "OTHER_FINDING"

#: Phrases naming the finding (matched case-insensitively, token by token).
TARGET_PHRASES: Final = (
    "nodule",
    "nodules",
    "pulmonary nodule",
    "pulmonary nodules",
    "lung nodule",
    "lung nodules",
    "nodular opacity",
    "nodular opacities",
    "nodular density",
    "nodular densities",
    "mass",
    "masses",
    "lung mass",
    "pulmonary mass",
    "lung lesion",
    "pulmonary lesion",
    "lung cancer",
    "lung carcinoma",
    "bronchogenic carcinoma",
    "carcinoma",
    "adenocarcinoma",
    "squamous cell carcinoma",
    "non-small cell lung cancer",
    "nsclc",
)

#: A line that can hold a target phrase holds its last word (the ruler matches whole lower-cased
#: tokens, so a substring search over-selects, never misses).
_CANDIDATE_LINE: Final = re.compile("|".join(sorted({re.escape(p.split()[-1]) for p in TARGET_PHRASES})), re.I)

# Negation: negspacy's en_clinical termset with changes for radiology. Dropped: "rule out", "r/o",
# "evaluate for" and "versus" are orders and differentials (uncertain, see below), not denials, and
# "ro" is a word fragment that would negate too much. Added: hedges that contain a negation word
# ("cannot exclude") and stability phrases ("not changed") as pseudo-negations, so that NegEx does
# not read them as denials; the ways radiology reports deny or resolve a finding; ";" as a boundary.
_NEGATION_DROP: Final = {
    "preceding_negations": (
        "rule out",
        "rules out",
        "rule him out",
        "rule her out",
        "rule patient out",
        "rule the patient out",
        "r/o",
        "ro",
        "evaluate for",
        "versus",
    ),
}
_NEGATION_ADD: Final = {
    "pseudo_negations": (
        "no interval growth",
        "no growth",
        "not changed",
        "not significantly changed",
        "without change",
        "without interval change",
        "without significant change",
        "cannot exclude",
        "can not exclude",
        "can't exclude",
        "cannot be excluded",
        "can not be excluded",
        "not excluded",
        "cannot rule out",
        "can not rule out",
        "can't rule out",
        "cannot be ruled out",
        "can not be ruled out",
    ),
    "preceding_negations": (
        "no radiographic evidence of",
        "no ct evidence of",
        "resolution of",
        "resolved",
        "has been ruled out",
    ),
    "following_negations": (
        "is ruled out",
        "has resolved",
        "have resolved",
        "resolved",
        "is absent",
        "are absent",
        "not seen",
        "not identified",
        "not visualized",
    ),
    "termination": (";",),
}

_UNCERTAINTY: Final = {
    # A hedge on what a nodule is, not on whether it is there: "likely benign nodule" affirms it.
    "pseudo_negations": [
        "no doubt",
        "without doubt",
        "likely benign",
        "probably benign",
        "most likely benign",
        "likely calcified",
        "possibly benign",
    ],
    "preceding_negations": [
        "possible",
        "possibly",
        "probable",
        "probably",
        "likely",
        "may represent",
        "might represent",
        "could represent",
        "may be",
        "could be",
        "questionable",
        "question of",
        "suspicious for",
        "suspected",
        "suspect",
        "concern for",
        "concerning for",
        "worrisome for",
        "equivocal",
        "indeterminate",
        "cannot exclude",
        "can not exclude",
        "can't exclude",
        "cannot rule out",
        "can not rule out",
        "can't rule out",
        "rule out",
        "r/o",
        "evaluate for",
        "to exclude",
        "versus",
        "vs",
        "vs.",
        "differential includes",
        "?",
    ],
    "following_negations": [
        "cannot be excluded",
        "can not be excluded",
        "not excluded",
        "cannot be ruled out",
        "can not be ruled out",
        "not ruled out",
        "is suspected",
        "are suspected",
        "is possible",
        "is questionable",
        "versus",
        "vs",
        "vs.",
        "?",
    ],
    "termination": ["but", "however", "although", "though", "which", "yet", ";"],
}

_HISTORY: Final = {
    "pseudo_negations": [],
    "preceding_negations": [
        "history of",
        "h/o",
        "hx of",
        "past medical history",
        "pmh",
        "previously resected",
        "status post resection of",
        "s/p resection of",
        "treated for",
        "remote",
    ],
    "following_negations": ["in the past", "years ago", "previously resected"],
    "termination": ["but", "however", "now", "currently", "today", ";"],
}

# "No other nodules" after a reported nodule speaks of the other ones; it must not contradict it.
_OTHER: Final = {
    "pseudo_negations": [],
    "preceding_negations": [
        "no other",
        "no new",
        "no additional",
        "no further",
        "no more",
        "no second",
        "no other suspicious",
        "without other",
        "without new",
        "without additional",
    ],
    "following_negations": [],
    "termination": ["but", "however", "although", "though", "which", "yet", ";"],
}

#: Findings that share a word with a target but are not a lung nodule; matched (longest match wins)
#: under another label so that "thyroid nodule" or "body mass index" never reads as the finding.
NON_TARGET_PHRASES: Final = (
    "thyroid nodule",
    "thyroid nodules",
    "breast nodule",
    "breast mass",
    "breast lesion",
    "breast cancer",
    "breast carcinoma",
    "adrenal nodule",
    "adrenal mass",
    "hepatic nodule",
    "liver lesion",
    "liver mass",
    "renal mass",
    "kidney mass",
    "skin lesion",
    "skin nodule",
    "subcutaneous nodule",
    "rheumatoid nodule",
    "vocal cord nodule",
    "body mass index",
    "mass effect",
    "muscle mass",
    "bone mass",
    "colon cancer",
    "prostate cancer",
    "prostate carcinoma",
    "renal cell carcinoma",
    "hepatocellular carcinoma",
    "basal cell carcinoma",
)

_NEGATED: Final = "vigil_negated"
_UNCERTAIN: Final = "vigil_uncertain"
_HISTORICAL: Final = "vigil_historical"
_OTHERS: Final = "vigil_other"


@dataclass(frozen=True, slots=True)
class NoteReading:
    """What one note says about the finding.

    Attributes
    ----------
    outcome : Outcome
        CONFIRMED for affirmed mentions only, EXCLUDED for negated mentions only, INDETERMINATE for
        uncertain, historical-only or conflicting mentions.
    sentences : tuple of str
        The sentence(s) holding the deciding mention(s), verbatim (not yet de-identified), in note order.
    """

    outcome: Outcome
    sentences: tuple[str, ...]


#: Longest piece of a note handed to spaCy at once (it refuses texts over ``nlp.max_length``, 10**6
#: characters, and its memory grows with the text); longer notes are read in pieces cut at line ends.
CHUNK_CHARS: Final = 100_000

_lock: Final = threading.Lock()
_pipeline: Language | None = None


def _line_breaks(doc: Doc) -> Doc:
    """Start a sentence after every line break: notes list findings one per line, often unpunctuated."""
    for i in range(1, len(doc)):
        if "\n" in doc[i - 1].text_with_ws and not doc[i].is_space:
            doc[i].is_sent_start = True
    return doc


def _edited(
    base: Mapping[str, Sequence[str]], *, drop: Mapping[str, Sequence[str]], add: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """A copy of termset ``base`` without ``drop`` and with ``add`` (negspacy's own editor mutates its globals)."""
    return {
        key: [t for t in terms if t not in drop.get(key, ())] + [t for t in add.get(key, ()) if t not in terms]
        for key, terms in base.items()
    }


def _build() -> Language:
    # spaCy and negspacy load here, on first use: importing them takes seconds, which every command
    # and page that imports core.fhir would otherwise pay whether it reads a note or not.
    import negspacy.negation  # noqa: F401 - registers the "negex" factory
    import spacy
    from negspacy.termsets import LANGUAGES
    from spacy.language import Language

    if "vigil_line_breaks" not in Language.factories:
        Language.component("vigil_line_breaks", func=_line_breaks)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("vigil_line_breaks")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    patterns = [{"label": _LABEL, "pattern": p} for p in TARGET_PHRASES]
    patterns += [{"label": _OTHER_LABEL, "pattern": p} for p in NON_TARGET_PHRASES]
    ruler.add_patterns(patterns)  # type: ignore[attr-defined]
    negation = _edited(LANGUAGES["en_clinical"], drop=_NEGATION_DROP, add=_NEGATION_ADD)
    for name, extension, termset in (
        ("vigil_negex", _NEGATED, negation),
        ("vigil_uncertainty", _UNCERTAIN, _UNCERTAINTY),
        ("vigil_history", _HISTORICAL, _HISTORY),
        ("vigil_other", _OTHERS, _OTHER),
    ):
        nlp.add_pipe(
            "negex", name=name, config={"neg_termset": termset, "ent_types": [_LABEL], "extension_name": extension}
        )
    return nlp


def _nlp() -> Language:
    """The pipeline, built once per process (Streamlit sessions share it; it holds no per-call state)."""
    global _pipeline  # noqa: PLW0603 - a process-wide cache, guarded by the lock
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                _pipeline = _build()
    return _pipeline


def _kind(mention: Span) -> str:
    """One of "other", "uncertain", "historical", "negated", "affirmed"; the first that applies wins."""
    if getattr(mention._, _OTHERS):
        return "other"
    if getattr(mention._, _UNCERTAIN):
        return "uncertain"
    if getattr(mention._, _HISTORICAL):
        return "historical"
    if getattr(mention._, _NEGATED):
        return "negated"
    return "affirmed"


def _chunks(text: str, limit: int = CHUNK_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters, at line ends where there are any."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit) + 1 or limit
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def _sentences(mentions: list[Span]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.sent.text.strip() for m in mentions))


def read_note(text: str) -> NoteReading | None:
    """Read a note for the finding.

    Parameters
    ----------
    text : str
        The note's plain text.

    Returns
    -------
    NoteReading or None
        None when the text names no target finding (or names only *other* nodules).

    Examples
    --------
    >>> read_note("No evidence of pulmonary nodule.").outcome
    <Outcome.EXCLUDED: 'finding_excluded'>
    """
    # Every sentence starts on a line of its own (``_line_breaks``) and NegEx looks no further than
    # the sentence, so the lines that cannot hold a target phrase change nothing: leave them out
    # of spaCy (most of a note; this is most of the cost of reading one).
    candidates = "\n".join(line for line in text.split("\n") if _CANDIDATE_LINE.search(line))
    if not candidates:
        return None
    # (kind, mention) in note order, over the pieces of a long note.
    mentions = [
        (_kind(span), span) for doc in _nlp().pipe(_chunks(candidates)) for span in doc.ents if span.label_ == _LABEL
    ]
    kinds = {kind for kind, _ in mentions}

    def of(*wanted: str) -> tuple[str, ...]:
        return _sentences([span for kind, span in mentions if kind in wanted])

    if {"affirmed", "negated"} <= kinds:
        return NoteReading(Outcome.INDETERMINATE, of("affirmed", "negated"))
    if "affirmed" in kinds:
        return NoteReading(Outcome.CONFIRMED, of("affirmed"))
    if "negated" in kinds:
        return NoteReading(Outcome.EXCLUDED, of("negated"))
    if kinds & {"uncertain", "historical"}:
        return NoteReading(Outcome.INDETERMINATE, of("uncertain", "historical"))
    return None
