"""A case's prior studies: the same patient's earlier studies at the same site, most recent first.

The rule (:func:`select_priors`, pure) is deliberately narrow, because a wrong prior is worse than
none:

* **Same patient, same site.** PatientID is only unique within the issuer that assigned it, so a
  study of another site is never a prior, and a study with an empty PatientID has none (an empty
  identifier would make every anonymous film one patient's).
* **Strictly earlier date.** StudyDate (DA, a day) is compared; a study the same day is not a prior,
  as without a time of day it cannot be told which came first (it may be the same visit).
* **No date, no prior.** A candidate without StudyDate is never a prior (it cannot be shown to be
  earlier) and a current study without one has none (nothing can be shown to be earlier than it).
* **Ties.** Of two candidates on the same date the one stored later comes first (the store's
  order, so the choice is the same on every read), then by StudyInstanceUID.

:func:`prior_studies` reads the candidates in one session and applies the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from core.errors import BadInputError
from core.services.permissions import Permission, SignedInUser, require
from core.store import studies
from core.store.engine import SessionFactory

__all__ = ["PriorCandidate", "prior_studies", "select_priors"]


@dataclass(frozen=True, slots=True)
class PriorCandidate:
    """A stored study as the prior rule sees it.

    Attributes
    ----------
    study_uid : str
        Its StudyInstanceUID.
    accession_number : str
        Its accession number ("" when absent), shown beside the prior.
    study_date : date or None
        Its StudyDate; None when the header has none.
    stored_order : int
        Its position in the store (the study row's key): larger was stored later.
    """

    study_uid: str
    accession_number: str
    study_date: date | None
    stored_order: int


def select_priors(
    current: PriorCandidate, candidates: Iterable[PriorCandidate], *, limit: int = 1
) -> tuple[PriorCandidate, ...]:
    """The most recent ``limit`` priors of ``current`` among ``candidates`` (the module's rule).

    Parameters
    ----------
    current : PriorCandidate
        The study being read.
    candidates : iterable of PriorCandidate
        The same patient's studies at the same site (``current`` may be among them).
    limit : int, default 1
        How many priors to return at most (>= 1).

    Returns
    -------
    tuple of PriorCandidate
        Most recent first; empty when there is none.

    Raises
    ------
    BadInputError
        ``limit`` is below 1.

    Examples
    --------
    >>> today = PriorCandidate("2.3", "A3", date(2026, 3, 1), 3)
    >>> older = [PriorCandidate("2.1", "A1", date(2025, 1, 5), 1), PriorCandidate("2.2", "A2", None, 2)]
    >>> [p.accession_number for p in select_priors(today, older)]
    ['A1']
    """
    if limit < 1:
        raise BadInputError(f"the number of priors to show must be at least 1, got {limit}")
    if current.study_date is None:
        return ()
    before = current.study_date
    earlier = [
        c for c in candidates if c.study_uid != current.study_uid and c.study_date is not None and c.study_date < before
    ]
    # Most recent day first; on the same day the study stored later, then the smaller UID (both sorts
    # are stable: the UID order survives where date and store order are equal).
    earlier.sort(key=lambda c: c.study_uid)
    earlier.sort(key=lambda c: (c.study_date, c.stored_order), reverse=True)
    return tuple(earlier[:limit])


def prior_studies(
    session_factory: SessionFactory, user: SignedInUser, study_uid: str, *, limit: int = 1
) -> tuple[PriorCandidate, ...]:
    """The priors of ``study_uid``, most recent first (:func:`select_priors` over the store).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    BadInputError
        ``limit`` is below 1.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        study = studies.get_study(session, study_uid)
        if not study.patient_id.strip():
            return ()
        same_patient = studies.patient_studies(session, site_id=study.site_id, patient_id=study.patient_id)
    return select_priors(_candidate(study), (_candidate(s) for s in same_patient), limit=limit)


def _candidate(study: studies.StudyRecord) -> PriorCandidate:
    return PriorCandidate(study.study_uid, study.accession_number, study.study_date, study.id)
