"""Worklist widgets: the filter bar, the page table, the pager and the "open a study" controls."""

from __future__ import annotations

from datetime import date
from typing import Final

import streamlit as st

from core.services.worklist import (
    ReviewStatus,
    ScoreBand,
    WorklistFilter,
    WorklistOrder,
    WorklistPage,
    WorklistRow,
)
from ui import state

__all__ = ["filter_bar", "label_text", "open_controls", "pager", "table"]

CASE_PAGE: Final = "pages/case_review.py"

_BANDS: Final = {
    ScoreBand.ANY: "Any score",
    ScoreBand.POSITIVE: "At or above threshold",
    ScoreBand.NEGATIVE: "Below threshold",
    ScoreBand.BORDERLINE: "Borderline (threshold ± 0.10)",
    ScoreBand.UNSCORED: "Not scored",
}
_STATUSES: Final = {
    ReviewStatus.NOT_REVIEWED_BY_ME: "Not yet read by me",
    ReviewStatus.REVIEWED_BY_ME: "Read by me",
    ReviewStatus.UNREVIEWED: "Read by nobody",
    ReviewStatus.ANY: "All",
}
_ORDERS: Final = {WorklistOrder.ARRIVAL: "Oldest first", WorklistOrder.SCORE: "Highest score first"}


def filter_bar(sites: list[str], current: WorklistFilter) -> WorklistFilter:
    """Site, date, score band, review status and order; returns the filter the reader chose."""
    cols = st.columns([3, 2, 2, 3, 3, 2])
    chosen = cols[0].multiselect(
        "Sites", sites, default=[s for s in current.sites if s in sites], placeholder="All sites", key="wl-sites"
    )
    date_from = cols[1].date_input("From", value=current.date_from, key="wl-from", format="YYYY-MM-DD")
    date_to = cols[2].date_input("To", value=current.date_to, key="wl-to", format="YYYY-MM-DD")
    bands, statuses, orders = list(_BANDS), list(_STATUSES), list(_ORDERS)
    band = cols[3].selectbox(
        "Model score", bands, index=bands.index(current.band), format_func=lambda b: _BANDS[b], key="wl-band"
    )
    status = cols[4].selectbox(
        "Review status",
        statuses,
        index=statuses.index(current.status),
        format_func=lambda s: _STATUSES[s],
        key="wl-status",
    )
    order = cols[5].selectbox(
        "Order", orders, index=orders.index(current.order), format_func=lambda o: _ORDERS[o], key="wl-order"
    )
    return WorklistFilter(
        sites=tuple(sorted(chosen)),
        date_from=date_from if isinstance(date_from, date) else None,
        date_to=date_to if isinstance(date_to, date) else None,
        band=band or ScoreBand.ANY,
        status=status or ReviewStatus.ANY,
        order=order or WorklistOrder.ARRIVAL,
    )


def label_text(row: WorklistRow) -> str:
    """The model's call in words: above / below its threshold, or why there is no score."""
    if row.score is None or row.threshold is None:
        return "Not scored" if row.prediction_id is not None else "Pending"
    side = "≥" if row.label else "<"
    return f"{'Positive' if row.label else 'Negative'} ({row.score:.2f} {side} {row.threshold:.2f})"


def table(page: WorklistPage) -> str | None:
    """The page's studies as one table; returns the StudyInstanceUID of a clicked row, if any."""
    if not page.items:
        st.info("No studies match these filters.")
        return None
    data = {
        "Accession": [r.accession_number for r in page.items],
        "Site": [r.site_name for r in page.items],
        "Study date": [r.study_date for r in page.items],
        "Vendor": [r.vendor for r in page.items],
        "Score": [r.score for r in page.items],
        "Model call": [label_text(r) for r in page.items],
        "Readers": [r.readers for r in page.items],
        "Read by me": [r.reviewed_by_me for r in page.items],
    }
    event = st.dataframe(
        data,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=f"wl-table-{page.page}",
        column_config={
            "Score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="%.2f"),
            "Study date": st.column_config.DateColumn("Study date", format="YYYY-MM-DD"),
        },
    )
    rows = event.selection.rows if event is not None else []
    return page.items[rows[0]].study_uid if rows else None


def pager(page: WorklistPage) -> None:
    """Previous / next page buttons (keys P and N) and where this page sits."""
    left, middle, right = st.columns([1, 2, 1])
    if left.button("Previous page", icon=":material/chevron_left:", disabled=page.page == 0, shortcut="P"):
        state.set_worklist_page(page.page - 1)
        st.rerun()
    middle.caption(
        f"Page {page.page + 1} of {page.pages} · {page.total} studies · scores from "
        f"{page.model_version or 'no serving model'}"
    )
    if right.button("Next page", icon=":material/chevron_right:", disabled=page.page >= page.pages - 1, shortcut="N"):
        state.set_worklist_page(page.page + 1)
        st.rerun()


def open_controls(page: WorklistPage) -> str | None:
    """Pick a study of this page and open it (key O opens the selected, by default the first)."""
    if not page.items:
        return None
    labels = {r.study_uid: f"{r.accession_number} · {r.site_name} · {label_text(r)}" for r in page.items}
    uids = list(labels)
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    uid = left.selectbox("Study", uids, format_func=lambda u: labels[u], key=f"wl-pick-{page.page}")
    if right.button("Open case", type="primary", icon=":material/open_in_new:", shortcut="O"):
        return uid
    return None


def open_case(study_uid: str) -> None:
    """Show ``study_uid`` on the case page."""
    state.open_study(study_uid)
    st.switch_page(CASE_PAGE)
