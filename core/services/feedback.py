"""Record a reader's feedback on a case: one row and its audit entry, in one transaction.

This is the first source of the outcome store that site metrics and the real-world-evidence loop
read (``core.store.feedback.list_feedback``). Nothing is overwritten: a correction appends a row
that names the row it corrects. A form submitted twice with the same idempotency key writes one
row; the second call returns the first row with ``created=False``.

The audit entry carries the comment's SHA-256 and length, not its text: free text may hold
identifiers, and the ledger can never be edited.
"""

from __future__ import annotations

import functools
import hashlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.audit.records import RECORD_HASH_KEY, RecordKind
from core.errors import BadInputError, FeedbackConflictError
from core.services.permissions import Permission, SignedInUser, can, parse_role, require
from core.store import audit_log, deployments, feedback, predictions, record_hashes, studies, users
from core.store.engine import SessionFactory, write_with_retries
from core.store.feedback import FeedbackIn, FeedbackRecord
from core.types import JSONObject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "MAX_COMMENT_LENGTH",
    "ExplanationRating",
    "FeedbackForm",
    "FeedbackRecord",
    "FeedbackSaved",
    "Finding",
    "feedback_history",
    "new_idempotency_key",
    "record_feedback",
]

MAX_COMMENT_LENGTH: Final = 2000
#: Longest believable time on one case; a larger value is a clock fault, not a read.
MAX_TIME_ON_CASE_S: Final = 24 * 3600.0


class Finding(StrEnum):
    """The reader's own finding, independent of the model."""

    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"


class ExplanationRating(StrEnum):
    """Whether the explanation overlay helped."""

    FOCUSED = "focused"  # on the finding
    PARTLY = "partly"
    MISLEADING = "misleading"


@dataclass(frozen=True, slots=True)
class FeedbackForm:
    """What the reader submitted.

    Attributes
    ----------
    study_uid : str
    prediction_id : int
        The prediction the reader saw (a model switch in between is refused, not silently moved).
    agrees : bool
        Agreement with the model's label at its threshold.
    finding : Finding
    confidence : int
        1 to 5.
    explanation : ExplanationRating or None
        None when no explanation was shown or rated.
    comment : str
        At most :data:`MAX_COMMENT_LENGTH` characters; surrounding spaces are removed.
    time_on_case_s : float
        Seconds from opening the case to submitting, measured by the app.
    idempotency_key : str
        From :func:`new_idempotency_key`, one per rendered form.
    supersedes_id : int or None
        The reader's earlier row this one corrects.
    """

    study_uid: str
    prediction_id: int
    agrees: bool
    finding: Finding
    confidence: int
    explanation: ExplanationRating | None
    comment: str
    time_on_case_s: float
    idempotency_key: str
    supersedes_id: int | None = None


@dataclass(frozen=True, slots=True)
class FeedbackSaved:
    """The stored row and whether this call created it (False: a repeated submission)."""

    record: FeedbackRecord
    created: bool


def new_idempotency_key() -> str:
    """A fresh random key for one rendered feedback form."""
    return uuid.uuid4().hex


def record_feedback(
    session_factory: SessionFactory, user: SignedInUser, form: FeedbackForm, *, now: Callable[[], datetime]
) -> FeedbackSaved:
    """Save ``form`` as one feedback row plus its ``feedback_recorded`` audit entry, atomically.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not record feedback, checked against the role stored now.
    BadInputError
        A value out of range, or the prediction is not the study's scored prediction.
    FeedbackConflictError
        The idempotency key was used for different feedback, or ``supersedes_id`` is not the
        reader's current row on this study.
    UnknownStudyError, UnknownUserError
        The study or the reader no longer exists.
    """
    require(user, Permission.RECORD_FEEDBACK)
    _check_form(form)
    # Two submissions of one form (a double click, two tabs, a retried request) can race; the
    # loser's retry finds the winner's row by its idempotency key and returns it.
    return write_with_retries(session_factory, functools.partial(_save, user=user, form=form, now=now))


def _save(session: Session, *, user: SignedInUser, form: FeedbackForm, now: Callable[[], datetime]) -> FeedbackSaved:
    """Check and stage the feedback row and its audit entry in the caller's transaction."""
    stored_user = users.get_user(session, user.username)
    # The role is re-read in the transaction: a role withdrawn since sign-in takes effect now.
    require(SignedInUser(stored_user.username, parse_role(stored_user.role)), Permission.RECORD_FEEDBACK)
    previous = feedback.find_by_idempotency_key(session, form.idempotency_key)
    if previous is not None:
        _check_repeat(previous, form, stored_user.id)
        return FeedbackSaved(previous, created=False)
    study_id = _check_prediction(session, form)
    _check_supersedes(session, form, study_id, stored_user.id)
    record = feedback.add_feedback(
        session,
        FeedbackIn(
            study_id=study_id,
            prediction_id=form.prediction_id,
            user_id=stored_user.id,
            reader_role=stored_user.role,
            agrees=form.agrees,
            finding=form.finding.value,
            confidence=form.confidence,
            explanation_rating=None if form.explanation is None else form.explanation.value,
            comment=form.comment.strip(),
            time_on_case_ms=round(form.time_on_case_s * 1000),
            supersedes_id=form.supersedes_id,
            idempotency_key=form.idempotency_key,
        ),
        now=now(),
    )
    audit_log.append(
        session,
        actor=user.username,
        action=AuditAction.FEEDBACK_RECORDED,
        subject=form.study_uid,
        payload={
            **_audit_payload(record),
            RECORD_HASH_KEY: record_hashes.record_hashes(session, RecordKind.FEEDBACK, [record.id])[record.id],
        },
        recorded_at=now().isoformat(),
    )
    return FeedbackSaved(record, created=True)


