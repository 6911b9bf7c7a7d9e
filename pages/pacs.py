"""PACS: each site's DICOMweb endpoint, its last connection test, and pushes waiting for a retry."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, pacs

user = auth.require_page(Permission.VIEW_PACS)
st.title("PACS")
st.caption(
    "Each site's PACS as configured in vigil.toml ([pacs.SITE]); credentials are never shown. Studies are "
    "pulled with `vigil pacs pull` or `vigil pacs watch`; with auto-push on, a study's result report and "
    "Grad-CAM go back to its PACS after a reader records a verdict."
)
pacs.confirmation()
view = pacs.load(user)
pacs.sites_table(view)
pacs.test_buttons(user, view)
pacs.failures_table(view)
