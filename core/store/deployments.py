"""Deployment history: every switch of a serving model version, fleet-wide or for named sites.

A switch applies to a *scope*: the fleet (``site`` NULL: every site without a switch of its own)
or one named site. The version serving site S is the one of the newest switch for S, else the
one of the newest fleet-wide switch; so a promotion for S leaves every other site as it was,
and a later fleet-wide promotion leaves S on its own version until S is switched again.

Each scope has its own two slots, blue and green: a switch loads the incoming version into the
slot its scope is not serving from. A fleet-wide switch also moves the fleet pointer
(``model_version.is_serving``) in the same transaction as its history row. "Which version served
site S at time T" applies the same rule to the switches made at or before T, so it is exact.

The caller holds the ledger's head lock (``audit_log.lock_head``) first: switches, and prediction
writers that check what serves their studies' sites, are then serialized on every database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, aliased

from core.store import model_versions
from core.store.model_versions import ModelVersionRecord
from core.store.tables import DeploymentRow, ModelVersionRow, SiteRow, StudyRow, UserRow

__all__ = [
    "SLOTS",
    "DeploymentRecord",
    "history",
    "latest",
    "record_switch",
    "served_at",
    "serving_by_site",
    "serving_for",
    "serving_for_studies",
    "version_serving",
    "versions_by_site",
]

#: A switch with its version's and its previous version's names, and its signer's full name.
_Rows = Select[DeploymentRow, str, str, str]
#: The two slots a version is deployed into, alternately within one scope.
SLOTS: Final = ("blue", "green")


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One switch of the serving version, for the fleet or for one site.

    Attributes
    ----------
    action : str
        ``initial`` (the first version), ``promote`` or ``rollback``.
    slot : str
        The slot the version serves from in this switch's scope after it.
    previous_version : str or None
        What served this scope just before (for a site's first switch: the fleet's version).
    signer, signature_meaning, signature_sha256 : str or None
        The electronic signature of a promotion: who signed (the username), what the signature
        means, and the SHA-256 of the signed manifest (kept in the ``model_promoted`` audit entry).
    site : str or None
        The site this switch applies to; None for the fleet-wide switch.
    signer_name : str or None
        The signer's printed full name, as the signed manifest prints it (a full name is never
        changed after the account is created).
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
    site: str | None = None
    signer_name: str | None = None

    @property
    def scope(self) -> str:
        """The site's name, or ``every site`` for a fleet-wide switch (for messages)."""
        return "every site" if self.site is None else self.site


def record_switch(  # noqa: PLR0913 - one keyword per stored column
    session: Session,
    *,
    version_id: int,
    action: str,
    switched_by: str,
    now: datetime,
    reason: str,
    site: str | None = None,
    validation_id: int | None = None,
    signer: str | None = None,
    signature_meaning: str | None = None,
    signature_sha256: str | None = None,
) -> DeploymentRecord:
    """Stage a switch of ``site`` (the fleet when None) to ``version_id``: the history row and, fleet-wide, the pointer.

    The caller checks that ``site`` is registered; this stores the name as given.
    """
    current = serving_for(session, site)
    slot = SLOTS[0] if current is None else SLOTS[1 - SLOTS.index(current.slot)]
    target = model_versions.get_by_id(session, version_id)
    if site is None:
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
        site=site,
    )
    session.add(row)
    session.flush()
    return _one(session, row.id)


def latest(session: Session, site: str | None = None) -> DeploymentRecord | None:
    """The newest switch of one scope only: the fleet's (``site`` None) or the site's own; None before any."""
    rows = _records(session, _scope(_query(), site), newest=True, by_time=False, limit=1)
    return rows[0] if rows else None


def serving_for(session: Session, site: str | None) -> DeploymentRecord | None:
    """The switch that puts the version serving ``site`` in place now (the fleet's when None).

    The site's newest switch of its own, else the newest fleet-wide switch; None before any.
    """
    own = None if site is None else latest(session, site)
    return own if own is not None else latest(session, None)


def served_at(session: Session, moment: datetime, site: str | None = None) -> DeploymentRecord | None:
    """The switch in force for ``site`` (the fleet when None) at ``moment``, by the same rule as :func:`serving_for`.

    Among the switches made at or before ``moment``: the site's newest, else the fleet's newest.
    None before the first.
    """
    for scope in (site, None) if site is not None else (None,):
        query = _scope(_query(), scope).where(DeploymentRow.switched_at <= moment)
        rows = _records(session, query, newest=True, by_time=True, limit=1)
        if rows:
            return rows[0]
    return None


