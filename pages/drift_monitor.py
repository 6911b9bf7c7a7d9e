"""Drift: per-site incidents with their alerts, control charts with limits and alarms, BOCPD, novelty timeline."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, drift

user = auth.require_page(Permission.VIEW_PERFORMANCE)
st.title("Drift monitoring")
view = drift.monitoring_view(user)
if isinstance(view, str):
    st.info(view)
    st.stop()
drift.settings_caption(view)
drift.run_controls(user)
site = drift.site_picker(view)
if site is None:
    st.stop()
drift.incident_inbox(user, view, site)
drift.alert_evidence(view, site)
st.subheader("Streams")
drift.stream_panel(site)
drift.novelty_timeline(site)
