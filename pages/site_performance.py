"""Site performance: every site's AUC gap to the retrospective benchmark, with intervals, strata and calibration."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, performance

user = auth.require_page(Permission.VIEW_PERFORMANCE)
st.title("Site performance")
st.caption(
    "Pilot drift: how far each deployment site's AUC is from the retrospective benchmark, with honest "
    "uncertainty, broken down by harmonized vendor, protocol, software version and patient strata."
)
settings = performance.controls()
report = performance.load_report(user, settings)
if isinstance(report, str):
    st.info(f"No report yet: {report}")
    st.stop()
performance.render(report, performance.load_curves(user, settings))
