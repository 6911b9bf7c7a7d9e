"""The Federated page's parts: the runs, the launch form, and one run's rounds, sites, privacy and nodes.

Nothing here computes: :mod:`core.services.federated_view` builds what is shown and
:mod:`core.services.federated_live` launches. A launch starts ``vigil fl run`` in the
background and returns at once; the page shows the run's progress as the launcher writes it
into the store. While a run is running, :func:`live` reads the store again every
:data:`REFRESH_S` seconds (a Streamlit fragment: only it reruns, so a half-filled launch form
keeps its values), and reruns the whole page once when the run ends. While none is, it reads every
:data:`IDLE_REFRESH_S` seconds, so a run launched elsewhere (the command line, another browser)
shows without a click and switches the page to the faster pace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.errors import VigilError
from core.services import federated_live, federated_view
from core.services.federated_live import LaunchRequest
from core.services.federated_view import FederatedOverview, NodeStatus, PrivacyRow, RunDetail, RunRow
from core.services.permissions import SignedInUser
from ui import localtime, resources

__all__ = [
    "IDLE_REFRESH_S",
    "REFRESH_S",
    "launch_form",
    "live",
    "load",
    "nodes_table",
    "run_picker",
    "run_section",
    "runs_table",
    "status",
]

_DONE: Final = "vigil.federated.done"
_HASH: Final = 12  # hash characters shown; the full hash is in the audit log and `vigil fl show`
#: Seconds between two reads of the store while a run is running.
REFRESH_S: Final = 5
#: Seconds between two reads while no run is running: how late a run launched elsewhere shows.
IDLE_REFRESH_S: Final = 15


def load(user: SignedInUser) -> FederatedOverview:
    """The page's data, read fresh on every run (a run in progress changes between two)."""
    return federated_view.overview(resources.session_factory(), user, now=resources.utc_now)


def status(view: FederatedOverview) -> None:
    """The outcome of the launch before this rerun, once; and the run in progress, if any."""
    if (done := st.session_state.pop(_DONE, None)) is not None:
        ok, text = done
        (st.success if ok else st.error)(text)
    if view.running is not None:
        run = view.running
        st.info(
            f"Run {run.run_key} is running ({', '.join(run.sites)}; launched by {run.launched_by} at "
            f"{localtime.local_text(run.started_at)}): round {run.rounds_done} of {run.rounds} logged.",
            icon=":material/sync:",
        )
        st.caption(f"Progress is read again every {REFRESH_S} s while the run is running.")
    else:
        st.caption(f"No run is running; a run launched elsewhere shows here within {IDLE_REFRESH_S} s.")


def live(user: SignedInUser, view: FederatedOverview) -> None:
    """The status, the runs, the chosen run and the nodes; read again every few seconds while a run runs.

    ``view`` is the page's read: it sets the section's pace (:data:`REFRESH_S` while a run runs,
    :data:`IDLE_REFRESH_S` otherwise) and is what the first draw shows; each later tick of the
    fragment reads the store again, and redraws the whole page once when a run started or ended,
    which sets the other pace.
    """
    running = view.running is not None
    unshown: FederatedOverview | None = view  # drawn by the first call; each tick reads anew

    # The fragment's ticks call it with the arguments of its first call, so the view is not one.
    @st.fragment(run_every=REFRESH_S if running else IDLE_REFRESH_S)
    def section() -> None:
        nonlocal unshown
        fresh, unshown = unshown or load(user), None
        status(fresh)
        runs_table(fresh)
        if (run_key := run_picker(fresh)) is not None:
            run_section(user, run_key)
        st.subheader("Nodes")
        nodes_table(fresh.nodes)
        if running != (fresh.running is not None):  # a run ended or started: redraw at the other pace
            st.rerun(scope="app")

    section()


