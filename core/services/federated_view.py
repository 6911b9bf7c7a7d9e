"""What the Federated page shows: runs (stored, or live from the launcher's progress), per-site detail, nodes.

Read-only, for anyone who may see federated runs (ML engineer, administrator, CMIO). A run is
read from ``fl_run`` once recorded, and from its launch's progress (``fl_launch``) while it
runs, so one view serves both: round progress, each site's update per round (accepted or
refused with the reason, its norm, loss and validation AUC), the ε each site has spent against
its budget, and each node's last check-in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from core.errors import BadInputError
from core.federated.plan import STRATEGIES
from core.federated.privacy import epsilon
from core.services.federated import epsilon_spent, updates_from_events
from core.services.federated_live import running_launch
from core.services.permissions import Permission, SignedInUser, can, require
from core.store import federated_runs
from core.store.engine import SessionFactory
from core.store.federated_runs import FlLaunchRecord, FlNodeRecord, FlRunRecord, FlUpdateRecord

__all__ = [
    "FederatedOverview",
    "NodeStatus",
    "PrivacyRow",
    "RunDetail",
    "RunRow",
    "SiteUpdate",
    "overview",
    "run_detail",
]

#: A node's last check-in, as the store keeps it.
NodeStatus = FlNodeRecord
RUNNING: Final = "running"
#: A launch that ended before its run was recorded (refused at preparation, or its process died).
NOT_RUN: Final = "not run"


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run in the list.

    Attributes
    ----------
    state : str
        ``running``, ``finished``, ``failed`` or ``not run``.
    rounds_done : int
        Rounds the server has logged (aggregated or failed closed).
    ended_at : datetime or None
        None while running.
    """

    run_key: str
    state: str
    sites: tuple[str, ...]
    rounds_done: int
    rounds: int
    strategy: str
    private: bool
    launched_by: str
    started_at: datetime
    ended_at: datetime | None
    model_version: str | None
    reason: str
    secure: bool = False  # SecAgg+: the server saw only the sum of the updates


@dataclass(frozen=True, slots=True)
class SiteUpdate:
    """One site's update in one round; the figures are None where the site reported none."""

    round: int
    site: str
    accepted: bool
    reason: str
    update_norm: float | None
    train_loss: float | None
    n_examples: int | None
    val_auc: float | None
    update_sha256: str


@dataclass(frozen=True, slots=True)
class PrivacyRow:
    """ε one site has spent, before this run and in it, against its budget (all runs together).

    Attributes
    ----------
    spent_before, spent_in_run, budget : float
        ε at the run's δ; ``spent_in_run`` is recomputed from the rounds released so far.
    """

    site: str
    spent_before: float
    spent_in_run: float
    budget: float

    @property
    def total(self) -> float:
        """ε spent with this run (basic composition: added up)."""
        return self.spent_before + self.spent_in_run


@dataclass(frozen=True, slots=True)
class RunDetail:
    """Everything the page shows about one run."""

    run: RunRow
    updates: tuple[SiteUpdate, ...]
    privacy: tuple[PrivacyRow, ...]
    delta: float | None
    nodes: tuple[FlNodeRecord, ...]


@dataclass(frozen=True, slots=True)
class FederatedOverview:
    """The page's top: runs newest first, the running one, what a launch may choose, every node."""

    runs: tuple[RunRow, ...]
    running: RunRow | None
    can_launch: bool
    sites_with_keys: tuple[str, ...]
    strategies: tuple[str, ...]
    nodes: tuple[FlNodeRecord, ...]


def overview(session_factory: SessionFactory, user: SignedInUser, *, now: Callable[[], datetime]) -> FederatedOverview:
    """The runs, the one running now and the nodes, for ``user``.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not see federated runs.
    """
    require(user, Permission.VIEW_FEDERATED)
    live = running_launch(session_factory, now=now())
    with session_factory() as session:
        stored = federated_runs.list_runs(session)
        launches = federated_runs.list_launches(session)
        keys = federated_runs.site_keys(session)
        nodes = federated_runs.list_nodes(session)
    recorded = {r.run_key for r in stored}
    rows = [_launch_row(la) for la in launches if la.run_key not in recorded]
    by_launch = {la.run_key: la for la in launches}
    rows += [_stored_row(r, by_launch.get(r.run_key), _rounds_logged(r.updates)) for r in stored]
    rows.sort(key=lambda r: r.started_at, reverse=True)
    return FederatedOverview(
        runs=tuple(rows),
        running=None if live is None else _launch_row(live),
        can_launch=can(user, Permission.RUN_FEDERATED),
        sites_with_keys=tuple(sorted(keys)),
        strategies=STRATEGIES,
        nodes=tuple(nodes),
    )