def serving_by_site(session: Session) -> dict[str, int | None]:
    """The number of the version serving each registered site now, by name (None before any).

    A site's own newest switch, else the fleet pointer (``model_version.is_serving``), which every
    fleet-wide switch moves together with its row; read by prediction writers after the head lock.
    """
    fleet = model_versions.serving_id(session)
    return {
        name: _own_or(session, name, fleet) for name in session.scalars(select(SiteRow.name).order_by(SiteRow.name))
    }


def version_serving(session: Session, site: str, *, at: datetime | None = None) -> ModelVersionRecord | None:
    """The model version serving ``site`` now, or at ``at``: the one every reader of its studies shows.

    Now: the site's own newest switch, else the fleet pointer, exactly as a prediction writer
    reads it (:func:`serving_by_site`), so a reader always looks for the prediction the writer
    made. At ``at``: the switch in force then (:func:`served_at`). None before any version serves.
    The caller checks that ``site`` is registered; an unknown name is served fleet-wide.
    """
    if at is not None:
        record = served_at(session, at, site)
        version_id = None if record is None else record.version_id
    else:
        version_id = _own_or(session, site, model_versions.serving_id(session))
    return None if version_id is None else model_versions.get_by_id(session, version_id)


def versions_by_site(session: Session) -> dict[str, ModelVersionRecord | None]:
    """The version serving each registered site now, by site name (None before any), one read per version."""
    by_id: dict[int, ModelVersionRecord] = {}
    out: dict[str, ModelVersionRecord | None] = {}
    for name, version_id in serving_by_site(session).items():
        if version_id is not None and version_id not in by_id:
            by_id[version_id] = model_versions.get_by_id(session, version_id)
        out[name] = None if version_id is None else by_id[version_id]
    return out


def serving_for_studies(session: Session, study_ids: Iterable[int]) -> dict[int, int | None]:
    """The number of the version serving each study's site now (see :func:`serving_by_site`).

    Read by a prediction writer inside its transaction, after the head lock.
    """
    ids = sorted(set(study_ids))
    if not ids:
        return {}
    query = select(StudyRow.id, SiteRow.name).join(SiteRow, SiteRow.id == StudyRow.site_id).where(StudyRow.id.in_(ids))
    site_of: dict[int, str] = dict(session.execute(query).all())
    fleet = model_versions.serving_id(session)
    version_of = {name: _own_or(session, name, fleet) for name in set(site_of.values())}
    return {study_id: version_of[name] for study_id, name in site_of.items()}


def _own_or(session: Session, site: str, fleet: int | None) -> int | None:
    """The version of the site's own newest switch, else ``fleet``."""
    record = latest(session, site)
    return fleet if record is None else record.version_id


def history(session: Session, site: str | None = None) -> list[DeploymentRecord]:
    """Every switch, oldest first; with ``site``, only the switches that applied to it (its own and the fleet's)."""
    query = _query()
    if site is not None:
        query = query.where((DeploymentRow.site == site) | DeploymentRow.site.is_(None))
    return _records(session, query, newest=False)


def _one(session: Session, deployment_id: int) -> DeploymentRecord:
    return _records(session, _query().where(DeploymentRow.id == deployment_id), newest=False)[0]


def _query() -> _Rows:
    current, previous = aliased(ModelVersionRow), aliased(ModelVersionRow)
    return (
        select(DeploymentRow, current.version, previous.version, UserRow.full_name)
        .join(current, current.id == DeploymentRow.model_version_id)
        .outerjoin(previous, previous.id == DeploymentRow.previous_version_id)
        .outerjoin(UserRow, UserRow.username == DeploymentRow.signer)
    )


def _scope(query: _Rows, site: str | None) -> _Rows:
    return query.where(DeploymentRow.site.is_(None) if site is None else DeploymentRow.site == site)


def _records(
    session: Session, query: _Rows, *, newest: bool, by_time: bool = True, limit: int | None = None
) -> list[DeploymentRecord]:
    # Newest by time for "what served at T" (id breaks ties within one instant: the later row was
    # committed later); newest by id, the commit order, for the current state.
    if not newest:
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
            site=row.site,
            signer_name=signer_name,
        )
        for row, version, prev, signer_name in session.execute(query)
    ]