def runs_table(view: FederatedOverview) -> None:
    """Every run, newest first."""
    st.subheader("Runs")
    if not view.runs:
        st.caption("No federated run yet.")
        return
    rows = [
        {
            "run": r.run_key,
            "state": r.state,
            "rounds": f"{r.rounds_done} of {r.rounds}",
            "sites": ", ".join(r.sites),
            "strategy": r.strategy + (" + DP" if r.private else "") + (" + SecAgg+" if r.secure else ""),
            "started": localtime.local_text(r.started_at),
            "ended": localtime.local_text(r.ended_at) if r.ended_at else "",
            "model": r.model_version or "",
            "launched by": r.launched_by,
            "reason": r.reason,
        }
        for r in view.runs
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def launch_form(user: SignedInUser, view: FederatedOverview) -> None:
    """The launch form, for roles that may launch; read-only roles see why there is none."""
    st.subheader("Launch a run")
    if not view.can_launch:
        st.caption("Read-only: an ML engineer or an administrator launches federated runs.")
        return
    if len(view.sites_with_keys) < 2:
        st.info("A run needs at least two sites with registered signing keys: `vigil fl keys SITE...`.")
        return
    if view.running is not None:
        st.warning(f"Run {view.running.run_key} is running: one run at a time, a launch now is refused.")
    with st.form("fl-launch"):
        chosen = st.multiselect("Sites", view.sites_with_keys, default=list(view.sites_with_keys), key="fl-sites")
        left, mid, right = st.columns(3)
        rounds = left.number_input("Rounds", min_value=1, max_value=1000, value=3, key="fl-rounds")
        strategy = mid.selectbox("Strategy", view.strategies, key="fl-strategy")
        quorum = right.number_input("Quorum (0 = every site)", min_value=0, max_value=1000, value=0, key="fl-quorum")
        private = st.checkbox("Client-level differential privacy (fedavg only)", key="fl-dp")
        a, b, c, d = st.columns(4)
        noise = a.number_input("Noise multiplier z", min_value=0.0, value=1.0, key="fl-noise")
        clip = b.number_input("Clipping norm C", min_value=0.0, value=1.0, key="fl-clip")
        delta = c.number_input("δ", min_value=0.0, max_value=1.0, value=1e-5, format="%.1e", key="fl-delta")
        budget = d.number_input("ε budget per site", min_value=0.0, value=8.0, key="fl-budget")
        secure = st.checkbox(
            "Secure aggregation (SecAgg+: the server sees only the sum; fedavg only, not with privacy)",
            key="fl-secure",
            help="Against an honest-but-curious coordinating centre. It does not stop a poisoned update "
            "(a robust strategy needs to see each update) and adds no differential privacy.",
        )
        threshold = st.number_input(
            "Sites needed to unmask a round (0 = the quorum, at least 2)",
            min_value=0,
            max_value=1000,
            value=0,
            key="fl-secagg-threshold",
        )
        version = st.text_input("Register the aggregate as (optional)", key="fl-version")
        submitted = st.form_submit_button("Launch", icon=":material/rocket_launch:")
    if submitted:
        request = LaunchRequest(
            sites=tuple(chosen),
            rounds=int(rounds),
            strategy=str(strategy),
            min_sites=int(quorum),
            dp_noise_multiplier=float(noise) if private else None,
            dp_clipping_norm=float(clip) if private else None,
            dp_delta=float(delta),
            epsilon_budget=float(budget) if private else None,
            version=version.strip() or None,
            secure_aggregation=bool(secure),
            secagg_threshold=int(threshold) if secure and threshold else None,
        )
        _launch(user, request)


def _launch(user: SignedInUser, request: LaunchRequest) -> None:
    settings = resources.settings()
    environ = {**os.environ, "VIGIL_HOME": str(settings.home), "VIGIL_DATABASE_URL": settings.database_url}
    try:
        run_key = federated_live.launch_run(
            resources.session_factory(),
            user,
            request,
            vigil=Path(sys.executable).parent / "vigil",
            environ=environ,
            logs_dir=settings.home / "fl-runs" / "launches",
            now=resources.utc_now,
            spawn=federated_live.spawn_detached,
        )
    except VigilError as exc:
        st.session_state[_DONE] = (False, f"Not launched: {exc}")
    else:
        st.session_state[_DONE] = (True, f"Launched run {run_key} in the background; its rounds appear below.")
    st.rerun()


def run_picker(view: FederatedOverview) -> str | None:
    """The run to show in detail (the running one first, else the newest)."""
    if not view.runs:
        return None
    keys = [r.run_key for r in view.runs]
    return st.selectbox("Run", keys, index=0, key="fl-run")


def run_section(user: SignedInUser, run_key: str) -> None:
    """One run: progress, per-site updates and norms, privacy against budget, its nodes."""
    try:
        detail = federated_view.run_detail(resources.session_factory(), user, run_key)
    except VigilError as exc:
        st.error(str(exc))
        return
    _progress(detail.run)
    _updates(detail)
    _privacy(detail)
    st.markdown("**Nodes of this run's sites**")
    nodes_table(detail.nodes)


def _progress(run: RunRow) -> None:
    done = min(run.rounds_done, run.rounds)
    st.progress(done / run.rounds if run.rounds else 0.0, text=f"{run.state}: round {done} of {run.rounds}")
    if run.reason:
        st.caption(f"Reason: {run.reason}")


def _updates(detail: RunDetail) -> None:
    st.markdown("**Site updates per round**")
    if not detail.updates:
        st.caption("No round logged yet.")
        return
    rows = [
        {
            "round": u.round,
            "site": u.site,
            "verdict": "accepted" if u.accepted else "refused",
            "reason": u.reason,
            "update norm": u.update_norm,
            "train loss": u.train_loss,
            "validation AUC": u.val_auc,
            "studies": u.n_examples,
            "update SHA-256": u.update_sha256[:_HASH],
        }
        for u in detail.updates
    ]
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch")
    norms = table[table["update norm"].notna()]
    if not norms.empty:
        st.caption("L2 norm of each accepted update (distance from the global model it started from)")
        st.line_chart(norms.pivot_table(index="round", columns="site", values="update norm"))


def _privacy(detail: RunDetail) -> None:
    if not detail.privacy:
        st.caption("No differential privacy in this run: no ε is accounted.")
        return
    st.markdown(f"**Privacy spent per site** (ε at δ = {detail.delta:g}, all runs added up)")
    st.plotly_chart(_privacy_figure(detail.privacy), key=f"fl-privacy-{detail.run.run_key}")
    rows = [
        {
            "site": p.site,
            "ε before this run": round(p.spent_before, 4),
            "ε in this run": round(p.spent_in_run, 4),
            "ε total": round(p.total, 4),
            "budget": p.budget,
            "left": round(p.budget - p.total, 4),
        }
        for p in detail.privacy
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _privacy_figure(rows: tuple[PrivacyRow, ...]) -> go.Figure:
    sites = [p.site for p in rows]
    fig = go.Figure()
    fig.add_bar(x=sites, y=[p.spent_before for p in rows], name="before this run")
    fig.add_bar(x=sites, y=[p.spent_in_run for p in rows], name="this run")
    budget = max(p.budget for p in rows)
    fig.add_hline(y=budget, line_dash="dash", line_color="firebrick", annotation_text=f"budget ε = {budget:g}")
    fig.update_layout(barmode="stack", yaxis_title="ε", height=300, margin={"t": 30, "b": 30})
    return fig


def nodes_table(nodes: Sequence[NodeStatus]) -> None:
    """Each node's last check-in: what it reported, the server's verdict, when."""
    if not nodes:
        st.caption("No node has checked in yet (a node reports with its first reply in a run).")
        return
    rows = [
        {
            "site": n.site,
            "status": "compatible" if n.compatible else "refused",
            "reason": n.reason,
            "Vigil": n.vigil_version,
            "Flower": n.flwr_version,
            "architecture": n.arch_sha256[:_HASH],
            "preprocessing": n.preprocessing_sha256[:_HASH],
            "last seen": localtime.local_text(n.last_seen_at),
            "in run": n.last_run_key,
        }
        for n in nodes
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
