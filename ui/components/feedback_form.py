"""The feedback form: agree / disagree, the reader's finding, confidence, the explanation's use, a comment.

Time on case is measured by the app from the moment the case was opened. The form carries an
idempotency key that stays the same until the feedback is saved, so a double-submit writes one
row. Once saved, the form gives way to a summary with a "Correct my feedback" button, which opens
a new form whose row will reference the one it corrects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import streamlit as st

from core.errors import VigilError
from core.services import feedback
from core.services.feedback import ExplanationRating, FeedbackForm, FeedbackRecord, Finding
from core.services.permissions import Permission, SignedInUser, can
from core.services.review import CaseInfo
from ui import pacs, state

__all__ = ["render"]

_AGREE: Final = {"Agree": True, "Disagree": False}
_FINDINGS: Final = {"Present": Finding.PRESENT, "Absent": Finding.ABSENT, "Indeterminate": Finding.INDETERMINATE}
_RATINGS: Final = {
    "Focused on the finding": ExplanationRating.FOCUSED,
    "Partly": ExplanationRating.PARTLY,
    "Misleading": ExplanationRating.MISLEADING,
    "Not rated": None,
}


def render(user: SignedInUser, info: CaseInfo, history: list[FeedbackRecord]) -> None:
    """The form, or the summary of the reader's current feedback with a way to correct it."""
    uid = info.study.study_uid
    pred = info.prediction
    if not can(user, Permission.RECORD_FEEDBACK):
        return
    pacs.push_notice()
    if pred is None or pred.score is None:
        st.info("Feedback on the model needs a model score; this study has none.")
        return
    mine = [r for r in history if r.username == user.username and r.current]
    latest = mine[-1] if mine else None
    if latest is not None and not state.correcting(uid):
        _summary(latest, uid)
        return
    st.markdown("**Your read**" if latest is None else f"**Correct your feedback #{latest.id}**")
    key = state.feedback_key(uid)  # fixed while this form is on screen: a double-submit repeats it
    with st.form(f"feedback-{uid}-{key}", enter_to_submit=False, border=True):
        agree = st.radio(
            "Do you agree with the model's call?", list(_AGREE), index=_index(_AGREE, latest, "agrees"), horizontal=True
        )
        finding = st.radio(
            "Nodule (your own finding)", list(_FINDINGS), index=_index(_FINDINGS, latest, "finding"), horizontal=True
        )
        confidence = st.radio(
            "Confidence (1 = guess, 5 = certain)",
            [1, 2, 3, 4, 5],
            index=None if latest is None else latest.confidence - 1,
            horizontal=True,
        )
        rating = st.radio(
            "Was the explanation (heat map) helpful?",
            list(_RATINGS),
            index=_index(_RATINGS, latest, "explanation_rating"),
            horizontal=True,
        )
        comment = st.text_area(
            "Comment (optional)",
            value="" if latest is None else latest.comment,
            max_chars=feedback.MAX_COMMENT_LENGTH,
            height=80,
        )
        submitted = st.form_submit_button("Save feedback", type="primary", icon=":material/save:")
    if latest is not None and st.button("Cancel correction", key=f"cancel-correction-{uid}"):
        state.set_correcting(uid, False)
        st.rerun()
    if not submitted:
        return
    if agree is None or finding is None or confidence is None or rating is None:
        st.error("Please answer all four questions (the comment is optional).")
        return
    form = FeedbackForm(
        study_uid=uid,
        prediction_id=pred.prediction_id,
        agrees=_AGREE[agree],
        finding=_FINDINGS[finding],
        confidence=int(confidence),
        explanation=_RATINGS[rating],
        comment=comment,
        time_on_case_s=state.time_on_case_s(uid),
        idempotency_key=key,
        supersedes_id=None if latest is None else latest.id,
    )
    _save(user, form)


def _save(user: SignedInUser, form: FeedbackForm) -> None:
    try:
        saved = pacs.record_verdict(user, form)  # then the PACS auto-push, after the verdict committed
    except VigilError as exc:
        st.error(str(exc))
        return
    state.set_correcting(form.study_uid, False)
    state.restart_visit(form.study_uid)
    what = "Correction saved" if form.supersedes_id is not None else "Feedback saved"
    state.flash(f"{what} as #{saved.record.id} and written to the audit log." if saved.created else "Already saved.")
    st.rerun()


def _summary(latest: FeedbackRecord, uid: str) -> None:
    with st.container(border=True):
        st.markdown(
            f"**Your feedback #{latest.id}:** {'agrees' if latest.agrees else 'disagrees'} with the model · "
            f"finding {latest.finding} · confidence {latest.confidence}/5 · explanation "
            f"{latest.explanation_rating or 'not rated'} · {latest.time_on_case_ms / 1000:.0f} s on case"
        )
        if st.button("Correct my feedback", icon=":material/edit:", key=f"correct-{uid}"):
            state.start_correction(uid)
            st.rerun()


def _index(options: Mapping[str, object], latest: FeedbackRecord | None, field: str) -> int | None:
    """Position of ``latest``'s answer among ``options`` (a correction starts from it), else None."""
    if latest is None:
        return None
    value = getattr(latest, field)
    for i, option in enumerate(options.values()):
        if option == value:
            return i
    return None