def feedback_history(session_factory: SessionFactory, user: SignedInUser, study_uid: str) -> list[FeedbackRecord]:
    """The study's feedback, oldest first, as ``user`` may see it.

    Other readers' rows are withheld from a reader until that reader has recorded their own
    verdict on the study, so nobody is anchored by a colleague's read; a clinical champion
    (who adjudicates) sees every row.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        study = studies.get_study(session, study_uid)
        rows = feedback.study_history(session, study.id)
    if can(user, Permission.ADJUDICATE) or any(r.username == user.username for r in rows):
        return rows
    return [r for r in rows if r.username == user.username]


def _check_form(form: FeedbackForm) -> None:
    if not 1 <= form.confidence <= 5:
        raise BadInputError(f"confidence must be 1 to 5, got {form.confidence}")
    if not (math.isfinite(form.time_on_case_s) and 0.0 <= form.time_on_case_s <= MAX_TIME_ON_CASE_S):
        raise BadInputError(f"time on case must be 0 to {MAX_TIME_ON_CASE_S:.0f} s, got {form.time_on_case_s}")
    if len(form.comment.strip()) > MAX_COMMENT_LENGTH:
        raise BadInputError(f"comment is {len(form.comment.strip())} characters; at most {MAX_COMMENT_LENGTH}")
    if not 8 <= len(form.idempotency_key) <= 64:
        raise BadInputError(f"idempotency key must be 8 to 64 characters, got {len(form.idempotency_key)}")


def _check_prediction(session: Session, form: FeedbackForm) -> int:
    """The study's id, once the form's prediction is shown to be the scored one of the version serving its site.

    That is the prediction the reader was shown (``review.open_case``), so the feedback row, which
    names the prediction, names the version the reader actually saw.
    """
    study = studies.get_study(session, form.study_uid)
    instance = studies.list_instances(session, form.study_uid)[0]
    serving = deployments.version_serving(session, study.site_name)
    pred = None if serving is None else predictions.prediction_for(session, instance.id, serving.id)
    if serving is None or pred is None or pred.score is None:
        raise BadInputError(f"study {form.study_uid} has no scored prediction to give feedback on")
    if pred.id != form.prediction_id:
        raise BadInputError(
            f"prediction {form.prediction_id} is not the prediction for study {form.study_uid} of "
            f"{serving.version}, the version serving site {study.site_name!r} (now {pred.id}); reopen the case"
        )
    return study.id


def _check_supersedes(session: Session, form: FeedbackForm, study_id: int, user_id: int) -> None:
    if form.supersedes_id is None:
        return
    try:
        old = feedback.get_feedback(session, form.supersedes_id)
    except LookupError:
        raise FeedbackConflictError(f"feedback {form.supersedes_id} does not exist") from None
    if old.study_id != study_id or old.user_id != user_id:
        raise FeedbackConflictError(f"feedback {old.id} is not your feedback on study {form.study_uid}")
    if old.superseded_by is not None:
        raise FeedbackConflictError(f"feedback {old.id} was already corrected by {old.superseded_by}")


def _check_repeat(previous: FeedbackRecord, form: FeedbackForm, user_id: int) -> None:
    """A repeated key must carry the same verdict; anything else is a client bug, not a retry."""
    same = (
        previous.user_id == user_id
        and previous.study_uid == form.study_uid
        and previous.prediction_id == form.prediction_id
        and previous.agrees == form.agrees
        and previous.finding == form.finding.value
        and previous.confidence == form.confidence
        and previous.supersedes_id == form.supersedes_id
    )
    if not same:
        raise FeedbackConflictError(f"idempotency key {form.idempotency_key!r} was already used for other feedback")


def _audit_payload(record: FeedbackRecord) -> JSONObject:
    return {
        "feedback_id": record.id,
        "prediction_id": record.prediction_id,
        "model_version": record.model_version,
        "agrees": record.agrees,
        "finding": record.finding,
        "confidence": record.confidence,
        "explanation_rating": record.explanation_rating,
        "time_on_case_ms": record.time_on_case_ms,
        "supersedes_id": record.supersedes_id,
        "idempotency_key": record.idempotency_key,
        "reader_role": record.reader_role,
        "comment_sha256": hashlib.sha256(record.comment.encode("utf-8")).hexdigest(),
        "comment_length": len(record.comment),
    }