def run_detail(session_factory: SessionFactory, user: SignedInUser, run_key: str) -> RunDetail:
    """Round progress, per-site updates, privacy spent and node status of ``run_key``.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not see federated runs.
    BadInputError
        No run or launch ``run_key``.
    """
    require(user, Permission.VIEW_FEDERATED)
    with session_factory() as session:
        stored = federated_runs.get_run(session, run_key)
        launch = federated_runs.get_launch(session, run_key)
        nodes = federated_runs.list_nodes(session)
    if stored is None and launch is None:
        raise BadInputError(f"no federated run {run_key!r}")
    if stored is not None:
        row = _stored_row(stored, launch, _rounds_logged(stored.updates))
        updates = stored.updates
        privacy, delta = _stored_privacy(stored)
    else:
        assert launch is not None
        row = _launch_row(launch)
        updates = tuple(updates_from_events(launch.events))
        privacy, delta = _live_privacy(launch, epsilon_spent(session_factory))
    taking_part = set(row.sites)
    return RunDetail(
        run=row,
        updates=tuple(_site_update(u) for u in updates),
        privacy=privacy,
        delta=delta,
        nodes=tuple(n for n in nodes if n.site in taking_part),
    )


def _rounds_logged(updates: Sequence[FlUpdateRecord]) -> int:
    return max((u.round for u in updates), default=0)


def _stored_row(run: FlRunRecord, launch: FlLaunchRecord | None, rounds_done: int) -> RunRow:
    return RunRow(
        run_key=run.run_key,
        state=run.status,
        sites=run.sites,
        rounds_done=rounds_done,
        rounds=run.rounds,
        strategy=run.strategy,
        private=isinstance(run.config.get("dp"), dict),
        launched_by=launch.launched_by if launch is not None else "",
        started_at=run.started_at,
        ended_at=run.ended_at,
        model_version=run.model_version,
        reason=run.reason,
        secure=isinstance(run.config.get("secure"), dict),
    )


def _launch_row(launch: FlLaunchRecord) -> RunRow:
    request = launch.request
    return RunRow(
        run_key=launch.run_key,
        state=RUNNING if launch.state == "running" else NOT_RUN,
        sites=tuple(str(s) for s in _list(request.get("sites"))),
        rounds_done=sum(1 for e in launch.events if e.get("event") == "round"),
        rounds=int(request.get("rounds") or 0),  # type: ignore[arg-type]
        strategy=str(request.get("strategy") or ""),
        private=isinstance(request.get("dp"), dict),
        launched_by=launch.launched_by,
        started_at=launch.launched_at,
        ended_at=None if launch.state == "running" else launch.heartbeat_at,
        model_version=None,
        reason=launch.reason,
        secure=isinstance(request.get("secure_aggregation"), dict),
    )


def _list(value: object) -> list[object]:
    # A CLI launch records its --sites text; the page's launch a list.
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return list(value) if isinstance(value, list) else []


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _site_update(u: FlUpdateRecord) -> SiteUpdate:
    n = _number(u.metrics, "n_examples")
    return SiteUpdate(
        round=u.round,
        site=u.site,
        accepted=u.accepted,
        reason=u.reason,
        update_norm=_number(u.metrics, "update_norm"),
        train_loss=_number(u.metrics, "train_loss"),
        n_examples=None if n is None else int(n),
        val_auc=_number(u.metrics, "val-auc"),
        update_sha256=u.update_sha256,
    )


def _stored_privacy(run: FlRunRecord) -> tuple[tuple[PrivacyRow, ...], float | None]:
    dp = run.config.get("dp")
    if not isinstance(dp, dict):
        return (), None
    before = dp.get("spent_before") if isinstance(dp.get("spent_before"), dict) else {}
    spent = _number(dp, "epsilon_spent") or 0.0
    budget = _number(dp, "site_budget") or _number(dp, "epsilon_budget") or 0.0
    rows = tuple(
        PrivacyRow(site, float(before.get(site, 0.0)), spent, budget)  # type: ignore[union-attr, arg-type]
        for site in run.sites
    )
    return rows, _number(dp, "delta")


def _live_privacy(
    launch: FlLaunchRecord, spent_before: Mapping[str, float]
) -> tuple[tuple[PrivacyRow, ...], float | None]:
    dp = launch.request.get("dp")
    if not isinstance(dp, dict):
        return (), None
    z, delta, budget = (_number(dp, k) for k in ("noise_multiplier", "delta", "epsilon_budget"))
    if z is None or delta is None or budget is None:
        return (), None
    # Every aggregated round released one noised mean to every site: ε so far follows from their count.
    released = sum(1 for e in launch.events if e.get("event") == "round" and e.get("aggregate_sha256"))
    now_spent = epsilon(q=1.0, noise_multiplier=z, steps=released, delta=delta) if released else 0.0
    sites = [str(s) for s in _list(launch.request.get("sites"))]
    return tuple(PrivacyRow(s, spent_before.get(s, 0.0), now_spent, budget) for s in sites), delta
