"""Drift incidents: stage, look up, list, attach alerts, and move along open -> acknowledged -> resolved.

An incident groups alerts of one site and one family (``core.drift.incidents`` holds the rule);
each alert names its incident in ``drift_alert.incident_id``. Every function takes the caller's
session and never commits; ``core.services.monitoring_alerts`` and ``monitoring_incidents`` open
one transaction per user action and write the audit entries in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.errors import IncidentTransitionError, UnknownAlertError, UnknownIncidentError
from core.store.lifecycle import acknowledge_row, resolve_row
from core.store.tables import DriftAlertRow, DriftIncidentRow, SiteRow

__all__ = [
    "IncidentIn",
    "IncidentRecord",
    "IncidentStatus",
    "acknowledge",
    "add_incident",
    "alert_ids",
    "attach",
    "get_incident",
    "list_incidents",
    "resolve",
]


class IncidentStatus(StrEnum):
    """Where an incident is in its life; the values are stored."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class IncidentIn:
    """A new incident, from its first alerts.

    Attributes
    ----------
    site_id : int
    family : str
        ``"score"``, ``"image"``, ``"label"`` or ``"metadata"`` (``core.drift.incidents.IncidentFamily``).
    first_alarm_date : date
        The earliest alarm date of its alerts.
    change_date : date or None
        The earliest estimated change date of its alerts (None when none has one).
    summary : str
        One sentence for the inbox.
    """

    site_id: int
    family: str
    first_alarm_date: date
    change_date: date | None
    summary: str


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """A stored incident with its site's name and its whole history so far."""

    id: int
    site: str
    family: str
    first_alarm_date: date
    change_date: date | None
    summary: str
    status: IncidentStatus
    opened_by: str
    opened_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None

    @property
    def is_resolved(self) -> bool:
        """True once it is resolved (it is then never joined again)."""
        return self.status is IncidentStatus.RESOLVED


def add_incident(session: Session, incident: IncidentIn, *, opened_by: str, now: datetime) -> IncidentRecord:
    """Stage a new open incident (no alerts yet: :func:`attach` them). The caller owns the transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        The site does not exist or the family is not one of the four.
    """
    row = DriftIncidentRow(
        site_id=incident.site_id,
        family=incident.family,
        first_alarm_date=incident.first_alarm_date,
        change_date=incident.change_date,
        summary=incident.summary,
        status=str(IncidentStatus.OPEN),
        opened_by=opened_by,
        opened_at=now,
    )
    session.add(row)
    session.flush()  # assigns the id and fires the checks inside the caller's transaction
    return get_incident(session, row.id)


def get_incident(session: Session, incident_id: int) -> IncidentRecord:
    """Look an incident up by id.

    Raises
    ------
    UnknownIncidentError
        No incident has that id.
    """
    row = session.execute(_incidents().where(DriftIncidentRow.id == incident_id)).one_or_none()
    if row is None:
        raise UnknownIncidentError(incident_id)
    return _record(row[0], row[1])


def list_incidents(
    session: Session,
    *,
    site_id: int | None = None,
    statuses: tuple[IncidentStatus, ...] | None = None,
    family: str | None = None,
) -> list[IncidentRecord]:
    """Incidents newest first alarm first (then newest id), optionally of one site, some statuses, one family."""
    query = _incidents().order_by(DriftIncidentRow.first_alarm_date.desc(), DriftIncidentRow.id.desc())
    if site_id is not None:
        query = query.where(DriftIncidentRow.site_id == site_id)
    if statuses is not None:
        query = query.where(DriftIncidentRow.status.in_([str(s) for s in statuses]))
    if family is not None:
        query = query.where(DriftIncidentRow.family == family)
    return [_record(incident, site) for incident, site in session.execute(query)]


def alert_ids(session: Session, incident_id: int) -> list[int]:
    """Ids of the incident's alerts, oldest alarm first (then oldest id)."""
    query = (
        select(DriftAlertRow.id)
        .where(DriftAlertRow.incident_id == incident_id)
        .order_by(DriftAlertRow.alarm_date, DriftAlertRow.id)
    )
    return list(session.scalars(query))


def attach(session: Session, incident_id: int, alert_id: int, *, summary: str) -> IncidentRecord:
    """Make an alert evidence of an unresolved incident of its site; widen the incident's dates; set its summary.

    ``first_alarm_date`` and ``change_date`` become the earliest over the incident's alerts. The
    caller owns the transaction.

    Raises
    ------
    UnknownIncidentError, UnknownAlertError
        No such incident or alert.
    IncidentTransitionError
        The incident is resolved (a resolved incident is closed for good).
    ValueError
        The alert is of another site, or already belongs to an incident.
    """
    row = _row(session, incident_id)
    alert = session.get(DriftAlertRow, alert_id)
    if alert is None:
        raise UnknownAlertError(alert_id)
    if row.status == IncidentStatus.RESOLVED:
        raise IncidentTransitionError(incident_id, row.status, "joined by another alert")
    if alert.site_id != row.site_id or alert.incident_id not in (None, incident_id):
        raise ValueError(f"alert {alert_id} cannot join incident {incident_id}: other site or already grouped")
    alert.incident_id = incident_id
    row.first_alarm_date = min(row.first_alarm_date, alert.alarm_date)
    if alert.change_date is not None:
        row.change_date = alert.change_date if row.change_date is None else min(row.change_date, alert.change_date)
    row.summary = summary
    session.flush()
    return get_incident(session, incident_id)


def acknowledge(session: Session, incident_id: int, *, by: str, note: str, now: datetime) -> IncidentRecord:
    """Mark an open incident acknowledged by ``by`` with ``note`` (its alerts are the caller's). Caller commits.

    Raises
    ------
    UnknownIncidentError
        No incident has that id.
    IncidentTransitionError
        The incident is not open.
    """
    row = _row(session, incident_id)
    acknowledge_row(
        row, by=by, note=note, now=now, refuse=lambda have, want: IncidentTransitionError(incident_id, have, want)
    )
    session.flush()
    return get_incident(session, incident_id)


def resolve(session: Session, incident_id: int, *, by: str, note: str, now: datetime) -> IncidentRecord:
    """Mark an open or acknowledged incident resolved by ``by`` with ``note`` (its alerts are the caller's).

    Raises
    ------
    UnknownIncidentError
        No incident has that id.
    IncidentTransitionError
        The incident is already resolved.
    """
    row = _row(session, incident_id)
    resolve_row(
        row, by=by, note=note, now=now, refuse=lambda have, want: IncidentTransitionError(incident_id, have, want)
    )
    session.flush()
    return get_incident(session, incident_id)


def _row(session: Session, incident_id: int) -> DriftIncidentRow:
    row = session.get(DriftIncidentRow, incident_id)
    if row is None:
        raise UnknownIncidentError(incident_id)
    return row


def _incidents() -> Select[DriftIncidentRow, str]:
    return select(DriftIncidentRow, SiteRow.name).join(SiteRow, DriftIncidentRow.site_id == SiteRow.id)


def _record(row: DriftIncidentRow, site: str) -> IncidentRecord:
    return IncidentRecord(
        id=row.id,
        site=site,
        family=row.family,
        first_alarm_date=row.first_alarm_date,
        change_date=row.change_date,
        summary=row.summary,
        status=IncidentStatus(row.status),
        opened_by=row.opened_by,
        opened_at=row.opened_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        acknowledge_note=row.acknowledge_note,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        resolution_note=row.resolution_note,
    )
