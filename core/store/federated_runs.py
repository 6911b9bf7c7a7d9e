"""Federated training in the store: sites' signing keys, runs, and each site's update per round.

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
from core.store.tables import FlRunRow, FlSiteKeyRow, FlUpdateRow, SiteRow
from core.types import JSONObject

__all__ = [
    "FlRunRecord",
    "FlUpdateRecord",
    "add_run",
    "get_run",
    "list_runs",
    "register_key",
    "site_keys",
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
