"""The "Compare with prior" switch: offered only when the patient has a prior, off at the start of every case.

The case view already names the priors (``core.services.priors``: same patient, same site,
strictly earlier date). Only when the reader switches the comparison on is the prior's film read
and decoded (one ``core.services.case_view.open_prior_view`` call, cached per user, prior and data
version), so a case read without it costs what it did before and looks as it did.

The page reads the switch's state before the viewer (:func:`chosen_prior`) and draws the switch
after it (:func:`switch`): nothing is drawn above the viewer, so the viewer keeps its position in
the page whether a case has a prior or not, and Streamlit keeps the same viewer iframe (a new
position would mount a second one beside the first until the rerun ends).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.errors import UnknownStudyError
from core.services import case_view
from core.services.case_view import CaseView, PriorView
from core.services.permissions import SignedInUser
from ui import cached, resources

__all__ = ["PriorChoice", "chosen_prior", "switch"]


@dataclass(frozen=True, slots=True)
class PriorChoice:
    """The prior to show beside the case (None: none), or why the one asked for cannot be shown."""

    view: PriorView | None = None
    problem: str | None = None


def _compare_key(study_uid: str) -> str:
    # Keyed on the case: the comparison never carries silently into the next case.
    return f"view-compare-{study_uid}"


def chosen_prior(reads: cached.Reads, view: CaseView) -> PriorChoice:
    """The prior the reader switched on for this case (reads state only; draws nothing)."""
    if not view.priors or view.image is None or st.session_state.get(_compare_key(view.study_uid)) is not True:
        return PriorChoice()
    newest = view.priors[0]
    try:
        prior = _prior_view(reads.url, reads.user, newest.study_uid, reads.version)
    except UnknownStudyError:  # removed since the case was opened
        name = newest.accession_number or newest.study_uid
        return PriorChoice(problem=f"the prior study {name} is no longer stored.")
    if prior.image is None:
        return PriorChoice(problem=f"the prior's image cannot be shown: {prior.image_problem}")
    return PriorChoice(view=prior)


def switch(view: CaseView, choice: PriorChoice) -> None:
    """The switch (only when the case has a prior), and why the prior is not shown when it cannot be."""
    if not view.priors or view.image is None:
        return
    newest = view.priors[0]
    when = newest.study_date.isoformat() if newest.study_date else "no date"
    st.toggle(
        f"Compare with prior ({when})",
        value=False,
        key=_compare_key(view.study_uid),
        help="The patient's most recent earlier study at this site, beside this one with the same window / level. "
        "Off at the start of every case.",
    )
    if choice.problem:
        st.warning(f"The prior is not shown: {choice.problem}", icon=":material/broken_image:")


@st.cache_data(show_spinner="Opening the prior study...", max_entries=16)
def _prior_view(url: str, user: SignedInUser, prior_uid: str, version: str) -> PriorView:
    # ``url`` and ``version`` are cache keys only: the database and its data version.
    return case_view.open_prior_view(resources.read_session_factory(), user, prior_uid)
