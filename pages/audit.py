"""Audit: search the ledger, open an entry with its inclusion proof, verify the whole ledger, export evidence."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission, can
from ui import audit, auth

user = auth.require_page(Permission.VIEW_AUDIT_LOG)
st.title("Audit")
st.caption(
    "Every action Vigil takes is an entry in a hash-chained ledger, and signed checkpoints kept outside "
    "the database vouch for it. Search it by actor, action, study, model version or time, open an entry "
    "to see its payload and its inclusion proof, or verify the whole ledger. Looking here is not recorded; "
    "an evidence export is."
)
audit.verify_section(user)
if can(user, Permission.EXPORT_EVIDENCE):
    audit.export_section(user)
if (requested := st.query_params.get("seq")) is not None:
    # Opened from the results or from an address typed by hand: that entry.
    audit.entry_section(user, requested)
    st.stop()
query = audit.filter_form()
results = audit.load_page(user, query)
if results is not None:
    audit.results_table(results)
    audit.pick_entry(results)
