"""Case review: the image in the DICOM viewer with its explanation layer, the model's call, the feedback."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission, can
from ui import auth, cached, state
from ui.components import case, feedback_form, viewer
from ui.components.dicom_viewer import compare

user = auth.require_page(Permission.REVIEW_STUDIES)
reads = cached.reads(user)
study_uid = case.study_from_url()
if study_uid is None:
    st.title("Case review")
    st.info("Open a study from the worklist to review it.")
    if st.button("Go to the worklist", type="primary", shortcut="W"):
        st.switch_page("pages/worklist.py")
    st.stop()

# One core.services.case_view call gives everything shown; ?study= opens and then follows the case.
view = viewer.load(reads, study_uid)
if view is None:
    st.title("Case review")
    st.error("No study with the UID in this link is in Vigil: check the link, or open a study from the worklist.")
    if st.button("Go to the worklist", type="primary", shortcut="W"):
        st.switch_page("pages/worklist.py")
    st.stop()

case.sync_url(study_uid)
state.begin_visit(study_uid)
# Always one slot, filled or not: an element that comes and goes would shift the viewer's position
# in the page, and Streamlit would mount a second viewer beside the first until the rerun ends.
flash = st.empty()
if message := state.pop_flash():
    flash.success(message)
case.navigation_bar(reads.neighbours(state.worklist_filter(), study_uid))
with st.container():  # one block: the header's optional warning cannot shift the viewer either
    case.header(view.info, overlay_hidden=viewer.overlay_hidden(study_uid))
if can(user, Permission.ADJUDICATE):
    st.page_link(
        "pages/adjudication.py",
        label="Adjudicate this study",
        icon=":material/gavel:",
        query_params={"study": study_uid},
    )
image_col, side_col = st.columns([3, 2], gap="medium")
with image_col:
    # "Compare with prior" is offered only when the patient has one, and is off at the start of each
    # case. Its switch comes after the viewer, so the viewer keeps its place whether it is offered or not.
    prior = compare.chosen_prior(reads, view)
    viewer.render(user, view, prior=prior.view)
    compare.switch(view, prior)
with side_col:
    feedback_form.render(user, view.info, list(view.history))
    case.history(view.history, user)
    case.details(view.info)
