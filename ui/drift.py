"""The drift page's pieces: cached monitoring reads, plotly figures and render functions.

``pages/drift_monitor.py`` calls these in order. Figures are built from ``core.services.monitoring``
results only (control charts with their limits and alarms, the BOCPD run-length posterior, the
metadata-novelty timeline); nothing here computes a statistic. What a CMIO counts and handles is
an *incident* (a site's related alerts together); each alert stays readable as its evidence.

Every action ends with a rerun: the view is cached per data version, which every audited action
moves, so the counts and tables drawn after it are the new state, never the one before.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.errors import BadInputError
from core.services import monitoring
from core.services.monitoring import (
    NOVELTY_ATTRIBUTES,
    STREAMS,
    AlertRecord,
    Incident,
    MonitoringView,
    SiteMonitoring,
    StreamReport,
    stream_title,
)
from core.services.permissions import APPROVER_OR_ENGINEER, Permission, SignedInUser, can_any, require
from ui import resources

__all__ = [
    "alert_evidence",
    "bocpd_figure",
    "chart_figure",
    "incident_inbox",
    "monitoring_view",
    "novelty_figure",
    "novelty_timeline",
    "run_controls",
    "settings_caption",
    "site_counts_text",
    "site_picker",
    "stream_panel",
]

# Okabe-Ito colours: told apart with any common colour-vision deficiency.
_ALARM_COLOURS: Final = {"cusum": "#D55E00", "ewma": "#E69F00", "bocpd": "#CC79A7"}
#: Plotly's date ticks: days, never "23:59:59.999" hour ticks on a range of a day or two.
_DATE_TICKS: Final = "%Y-%m-%d"
_DAY_MS: Final = 86_400_000
#: Session-state key of the message an action leaves for the rerun that shows its result.
_FLASH: Final = "drift-flash"


def _handles_alerts(user: SignedInUser) -> bool:
    return can_any(user, APPROVER_OR_ENGINEER)


# --- reads ----------------------------------------------------------------------------------------


def monitoring_view(user: SignedInUser) -> MonitoringView | str:
    """The monitors over every deployment site, cached per data version; a sentence when unavailable."""
    require(user, Permission.VIEW_PERFORMANCE)
    sf = resources.read_session_factory()
    return _view(resources.settings().database_url, monitoring.data_version(sf))


@st.cache_resource(show_spinner="Running the drift monitors...", max_entries=4)
def _view(url: str, version: str) -> MonitoringView | str:
    # url and version are cache keys only; the result is frozen, so sessions may share it.
    try:
        return monitoring.compute_monitoring(resources.read_session_factory())
    except BadInputError as exc:
        return str(exc)


# --- header and controls --------------------------------------------------------------------------


def settings_caption(view: MonitoringView) -> None:
    """The false-alarm budget in words, the calibrated thresholds, the windows and the baselines."""
    cal, cfg = view.calibrations, view.config
    st.caption(
        f"Model {view.model_version}. {cfg.settings.budget_statement()} "
        f"CUSUM k={cal['cusum'].parameter:g}, h={cal['cusum'].threshold:.2f}; EWMA λ={cal['ewma'].parameter:g}, "
        f"L={cal['ewma'].threshold:.2f} (exact time-varying limits). Windows: {cfg.windowing.label} "
        f"(PSI, KS, AUC: {cfg.distance_window.label}). A chart starts once its baseline holds "
        f"{cfg.settings.min_observations} values ({cfg.settings.distance_warmup} windows for PSI, KS, AUC), or "
        f"{cfg.settings.min_events} events and {cfg.settings.min_events} non-events for a rate. "
        "Demonstration model on synthetic phantoms."
    )


def site_picker(view: MonitoringView) -> SiteMonitoring | None:
    """Choose a site, then its counts from ``view``; None when no deployment site is registered.

    The options are the bare site names: a count inside an option's label stayed stale in the
    browser after an action (Streamlit keeps a keyed selectbox's shown label), so the counts
    are drawn beside it, fresh on every run.
    """
    names = [s.site for s in view.sites]
    if not names:
        st.info("No deployment site is registered yet; an ML engineer or administrator adds sites.")
        return None
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    choice = left.selectbox("Site", names, key="drift-site")
    right.markdown(site_counts_text(view, choice))
    return next(s for s in view.sites if s.site == choice)


def site_counts_text(view: MonitoringView, site: str) -> str:
    """``riverside: **1 unresolved incident** · 2 alerts`` and the other sites' unresolved counts."""
    alerts = sum(a.site == site for a in view.alerts)
    others = " · ".join(f"{s.site} {len(view.unresolved_incidents(s.site))}" for s in view.sites if s.site != site)
    head = f"{site}: **{_plural(len(view.unresolved_incidents(site)), 'unresolved incident')}**"
    return f"{head} · {_plural(alerts, 'alert')}" + (f"  \nOther sites, unresolved: {others}" if others else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _flash(message: str) -> None:
    """Keep ``message`` for the rerun that draws the new state (a message drawn now would vanish)."""
    st.session_state[_FLASH] = message


def run_controls(user: SignedInUser) -> None:
    """'Run monitors now': cache image features with the shared model, run, raise alerts and incidents (audited)."""
    message = st.session_state.pop(_FLASH, None)
    if message is not None:
        st.success(message)
    if not st.button("Run monitors now", icon=":material/monitoring:", key="drift-run"):
        return
    # The run takes half a minute on 2 cores: name each stage instead of greying the page.
    with st.status("Running the drift monitors…", expanded=True) as progress:
        st.write(
            ":material/query_stats: Loading the serving models, caching image features, running every monitor, "
            "raising alerts and grouping them into incidents (about half a minute)"
        )
        run = _run(user)
        st.write(":material/refresh: Reading the new state from the store")
        progress.update(label="Monitors ran", state="complete", expanded=False)
    _flash(
        f"Monitors ran: {run.features_computed} studies' image features cached, "
        f"{_plural(len(run.raised), 'new alarm')} in {_plural(len(run.opened), 'new incident')}."
    )
    st.rerun()


def _run(user: SignedInUser) -> monitoring.MonitoringRun:
    # Each version serving a site is loaded (once per server) to cache the features of its studies.
    return monitoring.run_monitoring(
        resources.session_factory(), model=None, load=resources.model, by=user, now=resources.utc_now
    )


# --- incidents and their evidence -----------------------------------------------------------------


def _history(a: AlertRecord | Incident) -> str:
    r = a.record if isinstance(a, Incident) else a
    parts = []
    if r.acknowledged_by:
        parts.append(f"ack {r.acknowledged_by}: {r.acknowledge_note}")
    if r.resolved_by:
        parts.append(f"resolved {r.resolved_by}: {r.resolution_note}")
    return " · ".join(parts)


def _incident_rows(incidents: list[Incident]) -> list[dict[str, object]]:
    return [
        {
            "id": i.id,
            "status": str(i.status),
            "family": str(i.family),
            "first alarm": i.record.first_alarm_date.isoformat(),
            "change from": i.record.change_date.isoformat() if i.record.change_date else "",
            "alarms": len(i.alerts),
            "streams": ", ".join(stream_title(s) for s in i.streams),
            "who / why": _history(i),
        }
        for i in incidents
    ]


def _alert_rows(alerts: list[AlertRecord]) -> list[dict[str, object]]:
    return [
        {
            "id": a.id,
            "status": str(a.status),
            "alarm": a.alarm_date.isoformat(),
            "stream": a.stream,
            "detector": a.detector,
            "change from": a.change_date.isoformat() if a.change_date else "",
            "incident": f"#{a.incident_id}" if a.incident_id is not None else "",
            "summary": a.summary,
            "who / why": _history(a),
        }
        for a in alerts
    ]


def incident_inbox(user: SignedInUser, view: MonitoringView, site: SiteMonitoring) -> None:
    """The site's incidents with their evidence, and (for CMIO and ML engineers) acknowledge / resolve one."""
    st.subheader("Incidents")
    incidents = [i for i in view.incidents if i.site == site.site]
    st.caption(
        f"An incident is this site's alarms of one family (score, image or label streams, or metadata novelty) "
        f"within {_plural(view.config.incident_window_days, 'day')} of its first alarm; acting on it acts on "
        "every unresolved alert in it."
    )
    if not incidents:
        st.caption("No incidents at this site.")
        return
    st.dataframe(_incident_rows(incidents), hide_index=True, use_container_width=True)
    for i in incidents:
        with st.expander(f"#{i.id} · {i.status} · {i.record.summary}", expanded=False):
            st.dataframe(_alert_rows(list(i.alerts)), hide_index=True, use_container_width=True)
    unresolved = [i for i in incidents if not i.is_resolved]
    if unresolved and _handles_alerts(user):
        _incident_form(user, unresolved)


def _incident_form(user: SignedInUser, unresolved: list[Incident]) -> None:
    labels = {i.id: f"#{i.id} {i.family} from {i.record.first_alarm_date.isoformat()} ({i.status})" for i in unresolved}
    with st.form("drift-incident-action", clear_on_submit=True):
        chosen = st.selectbox("Incident", list(labels), format_func=labels.__getitem__)
        note = st.text_input("Why (recorded with your name)")
        ack, resolve = st.columns(2)
        do_ack = ack.form_submit_button("Acknowledge")
        do_resolve = resolve.form_submit_button("Resolve (restarts its charts)")
    if do_ack or do_resolve:
        _change(user, int(chosen), note, resolve=do_resolve)


def _change(user: SignedInUser, incident_id: int, note: str, *, resolve: bool) -> None:
    step = monitoring.resolve_incident if resolve else monitoring.acknowledge_incident
    try:
        incident = step(resources.session_factory(), incident_id, by=user, note=note, now=resources.utc_now)
    except BadInputError as exc:
        st.error(str(exc))
        return
    moved = _plural(len(incident.alerts), "alert")
    _flash(f"Incident #{incident.id} is now {incident.status} with its {moved}; the actions are in the audit log.")
    st.rerun()


def alert_evidence(view: MonitoringView, site: SiteMonitoring) -> None:
    """Every alert of the site, newest first: the evidence, one stream alarm or novelty per row."""
    alerts = [a for a in view.alerts if a.site == site.site]
    if not alerts:
        return
    with st.expander(f"All alerts at this site ({len(alerts)})", expanded=False):
        st.dataframe(_alert_rows(alerts), hide_index=True, use_container_width=True)
        loose = sum(a.incident_id is None and not a.is_resolved for a in alerts)
        if loose:
            st.caption(
                f"{_plural(loose, 'unresolved alert')} from before incidents: the next monitoring run groups them."
            )


# --- stream charts --------------------------------------------------------------------------------


def _dates(report: StreamReport) -> list[date]:
    return [d.item() for d in report.stream.dates]


def chart_figure(report: StreamReport) -> go.Figure:
    """Window values, then the CUSUM and EWMA statistics with their limits, alarms and change estimates."""
    x = _dates(report)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("window value", "CUSUM max(C+, C-)", "EWMA of standardized values"),
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=report.stream.values, mode="markers", name="window value", marker={"size": 5, "color": "#1f77b4"}
        ),
        row=1,
        col=1,
    )
    cusum, ewma = report.traces["cusum"], report.traces["ewma"]
    fig.add_trace(go.Scatter(x=x, y=cusum.statistic, mode="lines", name="CUSUM"), row=2, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=cusum.upper, mode="lines", name="h", line={"dash": "dash", "color": "grey"}), row=2, col=1
    )
    fig.add_trace(go.Scatter(x=x, y=ewma.statistic, mode="lines", name="EWMA"), row=3, col=1)
    for limit in (ewma.upper, ewma.lower):
        fig.add_trace(
            go.Scatter(x=x, y=limit, mode="lines", showlegend=False, line={"dash": "dash", "color": "grey"}),
            row=3,
            col=1,
        )
    for alarm in report.alarms:
        colour = _ALARM_COLOURS[alarm.detector]
        fig.add_vline(x=alarm.alarm_date.isoformat(), line={"color": colour, "width": 2})
        fig.add_vline(x=alarm.change_date.isoformat(), line={"color": colour, "width": 1, "dash": "dot"})
    fig.update_layout(height=520, margin={"l": 40, "r": 10, "t": 40, "b": 30}, legend={"orientation": "h"})
    fig.update_xaxes(type="date", tickformat=_DATE_TICKS)
    return fig


