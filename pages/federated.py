"""Federated: runs across sites, launching one, and each run's rounds, site updates, privacy spent and nodes."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, federated

user = auth.require_page(Permission.VIEW_FEDERATED)
st.title("Federated training")
st.caption(
    "Sites train together without pooling images: each trains on its own studies and sends a signed update; "
    "the server refuses any update that fails verification or comes from an incompatible node, and records "
    "every round in the audit trail. The aggregate is a challenger like any other model: it reaches patients "
    "only through the change-control gate."
)
view = federated.load(user)
federated.live(user, view)
federated.launch_form(user, view)
