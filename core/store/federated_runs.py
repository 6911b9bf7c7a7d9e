"""Federated training in the store: sites' signing keys, runs, each site's update per round, nodes and live runs.

The caller owns the transaction (``core.services.federated``): a run, its updates and its audit
entries commit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.store.tables import FlLaunchRow, FlNodeRow, FlRunRow, FlSiteKeyRow, FlUpdateRow, SiteRow
from core.types import JSONObject

__all__ = [
    "FlLaunchRecord",
    "FlNodeRecord",
    "FlRunRecord",
    "FlUpdateRecord",
    "add_launch",
    "add_run",
    "get_launch",
    "get_run",
    "list_launches",
    "list_nodes",
    "list_runs",
    "register_key",
    "save_node",
    "site_keys",
    "update_launch",
]


@dataclass(frozen=True, slots=True)
class FlUpdateRecord:
    """One site's update in one round; ``metrics`` holds aggregates only."""

    round: int
    site: str
    accepted: bool
    reason: str
    update_sha256: str
    aggregate_sha256: str | None
    metrics: JSONObject


@dataclass(frozen=True, slots=True)
class FlRunRecord:
    """A federated run as stored.

    Attributes
    ----------
    run_key : str
        Vigil's run id.
    status : str
        ``finished`` or ``failed``.
    config : dict
        The run's plan without the sites' keys.
    updates : tuple of FlUpdateRecord
        By round, then site.
    """

    run_key: str
    parent_version: str
    model_version: str | None
    sites: tuple[str, ...]
    rounds: int
    strategy: str
    status: str
    reason: str
    config: JSONObject
    started_at: datetime
    ended_at: datetime
    updates: tuple[FlUpdateRecord, ...] = ()

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "run": self.run_key,
            "parent_version": self.parent_version,
            "model_version": self.model_version,
            "sites": list(self.sites),
            "rounds": self.rounds,
            "strategy": self.strategy,
            "status": self.status,
            "reason": self.reason,
            "config": self.config,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "updates": [
                {
                    "round": u.round,
                    "site": u.site,
                    "accepted": u.accepted,
                    "reason": u.reason,
                    "update_sha256": u.update_sha256,
                    "aggregate_sha256": u.aggregate_sha256,
                    "metrics": u.metrics,
                }
                for u in self.updates
            ],
        }


def register_key(session: Session, *, site_id: int, public_key_pem: str, key_sha256: str, now: datetime) -> None:
    """Record ``site_id``'s signing key (one per site: the unique constraint refuses a second)."""
    session.add(FlSiteKeyRow(site_id=site_id, public_key_pem=public_key_pem, key_sha256=key_sha256, registered_at=now))
    session.flush()


def site_keys(session: Session) -> dict[str, str]:
    """Registered public keys (PEM) by site name."""
    rows = session.execute(select(SiteRow.name, FlSiteKeyRow.public_key_pem).join(SiteRow)).all()
    return {str(name): str(pem) for name, pem in rows}  # noqa: C416 - typed


def add_run(session: Session, run: FlRunRecord) -> int:
    """Stage ``run`` and its updates; return the run's database id."""
    row = FlRunRow(
        run_key=run.run_key,
        parent_version=run.parent_version,
        model_version=run.model_version,
        sites=canonical_json(list(run.sites)).decode(),
        rounds=run.rounds,
        strategy=run.strategy,
        status=run.status,
        reason=run.reason,
        config=canonical_json(run.config).decode(),
        started_at=run.started_at,
        ended_at=run.ended_at,
    )
    session.add(row)
    session.flush()
    session.add_all(
        FlUpdateRow(
            run_id=row.id,
            round=u.round,
            site=u.site,
            accepted=u.accepted,
            reason=u.reason,
            update_sha256=u.update_sha256,
            aggregate_sha256=u.aggregate_sha256,
            metrics=canonical_json(u.metrics).decode(),
        )
        for u in run.updates
    )
    session.flush()
    return row.id


def _record(row: FlRunRow, updates: Sequence[FlUpdateRow]) -> FlRunRecord:
    return FlRunRecord(
        run_key=row.run_key,
        parent_version=row.parent_version,
        model_version=row.model_version,
        sites=tuple(json.loads(row.sites)),
        rounds=row.rounds,
        strategy=row.strategy,
        status=row.status,
        reason=row.reason,
        config=json.loads(row.config),
        started_at=row.started_at,
        ended_at=row.ended_at,
        updates=tuple(
            FlUpdateRecord(
                u.round, u.site, u.accepted, u.reason, u.update_sha256, u.aggregate_sha256, json.loads(u.metrics)
            )
            for u in updates
        ),
    )


def get_run(session: Session, run_key: str) -> FlRunRecord | None:
    """The run ``run_key`` with its updates, or None."""
    row = session.scalars(select(FlRunRow).where(FlRunRow.run_key == run_key)).one_or_none()
    if row is None:
        return None
    updates = session.scalars(
        select(FlUpdateRow).where(FlUpdateRow.run_id == row.id).order_by(FlUpdateRow.round, FlUpdateRow.site)
    ).all()
    return _record(row, updates)