def bocpd_figure(report: StreamReport) -> go.Figure | None:
    """The run-length posterior P(r_t = r) as a heat map (log10), with the MAP run length and change points."""
    result = report.bocpd
    if result is None or result.posterior is None or result.posterior.shape[0] == 0:
        return None
    x = _dates(report)[report.bocpd_offset : report.bocpd_offset + result.posterior.shape[0]]
    width = int(result.map_run_length.max()) + 2
    z = np.log10(np.maximum(result.posterior[:, :width].T, 1e-6))
    fig = go.Figure(
        go.Heatmap(x=x, y=np.arange(width), z=z, colorscale="Viridis", zmin=-6, zmax=0, colorbar={"title": "log10 P"})
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=result.map_run_length, mode="lines", name="MAP run length", line={"color": "white", "width": 1}
        )
    )
    for i in np.flatnonzero(result.alarm):
        fig.add_vline(
            x=x[int(result.change_point[i]) - report.bocpd_offset].isoformat(), line={"color": "red", "dash": "dot"}
        )
    fig.update_layout(height=300, margin={"l": 40, "r": 10, "t": 10, "b": 30}, yaxis_title="run length (windows)")
    return fig


def stream_panel(site: SiteMonitoring) -> None:
    """Choose a stream; show its status, control chart and BOCPD heat map."""
    reports = {r.stream.name: r for r in site.reports}
    if not reports:
        st.info("No streams at this site yet.")
        return
    name = st.selectbox("Stream", list(reports), format_func=lambda n: STREAMS[n].title, key="drift-stream")
    report = reports[name]
    st.caption(
        f"{STREAMS[name].meaning}. Status: **{report.status}** ({report.message}); "
        f"{report.stream.n_windows} windows, {report.stream.n_missing} missing values skipped."
    )
    st.plotly_chart(chart_figure(report), use_container_width=True, key=f"drift-chart-{name}")
    heat = bocpd_figure(report)
    if heat is not None:
        st.caption("BOCPD run-length posterior (Adams & MacKay): a bright band falling to zero marks a change point.")
        st.plotly_chart(heat, use_container_width=True, key=f"drift-bocpd-{name}")
    if site.missing:
        st.caption("Not built: " + "; ".join(f"{STREAMS[k].title}: {v}" for k, v in site.missing.items()))


