"""Outcomes: EMR ingest runs, linkage per site, label backlog and delay, label sources, codes to map."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, outcomes

user = auth.require_page(Permission.VIEW_PERFORMANCE)
st.title("Outcomes")
st.caption(
    "Labels arrive late and from the EMR: what was ingested, how it linked to studies, how long each site "
    "waits for its labels, and where each label of record comes from. The sample outcomes are SYNTHETIC."
)
view = outcomes.load_overview(user)
outcomes.render_summary(view)
outcomes.render_runs(view)
outcomes.render_linkage(view)
outcomes.render_backlog(view)
outcomes.render_source_mix(view)
outcomes.render_unmapped(view)
