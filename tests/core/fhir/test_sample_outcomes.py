"""The committed sample outcomes through Vigil's FHIR reader: they parse cleanly and say what the cohort holds.

``sample_data/outcomes/`` is written by ``core.sampledata.fhir_outcomes`` (SYNTHETIC). Read with
``core.fhir.parse_payload`` and ``core.fhir.extract`` and linked to the manifest's studies the way
the store links them (StudyInstanceUID, then accession, then patient and date, compared as keyed
pseudonyms), the strongest evidence of each study must say what the generator planned for it, and
agree with the ground truth for at least 90% of the studies it covers (the rest are the planted
conflicts).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.fhir import Evidence, Extraction, Outcome, extract, load_mapping, parse_payload, pseudonym
from core.fhir.notes import read_note
from core.sampledata import ManifestRow, read_manifest
from core.sampledata.fhir_outcomes import AFFIRMED, BULK_NOTES_NAME, NEGATED, UNCERTAIN, build_outcomes

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "sample_data"
OUTCOMES = SAMPLE / "outcomes"
SECRET = b"test-site-secret-0123456789abcdef"
#: How long after its study an outcome may be and still link by patient and date.
WINDOW = timedelta(days=365)


def _files() -> list[Path]:
    return sorted(OUTCOMES.glob("*.json")) + [OUTCOMES / BULK_NOTES_NAME]


@pytest.fixture(scope="module")
def rows() -> list[ManifestRow]:
    return read_manifest(SAMPLE / "manifest.csv")


@pytest.fixture(scope="module")
def extractions() -> dict[str, Extraction]:
    mapping = load_mapping()
    out: dict[str, Extraction] = {}
    for path in _files():
        parsed = parse_payload(path.read_bytes(), name=path.name)
        assert parsed.errors == (), path.name
        out[path.name] = extract(parsed, secret=SECRET, mapping=mapping)
    return out


def _link(ev: Evidence, rows: list[ManifestRow]) -> ManifestRow | None:
    """The study a piece of evidence is about: by UID, then accession, then patient and date."""
    for row in rows:
        if ev.study_uid is not None and ev.study_uid == row.study_uid:
            return row
    for row in rows:
        if ev.accession is not None and ev.accession == pseudonym(SECRET, "accession", row.accession_number):
            return row
    candidates = [
        row
        for row in rows
        if ev.patient == pseudonym(SECRET, "patient", row.patient_id)
        and ev.effective is not None
        and date.fromisoformat(row.study_date) <= ev.effective <= date.fromisoformat(row.study_date) + WINDOW
    ]
    return max(candidates, key=lambda r: r.study_date) if candidates else None


def _decide(evidence: list[Evidence]) -> Outcome:
    """The strongest evidence decides; equally strong evidence that disagrees is indeterminate."""
    top = max(e.evidence_type.strength for e in evidence)
    said = {e.outcome for e in evidence if e.evidence_type.strength == top}
    return said.pop() if len(said) == 1 else Outcome.INDETERMINATE


def test_committed_outcomes_are_what_the_generator_writes(rows: list[ManifestRow], tmp_path: Path) -> None:
    # Prepare
    from core.sampledata.fhir_outcomes import write_outcomes

    # Execute
    write_outcomes(tmp_path, rows, seed=0)
    # Assert: regenerating from the committed manifest gives the committed bytes, each file under 1 MB
    for path in [*_files(), OUTCOMES / "README.md"]:
        rel = path.relative_to(OUTCOMES)
        assert path.read_bytes() == (tmp_path / "outcomes" / rel).read_bytes(), rel
        assert path.stat().st_size < 1_000_000, rel


def test_every_resource_parses_and_extracts_without_error(extractions: dict[str, Extraction]) -> None:
    # Assert
    for name, x in extractions.items():
        assert x.errors == (), name
        assert x.evidence, name
    unmapped = {(u.system, u.code) for x in extractions.values() for u in x.unmapped}
    assert unmapped == {("http://loinc.org", "2345-7"), ("http://loinc.org", "718-7")}


def test_extracted_outcomes_follow_the_plan_and_the_ground_truth(
    rows: list[ManifestRow], extractions: dict[str, Extraction]
) -> None:
    # Prepare
    deployment = [r for r in rows if not r.is_benchmark]
    plans = {p.study_uid: p for p in build_outcomes(rows, seed=0).plans}
    by_study: dict[str, list[Evidence]] = defaultdict(list)
    unlinked = 0
    for x in extractions.values():
        for ev in x.evidence:
            row = _link(ev, deployment)
            if row is None:
                unlinked += 1
            else:
                by_study[row.study_uid].append(ev)
    # Execute
    decided = {uid: _decide(evs) for uid, evs in by_study.items()}
    # Assert: every planned study is covered, nothing else is, and each says what was planned
    assert unlinked == 0
    assert set(decided) == {uid for uid, p in plans.items() if p.expected is not None}
    assert {uid: o.value for uid, o in decided.items()} == {uid: plans[uid].expected for uid in decided}
    truth = {r.study_uid: Outcome.CONFIRMED if r.label else Outcome.EXCLUDED for r in deployment}
    agree = sum(decided[uid] is truth[uid] for uid in decided) / len(decided)
    assert agree >= 0.9
    assert agree < 1.0  # the planted conflicts are there too
    assert len(decided) / len(deployment) >= 0.8


def test_each_planted_sentence_reads_as_planted() -> None:
    # Assert: the templates the generator writes notes and reports with, in every lobe
    lobes = ("right upper lobe", "left lower lobe")
    for templates, expected in (
        (AFFIRMED, Outcome.CONFIRMED),
        (NEGATED, Outcome.EXCLUDED),
        (UNCERTAIN, Outcome.INDETERMINATE),
    ):
        for template in templates:
            for lobe in lobes:
                text = template.format(d=6, lobe=lobe)
                reading = read_note(text)
                assert reading is not None and reading.outcome is expected, text
