"""Case review: the image with its explanation overlays (Grad-CAM, GradientShap, KernelShap), the call, the feedback."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission, can
from ui import auth, cached, state
from ui.components import case, feedback_form, viewer

user = auth.require_page(Permission.REVIEW_STUDIES)
reads = cached.reads(user)
study_uid = state.current_study()
if study_uid is None:
    st.title("Case review")
    st.info("Open a study from the worklist to review it.")
    if st.button("Go to the worklist", type="primary", shortcut="W"):
        st.switch_page("pages/worklist.py")
    st.stop()

state.begin_visit(study_uid)
if message := state.pop_flash():
    st.success(message)
case.navigation_bar(reads.neighbours(state.worklist_filter(), study_uid))
info = reads.case_info(study_uid)
case.header(info)
if can(user, Permission.ADJUDICATE):
    st.page_link(
        "pages/adjudication.py",
        label="Adjudicate this study",
        icon=":material/gavel:",
        query_params={"study": study_uid},
    )
image_col, side_col = st.columns([3, 2], gap="medium")
with image_col:
    viewer.render(user, info)
with side_col:
    history = reads.history(study_uid)
    feedback_form.render(user, info, history)
    case.history(history, user)
    case.details(info)
