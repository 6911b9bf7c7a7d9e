"""The notes reader: affirmed, negated, uncertain, historical and conflicting mentions of a lung nodule."""

from __future__ import annotations

import random
import re
import threading

import pytest

from core.fhir import notes as notes_module
from core.fhir.notes import CHUNK_CHARS, NoteReading, _chunks, read_note
from core.fhir.vocabulary import Outcome

C, E, U = Outcome.CONFIRMED, Outcome.EXCLUDED, Outcome.INDETERMINATE

# (note text, expected outcome); sentences written the way radiology reports and clinic notes say them.
TABLE = [
    # affirmed
    ("There is a 7 mm solid nodule in the right upper lobe.", C),
    ("IMPRESSION: Spiculated pulmonary nodule, left upper lobe.", C),
    ("8 mm lung nodule in the RLL, recommend CT in 3 months.", C),
    ("Core biopsy: invasive adenocarcinoma of the lung.", C),
    ("Nodular opacity in the right lower lobe.", C),
    ("Right upper lobe lung mass with hilar adenopathy.", C),
    # a hedge on what the nodule is, not on whether it is there
    ("Likely benign 4 mm nodule in the right upper lobe.", C),
    ("Nodule likely represents a granuloma.", C),
    # pseudo-negations: the phrase has a negation word but affirms the nodule
    ("No change in the right upper lobe nodule compared with prior.", C),
    ("No interval change in the 6 mm pulmonary nodule.", C),
    ("Stable pulmonary nodule, not changed since the prior study.", C),
    ("No significant change in size of the left lower lobe nodule.", C),
    # "no other / no new" speaks of other nodules and does not deny the reported one
    ("There is a 6 mm nodule in the RUL.\nNo other nodules.", C),
    ("No new nodule; the known 6 mm nodule is stable.", C),
    # negated
    ("No evidence of pulmonary nodule.", E),
    ("Lungs are clear without pulmonary nodule or mass.", E),
    ("Negative for nodule.", E),
    ("Pulmonary nodule was ruled out on follow-up CT.", E),
    ("The questioned nodule was not seen on the follow-up CT.", E),
    ("No suspicious pulmonary nodule. Calcified granuloma in the left upper lobe.", E),
    ("Absence of lung nodules on today's CT.", E),
    ("The previously described nodule has resolved.", E),
    # uncertain
    ("Possible 5 mm nodule in the left lower lobe.", U),
    ("A small nodule in the left upper lobe cannot be excluded.", U),
    ("Cannot exclude a small pulmonary nodule.", U),
    ("Nodular opacity may represent overlapping vessels versus a true nodule.", U),
    ("CT chest to rule out pulmonary nodule.", U),
    ("Questionable nodule at the right lung base.", U),
    ("Findings are suspicious for lung cancer.", U),
    # historical
    ("History of lung nodule, resected in 2019.", U),
    ("h/o lung cancer, treated with lobectomy.", U),
    # conflicting mentions within one note
    ("Spiculated nodule in the right upper lobe. No pulmonary nodule is seen.", U),
    ("FINDINGS: 8 mm nodule in the RLL.\nIMPRESSION: No evidence of pulmonary nodule.", U),
]

NO_MENTION = [
    "Lungs are clear. Heart size is normal.",
    "Thyroid nodule noted on the neck ultrasound.",
    "Body mass index 31; counselled on weight loss.",
    "Calcified granuloma in the left upper lobe.",
    "Biopsy negative for malignancy.",
    "",
    "   \n\n  ",
    "No other nodules.",
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[t for t, _ in TABLE])
def test_reads_each_sentence_as_a_clinician_would(text: str, expected: Outcome) -> None:
    # Execute
    reading = read_note(text)
    # Assert
    assert reading is not None
    assert reading.outcome is expected


@pytest.mark.parametrize("text", NO_MENTION)
def test_text_without_a_target_finding_reads_as_none(text: str) -> None:
    # Execute / Assert
    assert read_note(text) is None


def test_sentences_are_the_deciding_ones_verbatim() -> None:
    # Prepare: a note in lines, with a header that names nothing
    note = (
        "PROGRESS NOTE\nPatient: Alex Testperson  MRN: PI0000001\n"
        "Reason for visit: follow-up of the chest radiograph.\n"
        "Assessment: There is a 9 mm solid nodule in the left upper lobe.\n"
        "Plan: Recommend follow-up CT chest in 3 months."
    )
    # Execute
    reading = read_note(note)
    # Assert
    assert reading == NoteReading(C, ("Assessment: There is a 9 mm solid nodule in the left upper lobe.",))
    assert all(s in note for s in reading.sentences)


def test_conflict_returns_both_sentences_in_note_order() -> None:
    # Prepare
    note = "Spiculated nodule in the right upper lobe. No pulmonary nodule is seen."
    # Execute
    reading = read_note(note)
    # Assert
    assert reading is not None
    assert reading.sentences == ("Spiculated nodule in the right upper lobe.", "No pulmonary nodule is seen.")


def test_a_certain_mention_decides_over_a_hedged_one() -> None:
    # Prepare: history and a current finding in one note
    note = "History of lung cancer, resected in 2015. There is a new 7 mm nodule in the right lower lobe."
    # Execute
    reading = read_note(note)
    # Assert
    assert reading is not None
    assert reading.outcome is C
    assert reading.sentences == ("There is a new 7 mm nodule in the right lower lobe.",)


def test_the_pipeline_is_shared_and_safe_to_call_from_threads() -> None:
    # Prepare
    results: list[NoteReading | None] = []
    texts = [t for t, _ in TABLE] * 3

    def work(chunk: list[str]) -> None:
        results.extend(read_note(t) for t in chunk)

    threads = [threading.Thread(target=work, args=(texts[i::4],)) for i in range(4)]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Assert: the same readings as one thread gives
    assert sorted(str(r) for r in results) == sorted(str(read_note(t)) for t in texts)


def test_a_note_longer_than_one_piece_is_read_whole() -> None:
    # Prepare: a nodule mentioned after more than one piece's worth of unrelated lines
    filler = "Heart size is normal and the mediastinum is unremarkable.\n" * (CHUNK_CHARS // 57 + 10)
    note = filler + "There is a 7 mm nodule in the left lower lobe."
    # Execute
    reading = read_note(note)
    # Assert
    assert len(filler) > CHUNK_CHARS
    assert reading == NoteReading(C, ("There is a 7 mm nodule in the left lower lobe.",))


def test_long_text_is_cut_at_line_ends_and_else_at_the_limit() -> None:
    # Prepare
    text = "ab\ncd\nefghijkl\nm"
    # Execute
    pieces = _chunks(text, limit=5)
    # Assert: nothing lost, no piece over the limit, cuts after a line end where one is in reach
    assert "".join(pieces) == text
    assert pieces == ["ab\n", "cd\n", "efghi", "jkl\nm"]


def test_leaving_out_lines_without_a_candidate_word_changes_no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    # Notes of several lines mixing findings, denials, hedges and lines with no target at all, read
    # with the line filter and with every line sent to spaCy (a pattern that matches any line).
    lines = [text for text, _ in TABLE] + NO_MENTION + ["Heart size normal", "", "IMPRESSION:", "  Dr. note;"]
    rng = random.Random(13)
    notes = ["\n".join(rng.sample(lines, rng.randint(1, 6))) for _ in range(300)]
    filtered = [read_note(note) for note in notes]
    monkeypatch.setattr(notes_module, "_CANDIDATE_LINE", re.compile(""))
    assert [read_note(note) for note in notes] == filtered
    assert {r.outcome for r in filtered if r is not None} == set(Outcome)
