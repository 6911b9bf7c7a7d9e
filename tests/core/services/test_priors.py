"""A case's prior study: same patient, same site, strictly earlier date, most recent first.

The pure rule (``select_priors``) case by case, then the service over a real store: a patient
with studies at two sites, on the same day, without a date, and a study with no PatientID.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.errors import BadInputError, PermissionDeniedError, UnknownStudyError
from core.services.permissions import Role, SignedInUser
from core.services.priors import PriorCandidate, prior_studies, select_priors
from core.store import sites, studies
from core.store.engine import SessionFactory
from tests.core.store.conftest import instance_in, study_in

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _c(uid: str, day: date | None, order: int) -> PriorCandidate:
    return PriorCandidate(uid, f"ACC-{uid}", day, order)


CURRENT = _c("now", date(2026, 3, 10), 10)


def test_the_most_recent_earlier_study_is_the_prior() -> None:
    # Prepare
    candidates = [_c("2024", date(2024, 5, 1), 1), _c("2025", date(2025, 9, 2), 2), CURRENT]

    # Execute / Assert: the current study itself is never its own prior
    assert [p.study_uid for p in select_priors(CURRENT, candidates)] == ["2025"]
    assert [p.study_uid for p in select_priors(CURRENT, candidates, limit=5)] == ["2025", "2024"]


def test_a_study_the_same_day_or_later_is_not_a_prior() -> None:
    # The same day may be the same visit and cannot be ordered without a time of day.
    candidates = [_c("same-day", CURRENT.study_date, 11), _c("later", date(2026, 4, 1), 12)]
    assert select_priors(CURRENT, candidates, limit=3) == ()


def test_without_a_date_there_is_no_prior() -> None:
    # Prepare
    undated_current = _c("undated", None, 20)
    candidates = [_c("undated-old", None, 1), _c("dated", date(2025, 1, 1), 2)]

    # Execute / Assert: an undated candidate is never a prior; an undated case has none
    assert [p.study_uid for p in select_priors(CURRENT, candidates, limit=3)] == ["dated"]
    assert select_priors(undated_current, candidates, limit=3) == ()


def test_on_the_same_day_the_study_stored_later_wins_then_the_smaller_uid() -> None:
    # Prepare
    day = date(2025, 6, 1)
    candidates = [_c("b", day, 3), _c("a", day, 3), _c("first-stored", day, 1), _c("late", day, 7)]

    # Execute
    chosen = select_priors(CURRENT, candidates, limit=4)

    # Assert: whatever order they came in
    assert [p.study_uid for p in chosen] == ["late", "a", "b", "first-stored"]
    assert select_priors(CURRENT, list(reversed(candidates)), limit=4) == chosen


def test_a_limit_below_one_is_named() -> None:
    with pytest.raises(BadInputError, match="at least 1, got 0"):
        select_priors(CURRENT, [], limit=0)


def _add(session_factory: SessionFactory, n: int, site: str, patient: str, day: date | None) -> str:
    study = study_in(n, patient_id=patient, study_date=day, accession_number=f"ACC{n}")
    with session_factory.begin() as session:
        site_id = sites.get_site(session, site).id
        studies.add_study_with_instance(
            session, site_id=site_id, study=study, instance=instance_in(n, study=n), now=NOW
        )
    return study.study_uid


def test_the_service_reads_the_same_patients_studies_at_the_same_site(session_factory: SessionFactory) -> None:
    # Prepare: PAT001 at north on three days (one undated), at south the day before; an anonymous pair
    with session_factory.begin() as session:
        sites.add_site(session, "north", now=NOW)
        sites.add_site(session, "south", now=NOW)
    oldest = _add(session_factory, 1, "north", "PAT001", date(2024, 1, 5))
    prior = _add(session_factory, 2, "north", "PAT001", date(2025, 2, 6))
    _add(session_factory, 3, "north", "PAT001", None)
    _add(session_factory, 4, "south", "PAT001", date(2026, 3, 9))  # another site's PAT001 is not this patient
    _add(session_factory, 5, "north", "PAT002", date(2025, 12, 1))
    current = _add(session_factory, 6, "north", "PAT001", date(2026, 3, 10))
    _add(session_factory, 7, "north", "", date(2020, 1, 1))
    anonymous = _add(session_factory, 8, "north", " ", date(2026, 3, 10))

    # Execute
    found = prior_studies(session_factory, RADIOLOGIST, current, limit=5)

    # Assert
    assert [(p.study_uid, p.accession_number, p.study_date) for p in found] == [
        (prior, "ACC2", date(2025, 2, 6)),
        (oldest, "ACC1", date(2024, 1, 5)),
    ]
    assert [p.study_uid for p in prior_studies(session_factory, RADIOLOGIST, current)] == [prior]
    assert prior_studies(session_factory, RADIOLOGIST, oldest) == ()
    assert prior_studies(session_factory, RADIOLOGIST, anonymous) == ()  # a blank PatientID links nothing


def test_the_service_checks_the_reader_and_the_study(session_factory: SessionFactory) -> None:
    with pytest.raises(PermissionDeniedError):
        prior_studies(session_factory, SignedInUser("auditor", Role.AUDITOR), "1.2.3")
    with pytest.raises(UnknownStudyError):
        prior_studies(session_factory, RADIOLOGIST, "1.2.3")
