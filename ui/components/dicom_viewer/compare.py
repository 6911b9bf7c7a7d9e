"""The "Compare with prior" switch: offered only when the patient has a prior, off at the start of every case.

The case view already names the priors (``core.services.priors``: same patient, same site,
strictly earlier date, the most recent few). The switch compares with the most recent; when the
patient has more than one, a list under the switch chooses another, also per case (the most
recent again at the next case). Only when the reader switches the comparison on is the prior's
film read and decoded (one ``core.services.case_view.open_prior_view`` call, cached per user, prior and data
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
from core.services.priors import PriorCandidate
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


def _which_key(study_uid: str) -> str:
    # Keyed on the case too: the next case starts again from its most recent prior.
    return f"view-compare-which-{study_uid}"


def _chosen(view: CaseView) -> PriorCandidate:
    """The prior picked from the list, or the most recent (no list, or a pick no longer offered)."""
    picked = st.session_state.get(_which_key(view.study_uid))
    return next((p for p in view.priors if p.study_uid == picked), view.priors[0])


def _when(prior: PriorCandidate) -> str:
    return prior.study_date.isoformat() if prior.study_date else "no date"


def _describe(prior: PriorCandidate) -> str:
    return f"{_when(prior)} · {prior.accession_number}" if prior.accession_number else _when(prior)


def chosen_prior(reads: cached.Reads, view: CaseView) -> PriorChoice:
    """The prior the reader switched on for this case (reads state only; draws nothing)."""
    if not view.priors or view.image is None or st.session_state.get(_compare_key(view.study_uid)) is not True:
        return PriorChoice()
    chosen = _chosen(view)
    try:
        prior = _prior_view(reads.url, reads.user, chosen.study_uid, reads.version)
    except UnknownStudyError:  # removed since the case was opened
        name = chosen.accession_number or chosen.study_uid
        return PriorChoice(problem=f"the prior study {name} is no longer stored.")
    if prior.image is None:
        return PriorChoice(problem=f"the prior's image cannot be shown: {prior.image_problem}")
    return PriorChoice(view=prior)


def switch(view: CaseView, choice: PriorChoice) -> None:
    """The switch (only when the case has a prior), the list of priors when there are several, and any problem."""
    if not view.priors or view.image is None:
        return
    several = len(view.priors) > 1
    label = f"{len(view.priors)} earlier studies" if several else _when(view.priors[0])
    on = st.toggle(
        f"Compare with prior ({label})",
        value=False,
        key=_compare_key(view.study_uid),
        help="The patient's most recent earlier study at this site (or one chosen below), beside this one with "
        "the same window / level. Off at the start of every case.",
    )
    if on and several:
        st.selectbox(
            "Prior shown",
            options=[p.study_uid for p in view.priors],
            format_func={p.study_uid: _describe(p) for p in view.priors}.__getitem__,
            key=_which_key(view.study_uid),
            help=f"The {len(view.priors)} most recent earlier studies at this site, most recent first.",
        )
    if choice.problem:
        st.warning(f"The prior is not shown: {choice.problem}", icon=":material/broken_image:")


@st.cache_data(show_spinner="Opening the prior study...", max_entries=16)
def _prior_view(url: str, user: SignedInUser, prior_uid: str, version: str) -> PriorView:
    # ``url`` and ``version`` are cache keys only: the database and its data version.
    return case_view.open_prior_view(resources.read_session_factory(), user, prior_uid)
