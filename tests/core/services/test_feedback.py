"""Recording reader feedback: one row plus its audit entry, idempotent, append-only corrections."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import core.services.feedback as feedback_service
from core.audit.events import AuditAction
from core.errors import BadInputError, FeedbackConflictError, PermissionDeniedError
from core.services import review, worklist
from core.services.audit import verify_ledger
from core.services.feedback import ExplanationRating, FeedbackForm, Finding, record_feedback
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store import feedback as feedback_store
from core.store.engine import SessionFactory
from core.store.tables import FeedbackRow, UserRow
from tests.conftest import BACKENDS
from tests.core.services.installations import installation_on
from tests.ui.installation import clock

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
CHAMPION = SignedInUser("champion", Role.CHAMPION)


@pytest.fixture(params=BACKENDS)
def sf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> SessionFactory:
    """The installation's store, on a SQLite file and on PostgreSQL (one contract, two backends)."""
    return installation_on(request.param, request, tmp_path_factory, tmp_path).session_factory()


@pytest.fixture
def form(sf: SessionFactory) -> FeedbackForm:
    uid = worklist.worklist_page(sf, RADIOLOGIST, worklist.WorklistFilter()).items[0].study_uid
    info = review.open_case(sf, RADIOLOGIST, uid)
    assert info.prediction is not None
    return FeedbackForm(
        study_uid=uid,
        prediction_id=info.prediction.prediction_id,
        agrees=False,
        finding=Finding.PRESENT,
        confidence=4,
        explanation=ExplanationRating.FOCUSED,
        comment="  small nodule, right upper zone  ",
        time_on_case_s=42.25,
        idempotency_key=feedback_service.new_idempotency_key(),
    )


def _counts(sf: SessionFactory) -> tuple[int, int]:
    with sf() as session:
        return feedback_store.count_feedback(session), audit_log.count_entries(session)


def test_feedback_is_one_row_and_one_audit_entry(sf: SessionFactory, form: FeedbackForm) -> None:
    # Prepare
    rows_before, entries_before = _counts(sf)

    # Execute
    saved = record_feedback(sf, RADIOLOGIST, form, now=clock)

    # Assert
    assert saved.created and _counts(sf) == (rows_before + 1, entries_before + 1)
    rec = saved.record
    assert (rec.username, rec.reader_role, rec.study_uid) == ("radiologist", "radiologist", form.study_uid)
    assert (rec.agrees, rec.finding, rec.confidence, rec.explanation_rating) == (False, "present", 4, "focused")
    assert rec.comment == "small nodule, right upper zone" and rec.time_on_case_ms == 42250
    with sf() as session:
        entry = audit_log.last_entry(session)
    assert entry is not None
    assert (entry.actor, entry.action, entry.subject) == ("radiologist", AuditAction.FEEDBACK_RECORDED, form.study_uid)
    assert entry.payload["feedback_id"] == rec.id and entry.payload["comment_length"] == len(rec.comment)
    assert "nodule" not in str(entry.payload)
    assert verify_ledger(sf).ok


def test_a_double_submit_writes_one_row(sf: SessionFactory, form: FeedbackForm) -> None:
    # Execute
    first = record_feedback(sf, RADIOLOGIST, form, now=clock)
    counts = _counts(sf)
    second = record_feedback(sf, RADIOLOGIST, form, now=clock)

    # Assert
    assert (first.created, second.created) == (True, False)
    assert second.record == first.record and _counts(sf) == counts


def test_a_reused_key_with_other_content_is_refused(sf: SessionFactory, form: FeedbackForm) -> None:
    record_feedback(sf, RADIOLOGIST, form, now=clock)
    with pytest.raises(FeedbackConflictError, match="already used"):
        record_feedback(sf, RADIOLOGIST, replace(form, agrees=True), now=clock)


