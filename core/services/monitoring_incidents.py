"""Drift incidents: list them with their alerts, and acknowledge or resolve one as a whole.

An incident is what a CMIO handles: a site's alerts of one family (score, image, label streams,
or metadata novelty) that started within the incident window (the rule and why it is measured
from the first alarm: :mod:`core.drift.incidents`; incidents are opened by
:func:`core.services.monitoring_alerts.raise_alerts`). Acknowledging or resolving an incident
moves it *and* every unresolved alert in it, in one transaction, each with its audit entry
(``incident_acknowledged`` / ``incident_resolved`` and the alerts' own ``alert_acknowledged`` /
``alert_resolved``), so each stream's chart restarts after its resolved alarm as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.drift.incidents import IncidentFamily, stream_title
from core.services.monitoring_alerts import (
    ALERT_HOOKS,
    AlertEvent,
    AlertHooks,
    actor_of,
    audit_alert,
    audit_incident,
    recheck_role,
    required_note,
)
from core.store import alerts, incidents, sites
from core.store.alerts import AlertRecord, AlertStatus
from core.store.engine import SessionFactory
from core.store.incidents import IncidentRecord, IncidentStatus
from core.types import JSONObject

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.services.permissions import SignedInUser

__all__ = [
    "Incident",
    "acknowledge_incident",
    "incident_to_dict",
    "incidents_with_alerts",
    "list_incidents",
    "resolve_incident",
]

_UNRESOLVED: Final = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident with its evidence: the alerts in it, oldest alarm first."""

    record: IncidentRecord
    alerts: tuple[AlertRecord, ...]

    @property
    def id(self) -> int:
        """The incident's id."""
        return self.record.id

    @property
    def site(self) -> str:
        """Its site's name."""
        return self.record.site

    @property
    def family(self) -> IncidentFamily:
        """What its alarms share (score, image, label streams or metadata novelty)."""
        return IncidentFamily(self.record.family)

    @property
    def status(self) -> IncidentStatus:
        """Open, acknowledged or resolved."""
        return self.record.status

    @property
    def is_resolved(self) -> bool:
        """True once resolved."""
        return self.record.is_resolved

    @property
    def last_alarm_date(self) -> date:
        """The latest alarm date of its alerts (its first alarm when it has none)."""
        return max((a.alarm_date for a in self.alerts), default=self.record.first_alarm_date)

    @property
    def unresolved_alerts(self) -> tuple[AlertRecord, ...]:
        """Its open and acknowledged alerts."""
        return tuple(a for a in self.alerts if not a.is_resolved)

    @property
    def streams(self) -> tuple[str, ...]:
        """Its alerts' streams, in order of first alarm, each once."""
        return tuple(dict.fromkeys(a.stream for a in self.alerts))


def incidents_with_alerts(records: Iterable[IncidentRecord], alert_records: Iterable[AlertRecord]) -> list[Incident]:
    """Pair each incident with its alerts (oldest alarm first), keeping the incidents' order."""
    by_incident: dict[int, list[AlertRecord]] = defaultdict(list)
    for a in alert_records:
        if a.incident_id is not None:
            by_incident[a.incident_id].append(a)
    return [Incident(r, tuple(sorted(by_incident.get(r.id, []), key=lambda a: (a.alarm_date, a.id)))) for r in records]


def _with_alerts(session: Session, records: Sequence[IncidentRecord]) -> list[Incident]:
    members = [a for r in records for a in alerts.list_alerts(session, incident_id=r.id)]
    return incidents_with_alerts(records, members)


def list_incidents(
    session_factory: SessionFactory,
    *,
    site: str | None = None,
    statuses: tuple[IncidentStatus, ...] | None = None,
    by: SignedInUser | str = "system",
) -> list[Incident]:
    """Incidents newest first alarm first, with their alerts (a person needs ``view_performance``).

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    PermissionDeniedError
        A person whose role may not view performance.
    """
    actor_of(by, handle=False)
    with session_factory() as session:
        site_id = sites.get_site(session, site).id if site is not None else None
        return _with_alerts(session, incidents.list_incidents(session, site_id=site_id, statuses=statuses))


