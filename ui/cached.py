"""Caches around ``core.services`` reads, keyed on a data version instead of on result frames.

A page asks :func:`reads` once per run: it checks the user's permission and reads the store's
data version (four index look-ups), and its methods call ``st.cache_data`` functions keyed on the
database URL, the user, the arguments and that version. A widget change therefore reruns the page
without touching the database beyond that one token, and never reads a DICOM file or runs the
model again; any write, from any session or the CLI, moves the version and refreshes every page.

Pixels and explanation maps never change under a study's prediction, so they are keyed without
the version and shared by every session. Failures a page must show rather than crash on (an
unreadable image, a study without a score) come back as :class:`Unavailable` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.errors import BadInputError, OutsideIntendedUseError, PixelsUnreadableError
from core.services import explain_report, explanation, feedback, review, worklist
from core.services.explanation import ExplainMethod, StoredExplanation
from core.services.feedback import FeedbackRecord
from core.services.permissions import Permission, SignedInUser, require
from core.services.review import CaseImage, CaseInfo
from core.services.worklist import Neighbours, WorklistFilter, WorklistPage
from ui import resources

__all__ = ["Reads", "Unavailable", "case_image", "method_explanation", "reads"]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why something cannot be shown (one sentence for the reader)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reads:
    """One run's cached reads for one user, at one data version (make it with :func:`reads`)."""

    user: SignedInUser
    url: str
    version: str

    def worklist_page(self, flt: WorklistFilter, page: int, page_size: int) -> WorklistPage:
        """One worklist page."""
        return _worklist_page(self.url, self.user, flt, page, page_size, self.version)

    def neighbours(self, flt: WorklistFilter, study_uid: str) -> Neighbours:
        """Previous and next study around ``study_uid`` in the filtered worklist."""
        return _neighbours(self.url, self.user, flt, study_uid, self.version)

    def site_names(self) -> list[str]:
        """Registered site names, for the site filter."""
        return _site_names(self.url, self.user, self.version)

    def case_info(self, study_uid: str) -> CaseInfo:
        """Header, prediction and model card essentials of one case."""
        return _case_info(self.url, self.user, study_uid, self.version)

    def history(self, study_uid: str) -> list[FeedbackRecord]:
        """The case's feedback history as the user may see it."""
        return _history(self.url, self.user, study_uid, self.version)

    def trust_sentences(self, model_version: str) -> dict[ExplainMethod, str]:
        """Each method's trust sentence for ``model_version`` (empty when no report is stored)."""
        return _trust_sentences(self.url, model_version, self.version)


def reads(user: SignedInUser) -> Reads:
    """Cached study reads for ``user`` at the store's current data version.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies: no cache entry is ever handed to them.
    """
    require(user, Permission.REVIEW_STUDIES)
    version = worklist.data_version(resources.read_session_factory())
    return Reads(user, resources.settings().database_url, version)


@st.cache_data(show_spinner=False, max_entries=256)
def _worklist_page(
    url: str, user: SignedInUser, flt: WorklistFilter, page: int, page_size: int, version: str
) -> WorklistPage:
    return worklist.worklist_page(resources.read_session_factory(), user, flt, page=page, page_size=page_size)


@st.cache_data(show_spinner=False, max_entries=256)
def _neighbours(url: str, user: SignedInUser, flt: WorklistFilter, study_uid: str, version: str) -> Neighbours:
    return worklist.neighbours(resources.read_session_factory(), user, flt, study_uid)


@st.cache_data(show_spinner=False, max_entries=16)
def _site_names(url: str, user: SignedInUser, version: str) -> list[str]:
    return worklist.site_names(resources.read_session_factory(), user)


@st.cache_data(show_spinner=False, max_entries=128)
def _case_info(url: str, user: SignedInUser, study_uid: str, version: str) -> CaseInfo:
    return review.open_case(resources.read_session_factory(), user, study_uid)


@st.cache_data(show_spinner=False, max_entries=128)
def _history(url: str, user: SignedInUser, study_uid: str, version: str) -> list[FeedbackRecord]:
    return feedback.feedback_history(resources.read_session_factory(), user, study_uid)


@st.cache_data(show_spinner=False, max_entries=32)
def _trust_sentences(url: str, model_version: str, version: str) -> dict[ExplainMethod, str]:
    try:
        return explain_report.trust_sentences(resources.read_session_factory(), model_version)
    except BadInputError:
        return {}


def case_image(user: SignedInUser, study_uid: str) -> CaseImage | Unavailable:
    """The decoded image, read once per study and server (pixels never change under a UID)."""
    require(user, Permission.REVIEW_STUDIES)
    return _case_image(resources.settings().database_url, study_uid, user)


@st.cache_data(show_spinner="Reading the image...", max_entries=32)
def _case_image(url: str, study_uid: str, _user: SignedInUser) -> CaseImage | Unavailable:
    try:
        return review.load_case_image(resources.read_session_factory(), _user, study_uid)
    except PixelsUnreadableError as exc:
        return Unavailable(exc.reason)


def method_explanation(
    user: SignedInUser, study_uid: str, prediction_id: int, method: ExplainMethod
) -> StoredExplanation | Unavailable:
    """The serving model's ``method`` map of the study: computed at most once per (study, prediction, method).

    The service reuses a stored artifact when one exists; this cache keeps the result for every
    session, so a widget rerun never reaches the database or the model (SHAP takes seconds on CPU).
    """
    require(user, Permission.REVIEW_STUDIES)
    return _method_explanation(resources.settings().database_url, study_uid, prediction_id, method.value, user)


@st.cache_data(
    show_spinner="Computing the explanation once for this study (SHAP takes a few seconds)...", max_entries=64
)
def _method_explanation(
    url: str, study_uid: str, prediction_id: int, method: str, _user: SignedInUser
) -> StoredExplanation | Unavailable:
    # Keyed on ids and the method name, never on frames; the first reader is the audit actor.
    try:
        return explanation.explain_case(
            resources.session_factory(),
            _user,
            study_uid,
            method=method,
            model=resources.model,
            artifacts_dir=resources.settings().artifacts_dir,
            now=resources.utc_now,
        )
    except PixelsUnreadableError as exc:
        return Unavailable(exc.reason)
    except (BadInputError, OutsideIntendedUseError) as exc:
        return Unavailable(str(exc))