def test_a_correction_appends_a_row_that_references_the_old_one(sf: SessionFactory, form: FeedbackForm) -> None:
    # Prepare
    first = record_feedback(sf, RADIOLOGIST, form, now=clock).record

    # Execute
    fix = replace(form, agrees=True, idempotency_key=feedback_service.new_idempotency_key(), supersedes_id=first.id)
    second = record_feedback(sf, RADIOLOGIST, fix, now=clock).record

    # Assert
    history = feedback_service.feedback_history(sf, RADIOLOGIST, form.study_uid)
    assert [(r.id, r.supersedes_id, r.superseded_by, r.agrees) for r in history] == [
        (first.id, None, second.id, False),
        (second.id, first.id, None, True),
    ]
    with sf() as session:
        current = feedback_store.list_feedback(session, current_only=True)
    assert [r.id for r in current] == [second.id]
    again = replace(fix, idempotency_key=feedback_service.new_idempotency_key())
    with pytest.raises(FeedbackConflictError, match=f"already corrected by {second.id}"):
        record_feedback(sf, RADIOLOGIST, again, now=clock)


def test_nobody_corrects_someone_elses_feedback(sf: SessionFactory, form: FeedbackForm) -> None:
    first = record_feedback(sf, RADIOLOGIST, form, now=clock).record
    theirs = replace(form, idempotency_key=feedback_service.new_idempotency_key(), supersedes_id=first.id)
    with pytest.raises(FeedbackConflictError, match="not your feedback"):
        record_feedback(sf, CHAMPION, theirs, now=clock)
    with pytest.raises(FeedbackConflictError, match="does not exist"):
        record_feedback(sf, RADIOLOGIST, replace(theirs, supersedes_id=10_000), now=clock)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confidence": 0}, "confidence"),
        ({"confidence": 6}, "confidence"),
        ({"time_on_case_s": -1.0}, "time on case"),
        ({"time_on_case_s": math.nan}, "time on case"),
        ({"comment": "x" * 2001}, "comment"),
        ({"idempotency_key": "short"}, "idempotency key"),
        ({"prediction_id": 10_000}, "the version serving site"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(
    sf: SessionFactory, form: FeedbackForm, change: dict[str, object], message: str
) -> None:
    before = _counts(sf)
    with pytest.raises(BadInputError, match=message):
        record_feedback(sf, RADIOLOGIST, replace(form, **change), now=clock)  # type: ignore[arg-type]
    assert _counts(sf) == before


@pytest.mark.parametrize("role", [Role.CMIO, Role.ML_ENGINEER, Role.ADMIN, Role.AUDITOR])
def test_roles_that_do_not_read_cannot_record_feedback(sf: SessionFactory, form: FeedbackForm, role: Role) -> None:
    before = _counts(sf)
    with pytest.raises(PermissionDeniedError):
        record_feedback(sf, SignedInUser("auditor", role), form, now=clock)
    assert _counts(sf) == before


def test_a_role_withdrawn_after_sign_in_takes_effect_at_once(sf: SessionFactory, form: FeedbackForm) -> None:
    # Prepare: the session still says radiologist, the database no longer does
    with sf.begin() as session:
        session.execute(update(UserRow).where(UserRow.username == "radiologist").values(role="auditor"))

    # Execute / Assert
    with pytest.raises(PermissionDeniedError, match="role 'auditor'"):
        record_feedback(sf, RADIOLOGIST, form, now=clock)


def test_the_row_and_its_audit_entry_commit_together(
    sf: SessionFactory, form: FeedbackForm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the audit append fails after the row was staged
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(feedback_service.audit_log, "append", broken)

    # Execute
    with pytest.raises(RuntimeError):
        record_feedback(sf, RADIOLOGIST, form, now=clock)

    # Assert
    with sf() as session:
        assert session.scalars(select(func.count()).select_from(FeedbackRow)).one() == 0


def test_other_readers_feedback_is_blinded_until_you_have_read(sf: SessionFactory, form: FeedbackForm) -> None:
    # Prepare
    record_feedback(sf, RADIOLOGIST, form, now=clock)
    other = SignedInUser("dr.b", Role.RADIOLOGIST)
    from core.services import auth

    auth.add_user(sf, "dr.b", "radiologist", "a long enough password", actor="test", now=clock)

    # Execute
    before = feedback_service.feedback_history(sf, other, form.study_uid)
    mine = replace(form, idempotency_key=feedback_service.new_idempotency_key())
    record_feedback(sf, other, mine, now=clock)
    after = feedback_service.feedback_history(sf, other, form.study_uid)

    # Assert
    assert before == []
    assert [r.username for r in after] == ["radiologist", "dr.b"]
    assert [r.username for r in feedback_service.feedback_history(sf, CHAMPION, form.study_uid)] == [
        "radiologist",
        "dr.b",
    ]
