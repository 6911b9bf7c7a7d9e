"""The review viewer: one cached case-view read, the Cornerstone3D component, and the explanation switch.

:func:`load` is the page's only read for a case: it calls ``core.services.case_view`` once
(cached per user, study, map choice and data version) for the image, the maps, the report's
verdicts, the card essentials and the history. :func:`render` draws the method switch, the
overlay toggle and the browser viewer, where window / level, zoom, pan, measuring and the
overlay's opacity, threshold, outline and flash run without a rerun.

Safe defaults: every case opens with the overlay shown (the toggle's key names the study, so a
reader's "off" never carries to the next case, and the case header says when it is off); the
map is drawn in a perceptually uniform colour map, transparent below a threshold; methods the
explanation report marks "not supported" are only offered under "Experimental", with its reason.
"""

from __future__ import annotations

from typing import Final

import streamlit as st

from core.errors import UnknownStudyError
from core.services import case_view, explanation
from core.services.case_view import CaseView, PriorView
from core.services.explanation import ExplainMethod
from core.services.permissions import Permission, SignedInUser, require
from ui import cached, explanations, resources, state
from ui.components import dicom_viewer
from ui.components.dicom_viewer.payload import viewer_args

__all__ = ["load", "overlay_hidden", "render"]

DEFAULT_METHOD: Final = ExplainMethod.GRADCAM
_METHOD_KEY: Final = "view-method"
#: The component keeps one iframe across cases (a stable key), so Cornerstone starts once.
_VIEWER_KEY: Final = "dicom-viewer"


def _overlay_key(uid: str) -> str:
    return f"view-overlay-{uid}"


def _experimental_key(uid: str) -> str:
    return f"view-experimental-{uid}"


def _experimental_method_key(uid: str) -> str:
    return f"view-experimental-method-{uid}"


def overlay_hidden(study_uid: str) -> bool:
    """True when the reader switched the overlay off on this case (the header says so)."""
    return st.session_state.get(_overlay_key(study_uid)) is False


def _requested(uid: str) -> tuple[ExplainMethod, bool]:
    """The map the reader asked for on this case, and whether it was asked for as experimental."""
    if st.session_state.get(_experimental_key(uid)) is True:
        chosen = st.session_state.get(_experimental_method_key(uid))
        if isinstance(chosen, ExplainMethod):
            return chosen, True
    chosen = st.session_state.get(_METHOD_KEY)
    return (chosen if isinstance(chosen, ExplainMethod) else DEFAULT_METHOD), False


def load(reads: cached.Reads, study_uid: str) -> CaseView | None:
    """Everything the case page shows, from one ``case_view`` call (cached at ``reads``' data version).

    Returns None when no study has that UID (a mistyped or stale link).

    Raises
    ------
    PermissionDeniedError
        ``reads.user`` may not review studies.
    """
    require(reads.user, Permission.REVIEW_STUDIES)
    method, experimental = _requested(study_uid)
    try:
        return _case_view(reads.url, reads.user, study_uid, (method.value,), experimental, reads.version)
    except UnknownStudyError:
        return None


@st.cache_data(show_spinner="Opening the case...", max_entries=64)
def _case_view(
    url: str, user: SignedInUser, study_uid: str, methods: tuple[str, ...], experimental: bool, version: str
) -> CaseView:
    # Keyed on the user too: the history a reader may see depends on who asks.
    return case_view.open_case_view(
        resources.session_factory(),
        user,
        study_uid,
        model=resources.model,
        artifacts_dir=resources.settings().artifacts_dir,
        now=resources.utc_now,
        methods=tuple(ExplainMethod(m) for m in methods),
        experimental=experimental,
    )


def render(user: SignedInUser, view: CaseView, *, prior: PriorView | None = None) -> None:
    """The method switch, the overlay toggle, the viewer (with ``prior`` beside it), and the map's words."""
    uid = view.study_uid
    if view.image is None:
        st.error(f"This study's image cannot be shown: {view.image_problem}", icon=":material/broken_image:")
        st.caption("Nothing else is affected: use Next / Previous, or go back to the worklist.")
        return
    method, experimental = _controls(view)
    overlay = bool(st.session_state.get(_overlay_key(uid), True))
    # ``?renderer=cpu`` forces Cornerstone's CPU rendering (thin clients with broken WebGL, tests).
    renderer = "cpu" if st.query_params.get("renderer") == "cpu" else "auto"
    shown = method if method in view.maps else None
    args = viewer_args(view, shown, overlay=overlay, renderer=renderer, prior=prior)
    dicom_viewer.render(args, key=_VIEWER_KEY)
    _words(view, method, experimental=experimental, overlay=overlay)
    if overlay and method in view.maps:
        _audit_view(user, view, method)


def _controls(view: CaseView) -> tuple[ExplainMethod, bool]:
    """Main switch (supported methods), overlay toggle, and the "Experimental" control."""
    uid = view.study_uid
    main = view.main_methods
    if st.session_state.get(_METHOD_KEY) not in main:
        st.session_state.pop(_METHOD_KEY, None)  # never keep a choice the switch no longer offers
    cols = st.columns([3, 2], vertical_alignment="bottom")
    with cols[0]:
        chosen = st.segmented_control(
            "Explanation",
            main,
            default=DEFAULT_METHOD if DEFAULT_METHOD in main else (main[0] if main else None),
            format_func=lambda m: m.label,
            key=_METHOD_KEY,
            help="Methods the explanation report supports (or has not judged) for this model version.",
        )
    cols[1].toggle("Show explanation overlay", value=True, key=_overlay_key(uid), help="On at the start of every case.")
    method = chosen if isinstance(chosen, ExplainMethod) else DEFAULT_METHOD
    experimental = _experimental(view)
    return (experimental, True) if experimental is not None else (method, False)


def _experimental(view: CaseView) -> ExplainMethod | None:
    """The experimental method the reader switched on for this case, or None."""
    methods = view.experimental_methods
    if not methods:
        return None
    uid = view.study_uid
    with st.expander("Experimental explanations: not supported by the explanation report", icon=":material/science:"):
        for m in methods:
            st.warning(f"**{m.label}**: {view.trust[m].sentence}", icon=":material/report:")
        on = st.toggle("Show an experimental map on this case", value=False, key=_experimental_key(uid))
        chosen = st.radio(
            "Experimental method", methods, format_func=lambda m: m.label, key=_experimental_method_key(uid)
        )
    return chosen if on and isinstance(chosen, ExplainMethod) else None


def _words(view: CaseView, method: ExplainMethod, *, experimental: bool, overlay: bool) -> None:
    """Legend, version notice, why there is no map, and the report's verdict."""
    shown = view.maps.get(method)
    if experimental:
        st.warning(f"Experimental: the report says not to rely on {method.label}.", icon=":material/science:")
    if shown is None:
        reason = view.map_problems.get(method, "no map was made for this study.")
        st.caption(f"No {method.label} overlay: {reason}")
    else:
        if overlay:
            explanations.legend(method)
            st.caption("Colour only where the map is at or above the threshold (magma colour map); keys: F flash.")
        explanations.version_notice(shown)
    explanations.trust_note(method, view.trust[method].sentence)


def _audit_view(user: SignedInUser, view: CaseView, method: ExplainMethod) -> None:
    """Audit, once per session, case and explanation, that a map was shown."""
    shown = view.maps[method]
    if not state.viewed(view.study_uid, shown.explanation_id):
        explanation.record_viewed(resources.session_factory(), user, shown, now=resources.utc_now)
        state.mark_viewed(view.study_uid, shown.explanation_id)
