"""Adjudication: the champion's queue of cases to settle, with image, overlays and evidence; the labelling plan."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import adjudication, auth, cached

user = auth.require_page(Permission.ADJUDICATE)
reads = cached.reads(user)
st.title("Adjudication")
st.caption(
    "Settle what the evidence does not: EMR outcomes against readers, readers against each other, a model "
    "confident and wrong, readers who were unsure. Your label becomes the label of record at once."
)
adjudication.show_recorded()
if requested := st.query_params.get("study"):
    # Opened from a case ("Adjudicate this study"): that study, whether or not it is queued.
    if st.button("Back to the queue", icon=":material/arrow_back:"):
        del st.query_params["study"]
        st.rerun()
    adjudication.settle(user, reads, requested, key="direct")
    st.stop()
site = st.selectbox("Site", ["All sites", *reads.site_names()], key="adjudication-site")
chosen_site = None if site == "All sites" else site
queue_tab, plan_tab = st.tabs(["Queue", "Labelling plan"])
with queue_tab:
    items = adjudication.load_queue(user, chosen_site)
    adjudication.queue_summary(items)
    if not items:
        st.info("Nothing to adjudicate: every disagreement has been settled.")
    else:
        adjudication.queue_table(items)
        uid = adjudication.pick(items, key="adjudication-pick")
        if uid is not None:
            adjudication.settle(user, reads, uid, key="queue")
with plan_tab:
    adjudication.plan_section(user, chosen_site)