def _move(
    session_factory: SessionFactory,
    incident_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    target: IncidentStatus,
) -> tuple[Incident, list[AlertRecord]]:
    """Move the incident and its alerts to ``target`` in one transaction; return it and the alerts moved."""
    actor = actor_of(by, handle=True)
    note = required_note(note, f"incident {incident_id}", target)
    acknowledging = target is IncidentStatus.ACKNOWLEDGED
    with session_factory.begin() as session:
        recheck_role(session, by)
        step = incidents.acknowledge if acknowledging else incidents.resolve
        rec = step(session, incident_id, by=actor, note=note, now=now())  # refuses a wrong move first
        # Acknowledging moves the open alerts; resolving moves every unresolved one (charts restart).
        movable = (AlertStatus.OPEN,) if acknowledging else _UNRESOLVED
        moved = []
        for a in alerts.list_alerts(session, incident_id=incident_id, statuses=movable):
            alert_step = alerts.acknowledge if acknowledging else alerts.resolve
            moved.append(alert_step(session, a.id, by=actor, note=note, now=now()))
        alert_action = AuditAction.ALERT_ACKNOWLEDGED if acknowledging else AuditAction.ALERT_RESOLVED
        for a in sorted(moved, key=lambda a: a.id):
            audit_alert(session, a, alert_action, actor=actor, note=note, now=now)
        action = AuditAction.INCIDENT_ACKNOWLEDGED if acknowledging else AuditAction.INCIDENT_RESOLVED
        key = "acknowledged_alert_ids" if acknowledging else "resolved_alert_ids"
        extra: JSONObject = {key: [a.id for a in sorted(moved, key=lambda a: a.id)]}
        audit_incident(session, rec, action, actor=actor, note=note, now=now, extra=extra)
        incident = _with_alerts(session, [rec])[0]
    return incident, moved


def _notify(hooks: AlertHooks, kind: str, incident: Incident, moved: Sequence[AlertRecord]) -> None:
    final = {a.id: a for a in incident.alerts}
    for a in sorted(moved, key=lambda a: a.id):
        hooks.notify(AlertEvent(kind, final.get(a.id, a), incident.record))


def acknowledge_incident(
    session_factory: SessionFactory,
    incident_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    hooks: AlertHooks = ALERT_HOOKS,
) -> Incident:
    """Acknowledge an open incident and every open alert in it, in one transaction; then tell the hooks.

    Each alert moved gets its ``alert_acknowledged`` entry and the incident its
    ``incident_acknowledged`` entry (``acknowledged_alert_ids``), all with who and the note.
    Hooks hear ``"acknowledged"`` once per alert moved.

    Raises
    ------
    UnknownIncidentError, IncidentTransitionError
        No such incident, or it is not open.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle drift alerts (stored role re-read in the transaction).
    """
    incident, moved = _move(session_factory, incident_id, by=by, note=note, now=now, target=IncidentStatus.ACKNOWLEDGED)
    _notify(hooks, "acknowledged", incident, moved)
    return incident


def resolve_incident(
    session_factory: SessionFactory,
    incident_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    hooks: AlertHooks = ALERT_HOOKS,
) -> Incident:
    """Resolve an open or acknowledged incident and every unresolved alert in it, in one transaction.

    Each alert resolved gets its ``alert_resolved`` entry (its stream's chart restarts after its
    alarm at the next run), and the incident its ``incident_resolved`` entry
    (``resolved_alert_ids``). A resolved incident is never joined again: a later alarm opens a
    new one. Hooks hear ``"resolved"`` once per alert moved.

    Raises
    ------
    UnknownIncidentError, IncidentTransitionError
        No such incident, or it is resolved already.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle drift alerts (stored role re-read in the transaction).
    """
    incident, moved = _move(session_factory, incident_id, by=by, note=note, now=now, target=IncidentStatus.RESOLVED)
    _notify(hooks, "resolved", incident, moved)
    return incident


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def incident_to_dict(incident: Incident) -> JSONObject:
    """JSON-ready incident (what ``vigil drift --json`` prints in ``incidents``): its evidence included."""
    r = incident.record
    evidence: list[JSONObject] = [
        {
            "alert_id": a.id,
            "stream": a.stream,
            "stream_title": stream_title(a.stream),
            "detector": a.detector,
            "alarm_date": a.alarm_date.isoformat(),
            "change_date": _iso(a.change_date),
            "status": str(a.status),
            "summary": a.summary,
        }
        for a in incident.alerts
    ]
    return {
        "id": r.id,
        "site": r.site,
        "family": r.family,
        "status": str(r.status),
        "first_alarm_date": r.first_alarm_date.isoformat(),
        "last_alarm_date": incident.last_alarm_date.isoformat(),
        "change_date": _iso(r.change_date),
        "summary": r.summary,
        "alert_ids": [a.id for a in incident.alerts],
        "streams": list(incident.streams),
        "evidence": list(evidence),
        "opened_by": r.opened_by,
        "opened_at": _iso(r.opened_at),
        "acknowledged_by": r.acknowledged_by,
        "acknowledged_at": _iso(r.acknowledged_at),
        "acknowledge_note": r.acknowledge_note,
        "resolved_by": r.resolved_by,
        "resolved_at": _iso(r.resolved_at),
        "resolution_note": r.resolution_note,
    }
