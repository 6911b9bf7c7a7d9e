"""What one browser session remembers between reruns, behind typed accessors.

Only plain values and frozen dataclasses live in ``st.session_state`` (never a database
session, rule R5). Keys start with ``vigil.`` so they never collide with widget keys.
"""

from __future__ import annotations

import time
from typing import Final

import streamlit as st

from core.services.feedback import new_idempotency_key
from core.services.worklist import WorklistFilter

__all__ = [
    "begin_visit",
    "correcting",
    "current_study",
    "feedback_key",
    "flash",
    "mark_viewed",
    "open_study",
    "pop_flash",
    "restart_visit",
    "set_correcting",
    "set_worklist_filter",
    "set_worklist_page",
    "start_correction",
    "time_on_case_s",
    "viewed",
    "worklist_filter",
    "worklist_page",
]

_FILTER: Final = "vigil.worklist.filter"
_PAGE: Final = "vigil.worklist.page"
_STUDY: Final = "vigil.case.study"
_VISIT: Final = "vigil.case.visit"  # (study_uid, monotonic seconds when this visit began)
_FB_KEYS: Final = "vigil.case.feedback_keys"  # study_uid -> idempotency key of the form on screen
_CORRECTING: Final = "vigil.case.correcting"  # study_uids whose "correct my feedback" form is open
_VIEWED: Final = "vigil.case.viewed"  # (study_uid, explanation_id) already audited as viewed
_FLASH: Final = "vigil.flash"


def worklist_filter() -> WorklistFilter:
    """The reader's current worklist filter (shared by the worklist and case pages)."""
    value = st.session_state.get(_FILTER)
    return value if isinstance(value, WorklistFilter) else WorklistFilter()


def set_worklist_filter(flt: WorklistFilter) -> None:
    """Remember ``flt``; a changed filter starts again at the first page."""
    if flt != worklist_filter():
        st.session_state[_PAGE] = 0
    st.session_state[_FILTER] = flt


def worklist_page() -> int:
    """0-based worklist page."""
    return int(st.session_state.get(_PAGE, 0))


def set_worklist_page(page: int) -> None:
    """Remember the worklist page."""
    st.session_state[_PAGE] = max(0, page)


def current_study() -> str | None:
    """The StudyInstanceUID on the case page, None before one is opened."""
    value = st.session_state.get(_STUDY)
    return value if isinstance(value, str) else None


def open_study(study_uid: str) -> None:
    """Make ``study_uid`` the case on screen and start a new visit (its time-on-case clock restarts)."""
    st.session_state[_STUDY] = study_uid
    st.session_state.pop(_VISIT, None)


def begin_visit(study_uid: str) -> None:
    """Start the time-on-case clock when ``study_uid`` is first shown in this visit (later calls: no-op)."""
    visit = st.session_state.get(_VISIT)
    if not (isinstance(visit, tuple) and visit[0] == study_uid):
        st.session_state[_VISIT] = (study_uid, time.monotonic())


def time_on_case_s(study_uid: str) -> float:
    """Seconds the reader has spent on ``study_uid`` in this visit, measured by the app."""
    begin_visit(study_uid)
    return max(0.0, time.monotonic() - float(st.session_state[_VISIT][1]))


def restart_visit(study_uid: str) -> None:
    """Restart the clock (after saving, a correction's time is measured from then)."""
    st.session_state[_VISIT] = (study_uid, time.monotonic())


def feedback_key(study_uid: str) -> str:
    """The idempotency key of the feedback form on screen for ``study_uid`` (made on first use).

    It stays the same across reruns of one form, so a double-submitted form repeats the key and
    the service writes one row; :func:`start_correction` makes a new one for a new form.
    """
    keys: dict[str, str] = st.session_state.setdefault(_FB_KEYS, {})
    if study_uid not in keys:
        keys[study_uid] = new_idempotency_key()
    return keys[study_uid]


def correcting(study_uid: str) -> bool:
    """Whether the reader asked to correct their feedback on ``study_uid``."""
    return study_uid in st.session_state.get(_CORRECTING, set())


def set_correcting(study_uid: str, on: bool) -> None:
    """Open or close the correction form for ``study_uid``."""
    pending: set[str] = st.session_state.setdefault(_CORRECTING, set())
    if on:
        pending.add(study_uid)
    else:
        pending.discard(study_uid)


def start_correction(study_uid: str) -> None:
    """Open a new correction form with a new idempotency key."""
    keys: dict[str, str] = st.session_state.setdefault(_FB_KEYS, {})
    keys[study_uid] = new_idempotency_key()
    set_correcting(study_uid, True)


def viewed(study_uid: str, explanation_id: int) -> bool:
    """Whether this session already audited showing this explanation."""
    return (study_uid, explanation_id) in st.session_state.get(_VIEWED, set())


def mark_viewed(study_uid: str, explanation_id: int) -> None:
    """Remember that showing this explanation was audited."""
    st.session_state.setdefault(_VIEWED, set()).add((study_uid, explanation_id))


def flash(message: str) -> None:
    """Keep a success message for the next rerun (after ``st.rerun``)."""
    st.session_state[_FLASH] = message


def pop_flash() -> str | None:
    """The pending flash message, once."""
    value = st.session_state.pop(_FLASH, None)
    return value if isinstance(value, str) else None