# --- novelty ------------------------------------------------------------------------------------


def novelty_figure(site: SiteMonitoring) -> go.Figure:
    """Each never-seen vendor, detector, protocol or software version on the day it first appeared."""
    events = site.novelty.events
    fig = go.Figure(
        go.Scatter(
            x=[e.study_date.isoformat() for e in events],
            y=[NOVELTY_ATTRIBUTES[e.attribute] for e in events],
            mode="markers+text",
            text=[e.value for e in events],
            textposition="top center",
            marker={"size": 12, "symbol": "diamond", "color": _ALARM_COLOURS["cusum"]},
        )
    )
    fig.update_layout(height=220, margin={"l": 40, "r": 10, "t": 10, "b": 30})
    first, last = min(e.study_date for e in events), max(e.study_date for e in events)
    # At least a week wide and whole days only: one event alone made plotly tick the hours of its day.
    pad = timedelta(days=max(1, (7 - (last - first).days) // 2 + 1))
    fig.update_xaxes(
        type="date",
        tickformat=_DATE_TICKS,
        range=[(first - pad).isoformat(), (last + pad).isoformat()],
        dtick=_DAY_MS if (last - first).days < 14 else None,
    )
    return fig


def novelty_timeline(site: SiteMonitoring) -> None:
    """The metadata-novelty timeline, or why it is empty."""
    st.subheader("Metadata novelty")
    if site.novelty.warming_up:
        st.caption(f"Warming up: the first {site.novelty.warmup} studies define the known values.")
    if not site.novelty.events:
        st.caption("No vendor, detector, protocol or software version that this site had not sent before.")
        return
    st.plotly_chart(novelty_figure(site), use_container_width=True, key="drift-novelty")
