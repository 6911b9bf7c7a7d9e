"""Deployment: what serves, the registry and its gate reports, promote under a signature, roll back, history."""

from __future__ import annotations

import streamlit as st

from core.services.permissions import Permission
from ui import auth, deployment

user = auth.require_page(Permission.VIEW_DEPLOYMENTS)
st.title("Deployment")
st.caption(
    "One version serves every site, unless a site was switched on its own. A challenger reaches patients only "
    "after it passed the change-control gate against the version serving there on the locked hold-out and a "
    "CMIO signed its promotion, fleet-wide or for chosen sites; a rollback returns that scope to the version "
    "before at once. Every switch is in the history and the audit trail."
)
view = deployment.load(user)
deployment.status(view)
deployment.proposals_section(user)
deployment.gate_form(user, view)
deployment.pending_signature(user)
deployment.promote_form(user, view)
deployment.rollback_form(user, view)
deployment.gate_reports(user, view)
deployment.registry_table(view)
deployment.history_section(user, view)
