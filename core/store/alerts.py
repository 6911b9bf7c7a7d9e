"""Drift alerts: stage, look up, list, and move along open -> acknowledged -> resolved.

Every function takes the caller's session and never commits; ``core.services.monitoring`` opens
one transaction per user action and writes the audit entry in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.errors import AlertTransitionError, UnknownAlertError
from core.store.lifecycle import acknowledge_row, resolve_row
from core.store.tables import DriftAlertRow, SiteRow
from core.types import JSONObject

__all__ = [
    "AlertIn",
    "AlertRecord",
    "AlertStatus",
    "acknowledge",
    "add_alert",
    "find_by_key",
    "get_alert",
    "list_alerts",
    "resolve",
]


class AlertStatus(StrEnum):
    """Where an alert is in its life; the values are stored."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertIn:
    """A new alert as the monitor found it.

    Attributes
    ----------
    dedupe_key : str
        Identity of the alarm (site, stream, window, alarm date, or the novel value); at most
        255 characters. Staging the same key twice fails: check :func:`find_by_key` first.
    site_id : int
    stream : str
        ``"noise"``, ``"mean_score"``, ... or ``"novelty:<attribute>"``.
    detector : str
        ``"cusum"``, ``"ewma"``, ``"bocpd"`` or ``"novelty"``.
    window : str
        ``"day"``, ``"studies:N"`` or ``"study"`` (novelty).
    alarm_date, change_date : date, date or None
        Window date of the alarm and the estimated first changed window's date.
    statistic, control_limit : float or None
        The detector's statistic at the alarm and the limit it crossed.
    summary : str
        One sentence for the inbox.
    details : dict
        JSON-ready details (settings, other detectors' alarms, the novel value, ...).
    """

    dedupe_key: str
    site_id: int
    stream: str
    detector: str
    window: str
    alarm_date: date
    change_date: date | None
    statistic: float | None
    control_limit: float | None
    summary: str
    details: JSONObject


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A stored alert with its site's name and its whole history so far."""

    id: int
    dedupe_key: str
    site: str
    stream: str
    detector: str
    window: str
    alarm_date: date
    change_date: date | None
    statistic: float | None
    control_limit: float | None
    summary: str
    details: JSONObject
    status: AlertStatus
    raised_by: str
    raised_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None
    #: The incident this alert is evidence of; None for an alert from before incidents, not grouped yet.
    incident_id: int | None = None

    @property
    def is_resolved(self) -> bool:
        """True once someone resolved it."""
        return self.status is AlertStatus.RESOLVED


def add_alert(session: Session, alert: AlertIn, *, raised_by: str, now: datetime) -> AlertRecord:
    """Stage a new open alert. The caller owns the transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        ``dedupe_key`` is already stored, or the site does not exist.
    """
    row = DriftAlertRow(
        dedupe_key=alert.dedupe_key,
        site_id=alert.site_id,
        stream=alert.stream,
        detector=alert.detector,
        window=alert.window,
        alarm_date=alert.alarm_date,
        change_date=alert.change_date,
        statistic=alert.statistic,
        control_limit=alert.control_limit,
        summary=alert.summary,
        details_json=json.dumps(alert.details, sort_keys=True, allow_nan=False),
        status=str(AlertStatus.OPEN),
        raised_by=raised_by,
        raised_at=now,
    )
    session.add(row)
    session.flush()  # assigns the id and fires the unique key inside the caller's transaction
    return get_alert(session, row.id)


def find_by_key(session: Session, dedupe_key: str) -> AlertRecord | None:
    """The alert stored under ``dedupe_key``, if any."""
    row = session.execute(_alerts().where(DriftAlertRow.dedupe_key == dedupe_key)).one_or_none()
    return None if row is None else _record(row[0], row[1])


def get_alert(session: Session, alert_id: int) -> AlertRecord:
    """Look an alert up by id.

    Raises
    ------
    UnknownAlertError
        No alert has that id.
    """
    row = session.execute(_alerts().where(DriftAlertRow.id == alert_id)).one_or_none()
    if row is None:
        raise UnknownAlertError(alert_id)
    return _record(row[0], row[1])


def list_alerts(
    session: Session,
    *,
    site_id: int | None = None,
    statuses: tuple[AlertStatus, ...] | None = None,
    stream: str | None = None,
    incident_id: int | None = None,
) -> list[AlertRecord]:
    """Alerts newest alarm first (then newest id), optionally of one site, some statuses, one stream, one incident."""
    query = _alerts().order_by(DriftAlertRow.alarm_date.desc(), DriftAlertRow.id.desc())
    if site_id is not None:
        query = query.where(DriftAlertRow.site_id == site_id)
    if statuses is not None:
        query = query.where(DriftAlertRow.status.in_([str(s) for s in statuses]))
    if stream is not None:
        query = query.where(DriftAlertRow.stream == stream)
    if incident_id is not None:
        query = query.where(DriftAlertRow.incident_id == incident_id)
    return [_record(alert, site) for alert, site in session.execute(query)]


def acknowledge(session: Session, alert_id: int, *, by: str, note: str, now: datetime) -> AlertRecord:
    """Mark an open alert acknowledged by ``by`` with ``note``. The caller owns the transaction.

    Raises
    ------
    UnknownAlertError
        No alert has that id.
    AlertTransitionError
        The alert is not open.
    """
    row = _row(session, alert_id)
    acknowledge_row(
        row, by=by, note=note, now=now, refuse=lambda have, want: AlertTransitionError(alert_id, have, want)
    )
    session.flush()
    return get_alert(session, alert_id)


def resolve(session: Session, alert_id: int, *, by: str, note: str, now: datetime) -> AlertRecord:
    """Mark an open or acknowledged alert resolved by ``by`` with ``note``. The caller owns the transaction.

    Raises
    ------
    UnknownAlertError
        No alert has that id.
    AlertTransitionError
        The alert is already resolved.
    """
    row = _row(session, alert_id)
    resolve_row(row, by=by, note=note, now=now, refuse=lambda have, want: AlertTransitionError(alert_id, have, want))
    session.flush()
    return get_alert(session, alert_id)


def _row(session: Session, alert_id: int) -> DriftAlertRow:
    row = session.get(DriftAlertRow, alert_id)
    if row is None:
        raise UnknownAlertError(alert_id)
    return row


def _alerts() -> Select[DriftAlertRow, str]:
    return select(DriftAlertRow, SiteRow.name).join(SiteRow, DriftAlertRow.site_id == SiteRow.id)


def _record(row: DriftAlertRow, site: str) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        dedupe_key=row.dedupe_key,
        site=site,
        stream=row.stream,
        detector=row.detector,
        window=row.window,
        alarm_date=row.alarm_date,
        change_date=row.change_date,
        statistic=row.statistic,
        control_limit=row.control_limit,
        summary=row.summary,
        details=json.loads(row.details_json),
        status=AlertStatus(row.status),
        raised_by=row.raised_by,
        raised_at=row.raised_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        acknowledge_note=row.acknowledge_note,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        resolution_note=row.resolution_note,
        incident_id=row.incident_id,
    )
