"""The Outcomes page's pieces: the cached EMR overview and its tables and chart.

``pages/outcomes.py`` calls these in order. Everything shown is computed by
``core.services.outcomes_overview``; nothing here counts or averages.
"""

from __future__ import annotations

from typing import Final

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.services.outcomes import PRECEDENCE
from core.services.outcomes_overview import OutcomesOverview, outcomes_overview, overview_version
from core.services.permissions import Permission, SignedInUser, require
from ui import resources

__all__ = [
    "linkage_table",
    "load_overview",
    "render_backlog",
    "render_linkage",
    "render_runs",
    "render_source_mix",
    "render_summary",
    "render_unmapped",
    "runs_table",
    "source_mix_figure",
]

_METHODS: Final = ("study_uid", "accession", "patient_date")
_SOURCE_COLOURS: Final = {
    "adjudicated": "#6a1b9a",
    "ground_truth": "#9e9e9e",
    "emr": "#2e7d32",
    "reader_feedback": "#4c78a8",
}


def load_overview(user: SignedInUser) -> OutcomesOverview:
    """The EMR outcomes overview for ``user`` (cached per data version)."""
    require(user, Permission.VIEW_PERFORMANCE)
    sf = resources.read_session_factory()
    return _overview(resources.settings().database_url, overview_version(sf))


@st.cache_data(show_spinner="Reading the EMR outcomes...", max_entries=8)
def _overview(url: str, version: str) -> OutcomesOverview:
    # url and version are cache keys: another database, new labels or a new ingest recompute.
    return outcomes_overview(resources.read_session_factory())


def render_summary(view: OutcomesOverview) -> None:
    """Headline counts."""
    left, mid, right, far = st.columns(4)
    left.metric("Ingest runs", len(view.runs))
    mid.metric("EMR evidence", view.n_evidence)
    right.metric("Waiting for their study", view.n_unlinked, help="Evidence that links to no stored study yet")
    far.metric("Codes to map", len(view.unmapped))


def runs_table(view: OutcomesOverview) -> pd.DataFrame:
    """One row per ingest run, newest first."""
    return pd.DataFrame(
        [
            {
                "started": r.started_at.strftime("%Y-%m-%d %H:%M"),
                "source": r.run.source_name,
                "kind": r.run.kind,
                "entries": r.run.n_entries,
                "accepted": r.run.n_accepted,
                "rejected": r.run.n_rejected,
                "unmapped": r.run.n_unmapped,
                "new evidence": r.run.n_evidence,
                "linked": r.run.n_linked,
                "outcomes": r.run.n_outcomes,
                "by": r.run.actor,
            }
            for r in view.runs
        ]
    )


def render_runs(view: OutcomesOverview) -> None:
    """The ingest runs."""
    st.subheader("Ingest runs")
    if not view.runs:
        st.info("No FHIR payload has been ingested yet: run `vigil fhir ingest FILE...` or `vigil fhir pull`.")
        return
    st.dataframe(runs_table(view), hide_index=True, width="stretch")


def linkage_table(view: OutcomesOverview) -> pd.DataFrame:
    """Per site: studies, studies with linked EMR evidence, the rate, and evidence by link method."""
    rows = []
    for s in view.sites:
        rate = s.linkage_rate
        row: dict[str, object] = {
            "site": s.site,
            "studies": s.n_studies,
            "with EMR evidence": s.n_linked_studies,
            "linkage rate": "—" if rate is None else f"{rate:.0%}",
        }
        row |= {f"by {m}": s.linked_by_method.get(m, 0) for m in _METHODS}
        rows.append(row)
    return pd.DataFrame(rows)


def render_linkage(view: OutcomesOverview) -> None:
    """Linkage rate per site."""
    st.subheader("Linkage per site")
    st.caption(
        "Evidence links to a study by StudyInstanceUID, then accession number, then patient and date "
        "(the nearest earlier study within 365 days; two studies on that day leave it unlinked)."
    )
    st.dataframe(linkage_table(view), hide_index=True, width="stretch")


def render_backlog(view: OutcomesOverview) -> None:
    """Label backlog and delay per site."""
    st.subheader("Label backlog and delay")
    st.caption(
        "Delay: study date to the clinical date of the first EMR outcome that agrees with the label of record, "
        "over studies labelled from the EMR. Waiting: studies without a label of record (unknown, not negative)."
    )
    frame = pd.DataFrame(
        [
            {
                "site": s.site,
                "labelled": s.n_labelled,
                "waiting": s.n_waiting,
                "median delay (days)": "—" if s.delay_median_days is None else f"{s.delay_median_days:.0f}",
                "p90 delay (days)": "—" if s.delay_p90_days is None else f"{s.delay_p90_days:.0f}",
                "delay measured on": s.n_delay,
            }
            for s in view.sites
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    if view.conflicts:
        st.caption(
            "Studies a source left unsettled because its evidence disagrees (the next source was asked): "
            + ", ".join(f"{k} {v}" for k, v in sorted(view.conflicts.items()))
        )


def source_mix_figure(view: OutcomesOverview) -> go.Figure:
    """Stacked bars: each site's labels of record by source, in precedence order, and the studies waiting."""
    sites = [s.site for s in view.sites]
    fig = go.Figure()
    for source in PRECEDENCE:
        fig.add_bar(
            name=str(source),
            x=sites,
            y=[s.by_source.get(str(source), 0) for s in view.sites],
            marker_color=_SOURCE_COLOURS[str(source)],
        )
    fig.add_bar(name="waiting", x=sites, y=[s.n_waiting for s in view.sites], marker_color="#e0e0e0")
    fig.update_layout(barmode="stack", height=320, margin={"t": 20, "b": 20}, yaxis_title="studies")
    return fig


def render_source_mix(view: OutcomesOverview) -> None:
    """Label-source mix per site."""
    st.subheader("Where the labels come from")
    st.caption("Precedence: " + " > ".join(str(s) for s in PRECEDENCE) + ".")
    st.plotly_chart(source_mix_figure(view), width="stretch")


def render_unmapped(view: OutcomesOverview) -> None:
    """Codes the outcome mapping does not know."""
    st.subheader("Codes to map")
    if not view.unmapped:
        st.caption("Every code seen so far is mapped.")
        return
    st.caption("Nothing is guessed: an admin maps these in the versioned mapping file (`vigil fhir unmapped`).")
    frame = pd.DataFrame(
        [
            {
                "system": u.system,
                "code": u.code,
                "resource": u.resource_type,
                "count": u.count,
                "last seen": u.last_seen,
            }
            for u in view.unmapped
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")
