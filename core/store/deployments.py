"""Deployment history: every switch of the serving model version, and which version served when.

Two slots, blue and green: a switch loads the incoming version into the slot that is not serving
and moves the serving pointer (``model_version.is_serving``) to it in the same transaction as the
history row, so "which version served at time T" is one indexed read of this table. The caller
holds the ledger's head lock (``audit_log.lock_head``) first: switches, and prediction writers
that check the pointer, are then serialized on every database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.store import model_versions
from core.store.tables import DeploymentRow, ModelVersionRow

__all__ = ["SLOTS", "DeploymentRecord", "history", "latest", "record_switch", "served_at"]

#: The two slots a version is deployed into, alternately.
SLOTS: Final = ("blue", "green")


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One switch of the serving version.

    Attributes
    ----------
    action : str
        ``initial`` (the first version), ``promote`` or ``rollback``.
    slot : str
        The slot the version serves from after this switch.
    signer, signature_meaning, signature_sha256 : str or None
        The electronic signature of a promotion: who signed (printed name and username), what the
        signature means, and the SHA-256 of the signed manifest.
    """

    id: int
    version: str
    version_id: int
    previous_version: str | None
    action: str
    slot: str
    validation_id: int | None
    switched_by: str
    switched_at: datetime
    signer: str | None
    signature_meaning: str | None
    signature_sha256: str | None
    reason: str


def record_switch(  # noqa: PLR0913 - one keyword per stored column
    session: Session,
    *,
    version_id: int,
    action: str,
    switched_by: str,
    now: datetime,
    reason: str,
    validation_id: int | None = None,
    signer: str | None = None,
    signature_meaning: str | None = None,
    signature_sha256: str | None = None,
) -> DeploymentRecord:
    """Stage a switch to ``version_id``: the history row and the serving pointer, together."""
    current = latest(session)
    slot = SLOTS[0] if current is None else SLOTS[1 - SLOTS.index(current.slot)]
    target = model_versions.get_by_id(session, version_id)
    model_versions.set_serving(session, target.version)
    row = DeploymentRow(
        model_version_id=version_id,
        previous_version_id=None if current is None else current.version_id,
        action=action,
        slot=slot,
        validation_id=validation_id,
        switched_by=switched_by,
        switched_at=now,
        signer=signer,
        signature_meaning=signature_meaning,
        signature_sha256=signature_sha256,
        reason=reason,
    )
    session.add(row)
    session.flush()
    return _one(session, row.id)


def latest(session: Session) -> DeploymentRecord | None:
    """The newest switch, or None before any."""
    rows = _records(session, select_newest=True, limit=1, by_time=False)
    return rows[0] if rows else None


def served_at(session: Session, moment: datetime) -> DeploymentRecord | None:
    """The switch in force at ``moment`` (the newest at or before it), or None before the first."""
    rows = _records(session, select_newest=True, limit=1, until=moment)
    return rows[0] if rows else None


def history(session: Session) -> list[DeploymentRecord]:
    """Every switch, oldest first."""
    return _records(session, select_newest=False)


def _one(session: Session, deployment_id: int) -> DeploymentRecord:
    return _records(session, select_newest=False, only=deployment_id)[0]


def _records(
    session: Session,
    *,
    select_newest: bool,
    limit: int | None = None,
    until: datetime | None = None,
    only: int | None = None,
    by_time: bool = True,
) -> list[DeploymentRecord]:
    current, previous = aliased(ModelVersionRow), aliased(ModelVersionRow)
    query = (
        select(DeploymentRow, current.version, previous.version)
        .join(current, current.id == DeploymentRow.model_version_id)
        .outerjoin(previous, previous.id == DeploymentRow.previous_version_id)
    )
    if until is not None:
        query = query.where(DeploymentRow.switched_at <= until)
    if only is not None:
        query = query.where(DeploymentRow.id == only)
    # Newest by time for "what served at T" (id breaks ties within one instant: the later row was
    # committed later); newest by id, the commit order, for the current state.
    if not select_newest:
        order: tuple[Any, ...] = (DeploymentRow.id,)
    elif by_time:
        order = (DeploymentRow.switched_at.desc(), DeploymentRow.id.desc())
    else:
        order = (DeploymentRow.id.desc(),)
    query = query.order_by(*order).limit(limit)
    return [
        DeploymentRecord(
            id=row.id,
            version=version,
            version_id=row.model_version_id,
            previous_version=prev,
            action=row.action,
            slot=row.slot,
            validation_id=row.validation_id,
            switched_by=row.switched_by,
            switched_at=row.switched_at,
            signer=row.signer,
            signature_meaning=row.signature_meaning,
            signature_sha256=row.signature_sha256,
            reason=row.reason,
        )
        for row, version, prev in session.execute(query)
    ]
