"""Case page widgets: next / previous, the model's call, model card essentials, DICOM metadata, history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import streamlit as st

from core.services.feedback import FeedbackRecord
from core.services.permissions import Permission, SignedInUser, can
from core.services.review import CaseInfo, CaseStudy
from core.services.worklist import Neighbours
from ui import state
from ui.components.dicom_viewer.payload import LENGTH_UNITS
from ui.components.frame import DEMO_NOTICE

__all__ = ["details", "header", "history", "navigation_bar", "study_from_url", "sync_url"]

WORKLIST_PAGE: Final = "pages/worklist.py"
#: The ``?study=`` value this session last wrote, to tell a new deep link from our own echo.
_SYNCED: Final = "vigil.case.url_study"


def study_from_url() -> str | None:
    """The study to show: a new ``?study=UID`` deep link wins, else the session's current study.

    The URL is then kept in step with the case shown (:func:`sync_url`), so after J / K the old
    value in the address bar is recognised as our own and not reopened.
    """
    wanted = st.query_params.get("study")
    if wanted and wanted != st.session_state.get(_SYNCED):
        state.open_study(wanted)
    return state.current_study()


def sync_url(study_uid: str) -> None:
    """Write ``?study=UID`` for the case on screen, so the address can be sent to a colleague."""
    st.session_state[_SYNCED] = study_uid
    if st.query_params.get("study") != study_uid:
        st.query_params["study"] = study_uid


def navigation_bar(nav: Neighbours) -> None:
    """Previous (K) / next (J) study in the current worklist, and back to it (W)."""
    cols = st.columns([1, 1, 1, 4])
    target = None
    if cols[0].button("Previous", icon=":material/arrow_back:", disabled=nav.previous is None, shortcut="K"):
        target = nav.previous
    if cols[1].button("Next", icon=":material/arrow_forward:", disabled=nav.next is None, shortcut="J"):
        target = nav.next
    if cols[2].button("Worklist", icon=":material/list:", shortcut="W"):
        st.switch_page(WORKLIST_PAGE)
    if target is not None:
        state.open_study(target)
        st.rerun()


def header(info: CaseInfo, *, overlay_hidden: bool = False) -> None:
    """The study's title line and the model's call on it, in one block.

    ``overlay_hidden``: the reader switched the explanation overlay off on this case; said here,
    so it is never off without the reader seeing that it is.
    """
    s = info.study
    title = f"### {_escape(s.accession_number or s.study_uid)} · {_escape(s.site)} · {s.study_date or 'no date'}"
    pred = info.prediction
    if pred is None:
        call = "The serving model has not scored this study yet (`vigil predict`)."
    elif pred.score is None:
        call = f"**Not scored** by `{pred.model_version}`: {_escape(pred.fallback or 'no reason recorded')}"
    else:
        above = bool(pred.label)
        call = (
            f"**Model score {pred.score:.2f}**, {'at or above' if above else 'below'} the operating threshold "
            f"{pred.threshold:.2f}: {'nodule suspected' if above else 'no nodule suspected'} · model "
            f"`{pred.model_version}`"
        )
    st.markdown(f"{title}\n\n{call}")
    if overlay_hidden:
        st.warning(
            "The explanation overlay is **off** on this case (your choice); it is on again at the next case.",
            icon=":material/visibility_off:",
        )


def details(info: CaseInfo) -> None:
    """Model card essentials (version, intended use, threshold) and the key DICOM metadata, in one block."""
    card = info.card
    lines = []
    if card is not None:
        lines.append(f"**Model** `{card.version}` · operating threshold **{card.operating_threshold:.2f}**  ")
        lines.append(f"Intended use: {_escape(card.intended_use)}")
        if card.synthetic:
            lines.append(f"\n:orange[{DEMO_NOTICE}]")
    rows = "\n".join(f"| {name} | {_escape(_shorten(value))} |" for name, value in _metadata(info.study))
    lines.append(f"\n| DICOM attribute | Value |\n|---|---|\n{rows}")
    st.markdown("\n".join(lines))


#: ASCII punctuation that Markdown, Streamlit's emoji / icon shortcodes or LaTeX would interpret.
_MARKDOWN_SPECIALS: Final = frozenset("\\`*_{}[]()#+-.!|<>~$&:")


def _shorten(text: str, limit: int = 36) -> str:
    """Long unbroken values (UIDs) cut in the middle, so the table fits its column; text with spaces wraps."""
    if len(text) <= limit or any(c.isspace() for c in text):
        return text
    keep = (limit - 1) // 2
    return f"{text[:keep]}…{text[-keep:]}"


def _escape(text: str) -> str:
    """DICOM header text shown verbatim: every Markdown and HTML control character escaped."""
    flat = " ".join(text.split())
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in flat) or "—"


def _metadata(s: CaseStudy) -> list[tuple[str, str]]:
    spacing = "not stated"
    if s.spacing is not None:  # what a length measured with it means, then where it was read
        unit = LENGTH_UNITS[s.spacing.basis]
        spacing = f"{s.spacing.row_mm:.3g} × {s.spacing.col_mm:.3g} {unit}, from {s.spacing.source.attribute}"
    return [
        ("Site", s.site),
        ("Vendor", f"{s.vendor} ({s.manufacturer})" if s.manufacturer else s.vendor),
        ("Device", s.manufacturer_model_name),
        ("Station", s.station_name),
        ("Protocol", s.protocol_name),
        ("Study date", str(s.study_date or "")),
        ("Accession", s.accession_number),
        ("Modality / view", f"{s.modality} {s.view_position} {s.body_part}".strip()),
        ("Patient age / sex", f"{s.patient_age} {s.patient_sex}".strip()),
        ("kVp", "" if s.kvp is None else f"{s.kvp:g}"),
        ("Matrix", f"{s.rows} × {s.columns} px"),
        ("Pixel spacing", spacing),
        ("Software", s.software_versions),
        ("Study UID", s.study_uid),
    ]


def history(records: Sequence[FeedbackRecord], user: SignedInUser) -> None:
    """The study's feedback, oldest first; corrected rows say which row replaced them."""
    st.markdown("**History**")
    if not can(user, Permission.ADJUDICATE) and not any(r.username == user.username for r in records):
        st.caption("Other readers' feedback on this study, if any, is shown once you have recorded yours.")
    if not records:
        return
    rows = {
        "#": [r.id for r in records],
        "When (UTC)": [r.created_at.strftime("%Y-%m-%d %H:%M") for r in records],
        "Reader": [f"{r.username} ({r.reader_role})" for r in records],
        "Agrees": [r.agrees for r in records],
        "Finding": [r.finding for r in records],
        "Confidence": [r.confidence for r in records],
        "Explanation": [r.explanation_rating or "—" for r in records],
        "Time on case": [f"{r.time_on_case_ms / 1000:.0f} s" for r in records],
        "Comment": [r.comment for r in records],
        "Status": ["current" if r.current else f"corrected by #{r.superseded_by}" for r in records],
    }
    st.dataframe(rows, hide_index=True, width="stretch")
