"""Clinician feedback rows: append, look up by idempotency key, read a study's history.

Rows are never updated or deleted. A correction is a new row whose ``supersedes_id`` names the
row it replaces; the unique constraint on ``supersedes_id`` keeps each study's history a chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from core.store.tables import FeedbackRow, ModelVersionRow, PredictionRow, StudyRow, UserRow

__all__ = [
    "FINDINGS",
    "EXPLANATION_RATINGS",
    "FeedbackIn",
    "FeedbackRecord",
    "add_feedback",
    "count_feedback",
    "find_by_idempotency_key",
    "get_feedback",
    "list_feedback",
    "study_history",
]

#: Allowed ``finding`` values (a CHECK constraint enforces them too).
FINDINGS: Final = ("present", "absent", "indeterminate")
#: Allowed ``explanation_rating`` values; None when the reader did not rate an explanation.
EXPLANATION_RATINGS: Final = ("focused", "partly", "misleading")

# The row that corrects a given row, joined to tell current rows from corrected ones.
_CORRECTION = aliased(FeedbackRow, name="correction")


@dataclass(frozen=True, slots=True)
class FeedbackIn:
    """One reader's verdict, as the service validated it.

    Attributes
    ----------
    study_id, prediction_id, user_id : int
        Keys of the study, of the prediction the reader judged, and of the reader.
    reader_role : str
        The reader's role when they signed the feedback.
    agrees : bool
        Whether the reader agrees with the model's label at its operating threshold.
    finding : str
        The reader's own finding, one of :data:`FINDINGS`.
    confidence : int
        1 (guess) to 5 (certain).
    explanation_rating : str or None
        One of :data:`EXPLANATION_RATINGS`, None when no explanation was rated.
    comment : str
        Free text, ``""`` when none.
    time_on_case_ms : int
        Milliseconds between opening the case and submitting, measured by the app.
    supersedes_id : int or None
        The row this one corrects.
    idempotency_key : str
        Unique per submitted form (at most 64 characters).
    """

    study_id: int
    prediction_id: int
    user_id: int
    reader_role: str
    agrees: bool
    finding: str
    confidence: int
    explanation_rating: str | None
    comment: str
    time_on_case_ms: int
    supersedes_id: int | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A stored feedback row with the names a reader or report needs.

    ``superseded_by`` is the id of the row that corrects this one, None while it is current.
    """

    id: int
    study_id: int
    study_uid: str
    prediction_id: int
    model_version: str
    score: float | None
    threshold: float
    user_id: int
    username: str
    reader_role: str
    agrees: bool
    finding: str
    confidence: int
    explanation_rating: str | None
    comment: str
    time_on_case_ms: int
    supersedes_id: int | None
    superseded_by: int | None
    idempotency_key: str
    created_at: datetime

    @property
    def current(self) -> bool:
        """True while no later row corrects this one."""
        return self.superseded_by is None


def add_feedback(session: Session, feedback: FeedbackIn, *, now: datetime) -> FeedbackRecord:
    """Stage one feedback row. The caller owns the transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        The idempotency key is taken, the superseded row is already corrected, a key does not
        exist, or a value breaks a CHECK constraint (check with the service first).
    """
    row = FeedbackRow(
        study_id=feedback.study_id,
        prediction_id=feedback.prediction_id,
        user_id=feedback.user_id,
        reader_role=feedback.reader_role,
        agrees=feedback.agrees,
        finding=feedback.finding,
        confidence=feedback.confidence,
        explanation_rating=feedback.explanation_rating,
        comment=feedback.comment,
        time_on_case_ms=feedback.time_on_case_ms,
        supersedes_id=feedback.supersedes_id,
        idempotency_key=feedback.idempotency_key,
        created_at=now,
    )
    session.add(row)
    session.flush()  # assigns the id and fires the unique constraints inside the caller's transaction
    return get_feedback(session, row.id)


def get_feedback(session: Session, feedback_id: int) -> FeedbackRecord:
    """Look one row up by id.

    Raises
    ------
    LookupError
        If there is no such row.
    """
    row = session.execute(_records().where(FeedbackRow.id == feedback_id)).one_or_none()
    if row is None:
        raise LookupError(f"no feedback row with id {feedback_id}")
    return _record(row)


def find_by_idempotency_key(session: Session, key: str) -> FeedbackRecord | None:
    """The row saved under ``key``, if any (the double-submit check)."""
    row = session.execute(_records().where(FeedbackRow.idempotency_key == key)).one_or_none()
    return None if row is None else _record(row)


def study_history(session: Session, study_id: int) -> list[FeedbackRecord]:
    """Every feedback row of one study, oldest first, corrections included."""
    query = _records().where(FeedbackRow.study_id == study_id).order_by(FeedbackRow.id)
    return [_record(row) for row in session.execute(query)]


def list_feedback(
    session: Session, *, after_id: int = 0, current_only: bool = False, limit: int | None = None
) -> list[FeedbackRecord]:
    """Feedback rows in the order stored, for readers of the outcome store (metrics, RWE).

    Parameters
    ----------
    after_id : int, default 0
        Only rows with a larger id (incremental reads).
    current_only : bool, default False
        Leave out rows that a later row corrects.
    limit : int, optional
        At most this many rows.
    """
    query = _records().where(FeedbackRow.id > after_id).order_by(FeedbackRow.id).limit(limit)
    if current_only:
        query = query.where(_CORRECTION.id.is_(None))
    return [_record(row) for row in session.execute(query)]


def count_feedback(session: Session) -> int:
    """Count every stored row, corrections included."""
    return session.scalars(select(func.count()).select_from(FeedbackRow)).one()


def _records() -> Select[FeedbackRow, str, str, float | None, float, str, int | None]:
    return (
        select(
            FeedbackRow,
            StudyRow.study_uid,
            ModelVersionRow.version,
            PredictionRow.score,
            PredictionRow.threshold,
            UserRow.username,
            _CORRECTION.id,
        )
        .join(StudyRow, FeedbackRow.study_id == StudyRow.id)
        .join(PredictionRow, FeedbackRow.prediction_id == PredictionRow.id)
        .join(ModelVersionRow, PredictionRow.model_version_id == ModelVersionRow.id)
        .join(UserRow, FeedbackRow.user_id == UserRow.id)
        .outerjoin(_CORRECTION, _CORRECTION.supersedes_id == FeedbackRow.id)
    )


def _record(row: tuple[FeedbackRow, str, str, float | None, float, str, int | None]) -> FeedbackRecord:
    fb, study_uid, version, score, threshold, username, superseded_by = row
    return FeedbackRecord(
        id=fb.id,
        study_id=fb.study_id,
        study_uid=study_uid,
        prediction_id=fb.prediction_id,
        model_version=version,
        score=score,
        threshold=threshold,
        user_id=fb.user_id,
        username=username,
        reader_role=fb.reader_role,
        agrees=fb.agrees,
        finding=fb.finding,
        confidence=fb.confidence,
        explanation_rating=fb.explanation_rating,
        comment=fb.comment,
        time_on_case_ms=fb.time_on_case_ms,
        supersedes_id=fb.supersedes_id,
        superseded_by=superseded_by,
        idempotency_key=fb.idempotency_key,
        created_at=fb.created_at,
    )
