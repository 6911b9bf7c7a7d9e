"""The landing page: who you are, what Vigil does for your role, and where to start."""

from __future__ import annotations

from typing import Final

import streamlit as st

from core.services import provider_signature
from core.services.permissions import Permission, Role, SignedInUser, can
from core.services.worklist import WorklistFilter
from ui import auth, cached, resources

__all__ = ["render"]

#: Set once Home has taken this session to a waiting signature (the provider returns to a new session).
_TAKEN_TO_SIGNATURE: Final = "vigil.taken_to_signature"

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
    """Greeting, the role's purpose and, for readers, how many studies wait.

    A person back from re-authenticating at the identity provider for a signature lands here (the
    provider returns every browser to the app's root) and is taken on to the signature waiting
    on the Deployment page, once per session.
    """
    if not st.session_state.get(_TAKEN_TO_SIGNATURE) and _signature_waiting(user):
        st.session_state[_TAKEN_TO_SIGNATURE] = True  # once per session: Home stays reachable
        st.switch_page("pages/deployment.py")
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


def _signature_waiting(user: SignedInUser) -> bool:
    if not auth.signed_in_through_provider() or not can(user, Permission.APPROVE_DEPLOYMENT):
        return False
    waiting = provider_signature.pending(resources.read_session_factory(), user.username, now=resources.utc_now())
    return waiting is not None
