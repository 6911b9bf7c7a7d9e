"""Worklist widgets: the filter bar, the page table, the pager and the "open a study" controls.

The default list is a triage list: live studies only, model-positive and high-score studies
first, each with its arrival time (display zone) and turnaround. The whole page of 25 rows is
drawn at its full height, so nothing hides in an inner scroll on a 1000-px screen.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

import streamlit as st

from core.services.worklist import (
    Cohort,
    ReviewStatus,
    ScoreBand,
    WorklistFilter,
    WorklistOrder,
    WorklistPage,
    WorklistRow,
    turnaround,
)
from ui import localtime, state

__all__ = [
    "filter_bar",
    "label_text",
    "open_controls",
    "pager",
    "table",
    "table_height",
    "table_rows",
    "turnaround_text",
]

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
_ORDERS: Final = {
    WorklistOrder.PRIORITY: "Positive first (triage)",
    WorklistOrder.SCORE: "Highest score first",
    WorklistOrder.ARRIVAL: "Oldest first",
}
_COHORTS: Final = {
    Cohort.LIVE: "Live studies",
    Cohort.BENCHMARK: "Benchmark (retrospective)",
    Cohort.ANY: "Both",
}
_COHORT_ICONS: Final = {
    Cohort.LIVE: ":material/sensors:",
    Cohort.BENCHMARK: ":material/inventory_2:",
    Cohort.ANY: ":material/select_all:",
}


def filter_bar(sites: list[str], current: WorklistFilter) -> WorklistFilter:
    """Cohort, site, date, score band, review status and order; returns the filter the reader chose."""
    cohorts = list(_COHORTS)
    cohort = st.segmented_control(
        "Studies",
        cohorts,
        default=current.cohort,
        required=True,
        format_func=lambda c: f"{_COHORT_ICONS[c]} {_COHORTS[c]}",
        key="wl-cohort",
    )
    cols = st.columns([3, 2, 2, 3, 3, 3])
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
        order=order or WorklistOrder.PRIORITY,
        cohort=cohort,
    )


def label_text(row: WorklistRow) -> str:
    """The model's call in words: above / below its threshold, or why there is no score."""
    if row.score is None or row.threshold is None:
        return "Not scored" if row.prediction_id is not None else "Pending"
    side = "≥" if row.label else "<"
    return f"{'Positive' if row.label else 'Negative'} ({row.score:.2f} {side} {row.threshold:.2f})"


def turnaround_text(row: WorklistRow, now: datetime) -> str:
    """``read after 2 h 05 min`` once someone read the study, ``waiting 3 d 4 h`` until then."""
    span = localtime.duration_text(turnaround(row, now))
    return f"read after {span}" if row.first_read_at is not None else f"waiting {span}"


def table_rows(items: tuple[WorklistRow, ...], now: datetime) -> dict[str, list[object]]:
    """The table's columns for ``items``: the model's call first, then arrival and turnaround."""
    tz = localtime.zone()
    return {
        "Model call": [label_text(r) for r in items],
        "Score": [r.score for r in items],
        "Accession": [r.accession_number for r in items],
        "Site": [r.site_name for r in items],
        "Arrived": [localtime.local_text(r.arrived_at, tz) for r in items],
        "Turnaround": [turnaround_text(r, now) for r in items],
        "Study date": [r.study_date for r in items],
        "Vendor": [r.vendor for r in items],
        "Readers": [r.readers for r in items],
        "Read by me": [r.reviewed_by_me for r in items],
    }


#: Streamlit's data-grid geometry (px): header and row height, and the frame around them.
_ROW_PX: Final = 35
_FRAME_PX: Final = 3


def table_height(n_rows: int) -> int:
    """Pixels that show ``n_rows`` rows and the header with no inner scroll bar.

    Streamlit's automatic height stops at about ten rows and scrolls the rest inside the table,
    which hid 15 of the 25 studies of a page on a 1000-px reading-room screen.
    """
    return (n_rows + 1) * _ROW_PX + _FRAME_PX


def table(page: WorklistPage) -> str | None:
    """The page's studies as one table; returns the StudyInstanceUID of a clicked row, if any."""
    if not page.items:
        st.info("No studies match these filters.")
        return None
    event = st.dataframe(
        table_rows(page.items, datetime.now(UTC)),
        hide_index=True,
        width="stretch",
        height=table_height(len(page.items)),
        row_height=_ROW_PX,
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
    # Stable keys: the buttons (and their N / P shortcuts) stay the same widgets across page
    # changes and a return from the case page, whatever this page's label or disabled state.
    if left.button(
        "Previous page", icon=":material/chevron_left:", disabled=page.page == 0, shortcut="P", key="wl-prev"
    ):
        state.set_worklist_page(page.page - 1)
        st.rerun()
    middle.caption(
        f"Page {page.page + 1} of {page.pages_text} · {page.total_text} studies · scores from "
        f"{page.model_version or 'no serving model'}"
    )
    last = page.page >= page.pages - 1
    if right.button("Next page", icon=":material/chevron_right:", disabled=last, shortcut="N", key="wl-next"):
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
