"""The EMR tables: ingest runs, evidence and its links, patients, unmapped codes and pull marks round-trip."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from core.store import emr
from core.store.emr import EvidenceIn, PatientIn, RunIn, UnmappedIn
from core.store.engine import SessionFactory
from tests.core.store.conftest import Seeded

RUN = RunIn(
    source_name="outcomes/north.json",
    payload_sha256="f" * 64,
    kind="collection",
    mapping_version="1",
    n_entries=12,
    n_accepted=11,
    n_rejected=1,
    n_unmapped=2,
    n_evidence=3,
    n_linked=2,
    n_outcomes=2,
    actor="t",
)


def _evidence(n: int, *, version: str = "1", outcome: str = "finding_confirmed") -> EvidenceIn:
    return EvidenceIn(
        ref=f"DiagnosticReport/{n:032x}",
        version=version,
        patient="a" * 32,
        study_uid=None,
        accession="b" * 32,
        effective=date(2024, 6, 1),
        outcome=outcome,
        evidence_type="histopathology",
        strength=4,
        code="http://snomed.info/sct|363358000",
        display="Malignant tumor of lung",
        text="",
    )


def test_run_and_evidence_round_trip_with_links(session_factory: SessionFactory, seeded: Seeded, now: datetime) -> None:
    # Prepare
    study_id = _study_id(session_factory, seeded)

    # Execute
    with session_factory.begin() as session:
        run_id = emr.add_run(session, RUN, now=now)
        emr.add_evidence(
            session,
            [(_evidence(1), study_id, "accession"), (_evidence(2), None, "")],
            ingest_run_id=run_id,
            now=now,
        )
    with session_factory() as session:
        runs = emr.list_runs(session)
        stored = emr.list_evidence(session)
        waiting = emr.list_evidence(session, unlinked_only=True)
        seen = emr.payload_seen(session, RUN.payload_sha256)

    # Assert
    assert [(r.id, r.run, r.started_at) for r in runs] == [(run_id, RUN, now)]
    assert [s.evidence for s in stored] == [_evidence(1), _evidence(2)]
    assert (stored[0].study_id, stored[0].link_method, stored[0].site) == (study_id, "accession", "north")
    assert [w.evidence for w in waiting] == [_evidence(2)]
    assert seen


def test_a_resource_version_is_stored_once_and_a_new_version_is_new(
    session_factory: SessionFactory, now: datetime
) -> None:
    # Prepare
    with session_factory.begin() as session:
        run_id = emr.add_run(session, RUN, now=now)
        emr.add_evidence(session, [(_evidence(1), None, "")], ingest_run_id=run_id, now=now)

    # Execute
    with session_factory() as session:
        known = emr.stored_evidence_keys(session, [(_evidence(1).ref, "1"), (_evidence(1).ref, "2")])
    with session_factory.begin() as session:
        emr.add_evidence(session, [(_evidence(1, version="2"), None, "")], ingest_run_id=run_id, now=now)

    # Assert
    assert known == {(_evidence(1).ref, "1")}
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        emr.add_evidence(session, [(_evidence(1), None, "")], ingest_run_id=run_id, now=now)


def test_a_link_is_made_once_and_never_moved(session_factory: SessionFactory, seeded: Seeded, now: datetime) -> None:
    # Prepare
    study_id = _study_id(session_factory, seeded)
    with session_factory.begin() as session:
        run_id = emr.add_run(session, RUN, now=now)
        emr.add_evidence(session, [(_evidence(1), None, "")], ingest_run_id=run_id, now=now)
        evidence_id = emr.list_evidence(session)[0].id

    # Execute
    with session_factory.begin() as session:
        first = emr.set_links(session, [(evidence_id, study_id, "patient_date")])
        second = emr.set_links(session, [(evidence_id, study_id + 1, "accession")])

    # Assert
    with session_factory() as session:
        (stored,) = emr.list_evidence(session)
    assert (first, second) == (1, 0)
    assert (stored.study_id, stored.link_method) == (study_id, "patient_date")


def test_unknown_outcome_or_link_method_is_refused_by_the_schema(
    session_factory: SessionFactory, now: datetime
) -> None:
    with session_factory.begin() as session:
        run_id = emr.add_run(session, RUN, now=now)
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        emr.add_evidence(session, [(_evidence(1, outcome="maybe"), None, "")], ingest_run_id=run_id, now=now)
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        emr.add_evidence(session, [(_evidence(2), None, "guess")], ingest_run_id=run_id, now=now)


def test_patients_are_kept_by_pseudonym(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        emr.add_patients(session, [PatientIn("p" * 32, "female", "90+"), PatientIn("q" * 32, "male", "50-59")], now=now)
    with session_factory() as session:
        stored = emr.stored_patients(session, ["p" * 32, "z" * 32])
        count = emr.count_patients(session)

    # Assert
    assert (stored, count) == ({"p" * 32}, 2)


def test_unmapped_codes_add_up_and_list_most_frequent_first(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    glucose = UnmappedIn("http://loinc.org", "2345-7", "Observation", 2)
    hemoglobin = UnmappedIn("http://loinc.org", "718-7", "Observation", 1)
    later = now + timedelta(days=1)

    # Execute
    with session_factory.begin() as session:
        emr.add_unmapped(session, [glucose, hemoglobin], now=now)
    with session_factory.begin() as session:
        emr.add_unmapped(session, [hemoglobin, hemoglobin], now=later)
    with session_factory() as session:
        listed = emr.list_unmapped(session)

    # Assert
    assert [(u.code, u.count, u.first_seen, u.last_seen) for u in listed] == [
        ("718-7", 3, now, later),
        ("2345-7", 2, now, now),
    ]


def test_pull_marks_are_per_server_and_type_and_move_forward(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        before = emr.get_pull_mark(session, "https://emr.example.org/fhir", "Observation")
        emr.set_pull_mark(session, "https://emr.example.org/fhir", "Observation", "2024-05-01T00:00:00Z", now=now)
        emr.set_pull_mark(session, "https://emr.example.org/fhir", "Condition", "2024-04-01T00:00:00Z", now=now)
    with session_factory.begin() as session:
        emr.set_pull_mark(session, "https://emr.example.org/fhir", "Observation", "2024-06-01T00:00:00Z", now=now)
    with session_factory() as session:
        observation = emr.get_pull_mark(session, "https://emr.example.org/fhir", "Observation")
        condition = emr.get_pull_mark(session, "https://emr.example.org/fhir", "Condition")
        other = emr.get_pull_mark(session, "https://other.example.org/fhir", "Observation")

    # Assert
    assert (before, observation, condition, other) == (
        None,
        "2024-06-01T00:00:00Z",
        "2024-04-01T00:00:00Z",
        None,
    )


def test_link_candidates_carry_what_linkage_compares(session_factory: SessionFactory, seeded: Seeded) -> None:
    # Execute
    with session_factory() as session:
        candidates = emr.link_candidates(session)

    # Assert
    assert [(c.site, c.patient_id, c.accession_number, c.study_date) for c in candidates] == [
        ("north", "PAT001", "ACC001", date(2024, 4, 30)),
        ("north", "PAT001", "ACC001", date(2024, 4, 30)),
        ("south", "PAT001", "ACC001", date(2024, 4, 30)),
    ]


def _study_id(session_factory: SessionFactory, seeded: Seeded) -> int:
    with session_factory() as session:
        return emr.link_candidates(session)[0].study_id
