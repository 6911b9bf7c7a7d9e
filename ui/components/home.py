"""The landing page: who you are, what Vigil does for your role, and where to start."""

from __future__ import annotations

from typing import Final

import streamlit as st

from core.services.permissions import Permission, Role, SignedInUser, can
from core.services.worklist import WorklistFilter
from ui import auth, cached

__all__ = ["render"]

_ROLE_TEXT: Final = {
    Role.RADIOLOGIST: "Work your worklist: each case shows the image, the model's score and its Grad-CAM "
    "overlay, and records your read.",
    Role.CHAMPION: "Read cases like a radiologist, see every reader's feedback, and adjudicate disagreements.",
    Role.CMIO: "Compare site performance with the retrospective benchmark and approve deployments.",
    Role.ML_ENGINEER: "Retrain, re-validate, promote or roll back model versions.",
    Role.ADMIN: "Manage the accounts that sign in to Vigil.",
    Role.AUDITOR: "Verify the tamper-evident audit trail and export the evidence package.",
}


def render(user: SignedInUser) -> None:
    """Greeting, the role's purpose and, for readers, how many studies wait."""
    st.title("Vigil")
    st.markdown(f"Welcome, **{auth.display_name(user)}**. {_ROLE_TEXT[user.role]}")
    if can(user, Permission.REVIEW_STUDIES):
        waiting = cached.reads(user).worklist_page(WorklistFilter(), 0, 1).total_text
        st.metric("Studies not yet read by you", waiting)
        if st.button("Open the worklist", type="primary", icon=":material/list:", shortcut="O"):
            st.switch_page("pages/worklist.py")
    st.caption(
        "Keyboard: on the worklist, O opens the selected study and N / P change page; on a case, "
        "J / K go to the next / previous study and W back to the worklist."
    )
