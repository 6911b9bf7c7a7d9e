"""Worklist: the reader's studies, filtered and paged, with the model's score; open one to review."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, cached, state
from ui.components import worklist

user = auth.require_page(Permission.REVIEW_STUDIES)
reads = cached.reads(user)
st.title("Worklist")
flt = worklist.filter_bar(reads.site_names(), state.worklist_filter())
state.set_worklist_filter(flt)
page = reads.worklist_page(flt, state.worklist_page(), 25)
clicked = worklist.table(page)
worklist.pager(page)
chosen = worklist.open_controls(page) or clicked
if chosen is not None:
    worklist.open_case(chosen)