def list_runs(session: Session) -> list[FlRunRecord]:
    """Every run, newest first, without their updates."""
    rows = session.scalars(select(FlRunRow).order_by(FlRunRow.id.desc())).all()
    return [_record(row, ()) for row in rows]


@dataclass(frozen=True, slots=True)
class FlNodeRecord:
    """A site's node as last seen: the profile it reported, the server's verdict, the heartbeat."""

    site: str
    vigil_version: str
    flwr_version: str
    arch_sha256: str
    preprocessing_sha256: str
    compatible: bool
    reason: str
    last_run_key: str
    last_seen_at: datetime


def save_node(session: Session, node: FlNodeRecord) -> None:
    """Insert or overwrite ``node.site``'s row; an older check-in than the stored one is ignored."""
    row = session.scalars(select(FlNodeRow).where(FlNodeRow.site == node.site)).one_or_none()
    if row is None:
        row = FlNodeRow(site=node.site)
        session.add(row)
    elif row.last_seen_at > node.last_seen_at:
        return
    row.vigil_version = node.vigil_version
    row.flwr_version = node.flwr_version
    row.arch_sha256 = node.arch_sha256
    row.preprocessing_sha256 = node.preprocessing_sha256
    row.compatible = node.compatible
    row.reason = node.reason
    row.last_run_key = node.last_run_key
    row.last_seen_at = node.last_seen_at
    session.flush()


def list_nodes(session: Session) -> list[FlNodeRecord]:
    """Every site's node as last seen, by site name."""
    rows = session.scalars(select(FlNodeRow).order_by(FlNodeRow.site)).all()
    return [
        FlNodeRecord(
            r.site,
            r.vigil_version,
            r.flwr_version,
            r.arch_sha256,
            r.preprocessing_sha256,
            r.compatible,
            r.reason,
            r.last_run_key,
            r.last_seen_at,
        )  # fmt: skip
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class FlLaunchRecord:
    """A run while it runs (and after: ``state`` ``ended``).

    Attributes
    ----------
    pid : int
        The launcher process (``vigil fl run``) on the coordinating machine.
    state : str
        ``running`` or ``ended``.
    request : dict
        What was asked (sites, rounds, strategy, DP settings).
    events : tuple of dict
        The ServerApp's log so far (:mod:`core.federated.runlog`).
    """

    run_key: str
    pid: int
    launched_by: str
    state: str
    reason: str
    request: JSONObject
    events: tuple[JSONObject, ...]
    launched_at: datetime
    heartbeat_at: datetime


def add_launch(session: Session, launch: FlLaunchRecord) -> None:
    """Stage ``launch`` (the run key is unique: a second row for a run is refused)."""
    session.add(
        FlLaunchRow(
            run_key=launch.run_key,
            pid=launch.pid,
            launched_by=launch.launched_by,
            state=launch.state,
            reason=launch.reason,
            request=canonical_json(launch.request).decode(),
            events=json.dumps(list(launch.events), sort_keys=True),
            launched_at=launch.launched_at,
            heartbeat_at=launch.heartbeat_at,
        )
    )
    session.flush()


def update_launch(  # noqa: PLR0913 - keyword-only; each is one column a progress step may set
    session: Session,
    run_key: str,
    *,
    heartbeat_at: datetime,
    events: Sequence[JSONObject] | None = None,
    state: str | None = None,
    reason: str | None = None,
    pid: int | None = None,
) -> bool:
    """Set the given columns of ``run_key``'s launch; False when there is none."""
    row = session.scalars(select(FlLaunchRow).where(FlLaunchRow.run_key == run_key)).one_or_none()
    if row is None:
        return False
    row.heartbeat_at = heartbeat_at
    if events is not None:
        # Plain JSON, not canonical: a site's undefined AUC is NaN in the ServerApp's log.
        row.events = json.dumps(list(events), sort_keys=True)
    if state is not None:
        row.state = state
    if reason is not None:
        row.reason = reason
    if pid is not None:
        row.pid = pid
    session.flush()
    return True


def _launch(row: FlLaunchRow) -> FlLaunchRecord:
    return FlLaunchRecord(
        run_key=row.run_key,
        pid=row.pid,
        launched_by=row.launched_by,
        state=row.state,
        reason=row.reason,
        request=json.loads(row.request),
        events=tuple(json.loads(row.events)),
        launched_at=row.launched_at,
        heartbeat_at=row.heartbeat_at,
    )


def get_launch(session: Session, run_key: str) -> FlLaunchRecord | None:
    """``run_key``'s launch, or None."""
    row = session.scalars(select(FlLaunchRow).where(FlLaunchRow.run_key == run_key)).one_or_none()
    return None if row is None else _launch(row)


def list_launches(session: Session, *, state: str | None = None) -> list[FlLaunchRecord]:
    """Launches, newest first; only those in ``state`` if given."""
    query = select(FlLaunchRow).order_by(FlLaunchRow.id.desc())
    if state is not None:
        query = query.where(FlLaunchRow.state == state)
    return [_launch(r) for r in session.scalars(query).all()]
