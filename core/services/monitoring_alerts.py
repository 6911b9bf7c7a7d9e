"""Drift alerts: from alarms to stored, audited alerts grouped into incidents; acknowledge and resolve; hooks.

One alert per ongoing change: a stream alarm is raised only when the stream (at that site and
window) has no open or acknowledged alert, and every alert's key is stored, so a second run
finds the same alarm and writes nothing. A metadata novelty is one alert per new value.

Every new alert joins an incident in the transaction that raises it (the rule is
:func:`core.drift.incidents.group_alarms`): the unresolved incident of its site and family whose
first alarm is within the incident window, or a new one (audited ``incident_opened``). Alerts
raised before incidents existed and still unresolved are grouped the same way at the next run,
among themselves. Resolving an incident's last unresolved alert resolves the incident too (an
incident with nothing unresolved is over); acknowledging an alert leaves its incident as it is.

Hooks (the retraining workflow subscribes one) are called with an :class:`AlertEvent` after the
transaction that raised, acknowledged or resolved the alert has committed; a hook that raises
is reported with a warning and never undoes the action.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.drift.calibration import Calibration
from core.drift.incidents import (
    DEFAULT_WINDOW_DAYS,
    Alarm,
    IncidentFamily,
    OpenIncident,
    check_window_days,
    family_of,
    group_alarms,
    incident_summary,
)
from core.drift.monitor import MonitorSettings, StreamReport
from core.drift.novelty import NOVELTY_ATTRIBUTES, NoveltyReport
from core.drift.sitestreams import STREAMS
from core.drift.streams import StreamKind, Windowing
from core.errors import BadInputError, PermissionDeniedError
from core.services.permissions import APPROVER_OR_ENGINEER, Permission, SignedInUser, can_any, parse_role, require
from core.store import alerts, audit_log, incidents, sites, users
from core.store.alerts import AlertIn, AlertRecord, AlertStatus
from core.store.engine import SessionFactory
from core.store.incidents import IncidentIn, IncidentRecord, IncidentStatus
from core.types import JSONObject, JSONValue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "ALERT_HOOKS",
    "AlertCandidate",
    "AlertEvent",
    "AlertHook",
    "AlertHooks",
    "RaisedAlerts",
    "acknowledge_alert",
    "actor_of",
    "alert_to_dict",
    "audit_alert",
    "audit_incident",
    "candidates_for_site",
    "list_alerts",
    "raise_alerts",
    "recheck_role",
    "required_note",
    "resolve_alert",
]

_KEY_MAX: Final = 255
_UNRESOLVED: Final = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
_UNRESOLVED_INCIDENTS: Final = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What a hook is told: ``kind`` is ``"raised"``, ``"acknowledged"`` or ``"resolved"``.

    ``incident`` is the alert's incident as the action left it (None only for an alert from
    before incidents that no run has grouped yet). Hooks are told per alert: an incident
    acknowledged or resolved as a whole tells them once for each alert it moved.
    """

    kind: str
    alert: AlertRecord
    incident: IncidentRecord | None = None


AlertHook = Callable[[AlertEvent], None]


class AlertHooks:
    """Named subscribers to alert events (thread-safe; the process-wide one is :data:`ALERT_HOOKS`)."""

    def __init__(self) -> None:
        self._hooks: dict[str, AlertHook] = {}
        self._lock = threading.Lock()

    def subscribe(self, name: str, hook: AlertHook) -> None:
        """Call ``hook`` on every event from now on; a second subscription under ``name`` replaces the first."""
        with self._lock:
            self._hooks[name] = hook

    def unsubscribe(self, name: str) -> None:
        """Stop calling the hook subscribed as ``name`` (nothing happens if there is none)."""
        with self._lock:
            self._hooks.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        """Subscribed names, in subscription order."""
        with self._lock:
            return tuple(self._hooks)

    def notify(self, event: AlertEvent) -> tuple[str, ...]:
        """Call every hook with ``event``; return the names of those that raised (each also warns)."""
        with self._lock:
            hooks = list(self._hooks.items())
        failed = []
        for name, hook in hooks:
            try:
                hook(event)
            except Exception as exc:  # noqa: BLE001 - a subscriber's bug must not undo a committed action
                warnings.warn(f"alert hook {name!r} failed on {event.kind} alert {event.alert.id}: {exc}", stacklevel=2)
                failed.append(name)
        return tuple(failed)


#: The process-wide registry ``run_monitoring`` and the alert lifecycle notify by default.
ALERT_HOOKS: Final = AlertHooks()


def actor_of(by: SignedInUser | str, *, handle: bool) -> str:
    """The audit actor for ``by``; a person must hold the permission the action needs.

    Viewing and running monitors needs ``view_performance``; acknowledging and resolving alerts
    (``handle=True``) also needs ``approve_deployment`` (CMIO) or ``manage_models`` (ML engineer).
    A string is an unattended actor at a trusted edge (the CLI, a scheduler) and is used as given.

    Raises
    ------
    PermissionDeniedError
        A signed-in person whose role does not allow it.
    """
    if isinstance(by, str):
        return by
    require(by, Permission.VIEW_PERFORMANCE)
    if handle and not can_any(by, APPROVER_OR_ENGINEER):
        raise PermissionDeniedError(by.username, by.role.value, "handle_drift_alerts")
    return by.username


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """An alert the monitor would raise; ``ongoing`` marks stream alarms (one per unresolved change)."""

    site: str
    key: str
    stream: str
    detector: str
    window: str
    alarm_date: date
    change_date: date | None
    statistic: float | None
    limit: float | None
    summary: str
    details: JSONObject
    ongoing: bool


def _key(*parts: str) -> str:
    key = "|".join(parts)
    if len(key) <= _KEY_MAX:
        return key
    return f"{parts[0]}|sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def candidates_for_site(
    site: str,
    reports: Sequence[StreamReport],
    novelty: NoveltyReport,
    *,
    settings: MonitorSettings,
    calibrations: dict[str, Calibration],
    windowing: Windowing,
    distance_window: Windowing,
) -> list[AlertCandidate]:
    """Alert candidates of one site: the current segment's first alarm per stream, and each novelty."""
    out = []
    for report in reports:
        alarm = report.current_alarm(settings.alerting)
        if alarm is None:
            continue
        name = report.stream.name
        window = (distance_window if report.stream.kind is StreamKind.DISTANCE else windowing).label
        title = STREAMS[name].title if name in STREAMS else name
        others: dict[str, JSONValue] = {
            a.detector: {
                "date": a.alarm_date.isoformat(),
                "change_date": a.change_date.isoformat(),
                "statistic": round(a.statistic, 6),
                "limit": round(a.limit, 6),
            }
            for a in report.alarms
            if a.segment == alarm.segment
        }
        base = report.baseline
        details: JSONObject = {
            "stream_title": title,
            "alarms": others,
            "arl0": settings.arl0,
            "cusum": {"k": calibrations["cusum"].parameter, "h": round(calibrations["cusum"].threshold, 6)},
            "ewma": {"lambda": calibrations["ewma"].parameter, "L": round(calibrations["ewma"].threshold, 6)},
            "baseline": None if base is None else {"mean": base.mean, "sd": base.sd, "windows": base.windows},
            "segment_start": report.stream.dates[report.segment_starts[-1]].item().isoformat(),
        }
        summary = (
            f"{title} at {site}: {alarm.detector.upper()} alarm on {alarm.alarm_date.isoformat()} "
            f"(estimated change from {alarm.change_date.isoformat()})"
        )
        out.append(
            AlertCandidate(
                site,
                _key(site, name, window, alarm.alarm_date.isoformat()),
                name,
                alarm.detector,
                window,
                alarm.alarm_date,
                alarm.change_date,
                alarm.statistic,
                alarm.limit,
                summary,
                details,
                True,
            )
        )
    out.extend(_novelty_candidates(site, novelty))
    return out


def _novelty_candidates(site: str, novelty: NoveltyReport) -> list[AlertCandidate]:
    out = []
    for ev in novelty.events:
        label = NOVELTY_ATTRIBUTES[ev.attribute]
        summary = f"New {label} at {site}: {ev.value!r}, first seen on {ev.study_date.isoformat()}"
        details: JSONObject = {
            "attribute": ev.attribute,
            "value": ev.value,
            "study_uid": ev.study_uid,
            "known_before": list(ev.known),
        }
        stream = f"novelty:{ev.attribute}"
        out.append(
            AlertCandidate(
                site,
                _key(site, stream, ev.value),
                stream,
                "novelty",
                "study",
                ev.study_date,
                ev.study_date,
                None,
                None,
                summary,
                details,
                False,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class RaisedAlerts:
    """What one :func:`raise_alerts` transaction stored.

    Attributes
    ----------
    alerts : tuple of AlertRecord
        The new alerts, each with the incident it joined.
    opened : tuple of IncidentRecord
        The incidents it opened (for new alerts, or for alerts from before incidents), as it left them.
    incidents : dict of int to IncidentRecord
        Every incident it opened or joined, by id, as it left them.
    """

    alerts: tuple[AlertRecord, ...]
    opened: tuple[IncidentRecord, ...]
    incidents: dict[int, IncidentRecord]

    def incident_of(self, alert: AlertRecord) -> IncidentRecord | None:
        """The incident ``alert`` joined, as this transaction left it."""
        return None if alert.incident_id is None else self.incidents.get(alert.incident_id)


def raise_alerts(
    session_factory: SessionFactory,
    candidates: Sequence[AlertCandidate],
    *,
    actor: str,
    now: Callable[[], datetime],
    window_days: int = DEFAULT_WINDOW_DAYS,
    sites_grouped: Collection[str] | None = None,
) -> RaisedAlerts:
    """Store the new candidates and group them into incidents, with their audit entries, in one transaction.

    A candidate is skipped when its key is stored already, or when it is a stream alarm and that
    stream (site, window) still has an open or acknowledged alert: the same ongoing change. Each
    new alert joins the unresolved incident of its site and family whose first alarm is at most
    ``window_days`` days away, or opens one (``incident_opened``); its ``alert_raised`` entry
    names the incident. Unresolved alerts from before incidents are grouped too, among themselves
    (those of ``sites_grouped`` only, when given: the sites this run monitored).

    Raises
    ------
    BadInputError
        ``window_days`` is negative or not a whole number.
    """
    check_window_days(window_days)
    with session_factory.begin() as session:
        new = _stage(session, candidates, actor=actor, now=now)
        fresh = {a.id for a in new}
        orphans = [
            a
            for a in alerts.list_alerts(session, statuses=_UNRESOLVED)
            if a.incident_id is None and a.id not in fresh and (sites_grouped is None or a.site in sites_grouped)
        ]
        if not new and not orphans:
            return RaisedAlerts((), (), {})
        # Alerts from before incidents group among themselves only, so that every alert joining an
        # existing incident is a new one, whose alert_raised entry records the join.
        opened = _group(session, orphans, [], window_days=window_days, actor=actor, now=now)
        opened += _group(session, new, _unresolved_spans(session), window_days=window_days, actor=actor, now=now)
        raised = [alerts.get_alert(session, a.id) for a in new]
        for rec in raised:
            audit_alert(session, rec, AuditAction.ALERT_RAISED, actor=actor, note=None, now=now)
        touched = {a.incident_id for a in raised} | set(opened)
        final = {i: incidents.get_incident(session, i) for i in sorted(t for t in touched if t is not None)}
    return RaisedAlerts(tuple(raised), tuple(final[i] for i in opened), final)


def _stage(
    session: Session, candidates: Sequence[AlertCandidate], *, actor: str, now: Callable[[], datetime]
) -> list[AlertRecord]:
    """Stage the candidates that are new (no audit entry yet: it names the incident, decided next)."""
    site_ids = {s.name: s.id for s in sites.list_sites(session)}
    ongoing = {(a.site, a.stream, a.window) for a in alerts.list_alerts(session, statuses=_UNRESOLVED)}
    staged: list[AlertRecord] = []
    for c in candidates:
        scope = (c.site, c.stream, c.window)
        if alerts.find_by_key(session, c.key) is not None or (c.ongoing and scope in ongoing):
            continue
        rec = alerts.add_alert(
            session,
            AlertIn(
                c.key,
                site_ids[c.site],
                c.stream,
                c.detector,
                c.window,
                c.alarm_date,
                c.change_date,
                c.statistic,
                c.limit,
                c.summary,
                c.details,
            ),
            raised_by=actor,
            now=now(),
        )
        ongoing.add(scope)
        staged.append(rec)
    return staged


def _unresolved_spans(session: Session) -> list[OpenIncident]:
    """Every unresolved incident as the grouping rule sees it (site, family, first and last alarm)."""
    spans = []
    for inc in incidents.list_incidents(session, statuses=_UNRESOLVED_INCIDENTS):
        members = alerts.list_alerts(session, incident_id=inc.id)
        last = max((a.alarm_date for a in members), default=inc.first_alarm_date)
        spans.append(OpenIncident(inc.id, inc.site, IncidentFamily(inc.family), inc.first_alarm_date, last))
    return spans


def _group(
    session: Session,
    batch: Sequence[AlertRecord],
    unresolved: Sequence[OpenIncident],
    *,
    window_days: int,
    actor: str,
    now: Callable[[], datetime],
) -> list[int]:
    """Attach ``batch`` to ``unresolved`` incidents or to new ones by the rule; return the new incidents' ids."""
    by_key = {a.dedupe_key: a for a in batch}
    grouping = group_alarms(
        [Alarm(a.dedupe_key, a.site, a.stream, a.alarm_date) for a in batch], unresolved, window_days=window_days
    )
    for key, incident_id in grouping.joined.items():
        _join(session, incident_id, by_key[key])
    return [
        _open(session, [by_key[a.key] for a in group], window_days=window_days, actor=actor, now=now)
        for group in grouping.opened
    ]


def _earliest_change(members: Sequence[AlertRecord]) -> date | None:
    return min((a.change_date for a in members if a.change_date is not None), default=None)


def _summary(site: str, family: IncidentFamily, members: Sequence[AlertRecord]) -> str:
    alarms = [(a.stream, a.alarm_date) for a in members]
    return incident_summary(site, family, alarms, _earliest_change(members))


def _join(session: Session, incident_id: int, alert: AlertRecord) -> None:
    rec = incidents.get_incident(session, incident_id)
    members = [*alerts.list_alerts(session, incident_id=incident_id), alert]
    summary = _summary(rec.site, IncidentFamily(rec.family), members)
    incidents.attach(session, incident_id, alert.id, summary=summary)


def _open(
    session: Session, members: Sequence[AlertRecord], *, window_days: int, actor: str, now: Callable[[], datetime]
) -> int:
    first = members[0]
    family = family_of(first.stream)
    site_id = sites.get_site(session, first.site).id
    summary = _summary(first.site, family, members)
    staged = incidents.add_incident(
        session,
        IncidentIn(site_id, str(family), min(a.alarm_date for a in members), _earliest_change(members), summary),
        opened_by=actor,
        now=now(),
    )
    rec = staged
    for a in members:
        rec = incidents.attach(session, staged.id, a.id, summary=summary)
    extra: JSONObject = {"alert_ids": [a.id for a in members], "window_days": window_days}
    audit_incident(session, rec, AuditAction.INCIDENT_OPENED, actor=actor, note=None, now=now, extra=extra)
    return staged.id


def audit_alert(
    session: Session,
    rec: AlertRecord,
    action: AuditAction,
    *,
    actor: str,
    note: str | None,
    now: Callable[[], datetime],
) -> None:
    """Append the audit entry of an alert action; the payload names the alert's incident."""
    payload: JSONObject = {
        "alert_id": rec.id,
        "site": rec.site,
        "stream": rec.stream,
        "detector": rec.detector,
        "window": rec.window,
        "alarm_date": rec.alarm_date.isoformat(),
        "change_date": rec.change_date.isoformat() if rec.change_date else None,
        "status": str(rec.status),
        "incident_id": rec.incident_id,
    }
    if note is not None:
        payload["note"] = note
    audit_log.append(
        session,
        actor=actor,
        action=action,
        subject=f"{rec.site}/{rec.stream}",
        payload=payload,
        recorded_at=now().isoformat(),
    )


def audit_incident(
    session: Session,
    rec: IncidentRecord,
    action: AuditAction,
    *,
    actor: str,
    note: str | None,
    now: Callable[[], datetime],
    extra: JSONObject | None = None,
) -> None:
    """Append the audit entry of an incident action (``incident_opened``, ``_acknowledged``, ``_resolved``).

    The payload holds the incident's id, site, family, dates and status after the action, the
    note when there is one, and ``extra`` (the alert ids it opened with or moved, ...).
    """
    payload: JSONObject = {
        "incident_id": rec.id,
        "site": rec.site,
        "family": rec.family,
        "first_alarm_date": rec.first_alarm_date.isoformat(),
        "change_date": rec.change_date.isoformat() if rec.change_date else None,
        "status": str(rec.status),
        **(extra or {}),
    }
    if note is not None:
        payload["note"] = note
    audit_log.append(
        session,
        actor=actor,
        action=action,
        subject=f"{rec.site}/incident/{rec.id}",
        payload=payload,
        recorded_at=now().isoformat(),
    )


def list_alerts(
    session_factory: SessionFactory,
    *,
    site: str | None = None,
    statuses: tuple[AlertStatus, ...] | None = None,
    by: SignedInUser | str = "system",
) -> list[AlertRecord]:
    """Alerts newest first, optionally of one site and some statuses (a person needs ``view_performance``)."""
    actor_of(by, handle=False)
    with session_factory() as session:
        site_id = sites.get_site(session, site).id if site is not None else None
        return alerts.list_alerts(session, site_id=site_id, statuses=statuses)


def recheck_role(session: Session, by: SignedInUser | str) -> None:
    """Inside the action's transaction, check a person's *stored* role still lets them handle alerts.

    A role withdrawn since sign-in takes effect now. Unattended actors (strings) pass.

    Raises
    ------
    PermissionDeniedError
        The stored role may not handle drift alerts and incidents.
    """
    if isinstance(by, SignedInUser):
        stored = users.get_user(session, by.username)
        actor_of(SignedInUser(stored.username, parse_role(stored.role)), handle=True)


def required_note(note: str, what: str, target: str) -> str:
    """``note`` stripped; a blank one is refused naming ``what`` (``"alert 4"``) and the ``target`` status.

    Raises
    ------
    BadInputError
        The note is empty or blank.
    """
    note = note.strip()
    if not note:
        raise BadInputError(f"say why: a note is required to mark {what} {target}")
    return note


def _change(
    session_factory: SessionFactory,
    alert_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    target: AlertStatus,
) -> tuple[AlertRecord, IncidentRecord | None]:
    actor = actor_of(by, handle=True)
    note = required_note(note, f"alert {alert_id}", target)
    with session_factory.begin() as session:
        recheck_role(session, by)
        step = alerts.acknowledge if target is AlertStatus.ACKNOWLEDGED else alerts.resolve
        rec = step(session, alert_id, by=actor, note=note, now=now())
        action = AuditAction.ALERT_ACKNOWLEDGED if target is AlertStatus.ACKNOWLEDGED else AuditAction.ALERT_RESOLVED
        audit_alert(session, rec, action, actor=actor, note=note, now=now)
        incident = None
        if rec.incident_id is not None:
            incident = _close_if_done(session, rec.incident_id, rec.id, actor=actor, note=note, now=now)
    return rec, incident


def _close_if_done(
    session: Session, incident_id: int, alert_id: int, *, actor: str, note: str, now: Callable[[], datetime]
) -> IncidentRecord:
    """The incident, resolved (and audited) when alert ``alert_id`` was its last unresolved alert."""
    rec = incidents.get_incident(session, incident_id)
    left = alerts.list_alerts(session, incident_id=rec.id, statuses=_UNRESOLVED)
    if rec.is_resolved or left:
        return rec
    rec = incidents.resolve(session, rec.id, by=actor, note=note, now=now())
    extra: JSONObject = {"closed_by_alert": alert_id, "resolved_alert_ids": []}
    audit_incident(session, rec, AuditAction.INCIDENT_RESOLVED, actor=actor, note=note, now=now, extra=extra)
    return rec


def acknowledge_alert(
    session_factory: SessionFactory,
    alert_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    hooks: AlertHooks = ALERT_HOOKS,
) -> AlertRecord:
    """Mark an open alert acknowledged, with who and why, and its audit entry; then tell the hooks.

    Its incident stays as it is (acknowledge the incident to acknowledge all of its alerts).

    Raises
    ------
    UnknownAlertError, AlertTransitionError
        No such alert, or it is not open.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle alerts.
    """
    rec, incident = _change(session_factory, alert_id, by=by, note=note, now=now, target=AlertStatus.ACKNOWLEDGED)
    hooks.notify(AlertEvent("acknowledged", rec, incident))
    return rec


def resolve_alert(
    session_factory: SessionFactory,
    alert_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    hooks: AlertHooks = ALERT_HOOKS,
) -> AlertRecord:
    """Mark an open or acknowledged alert resolved, with who and why, and its audit entry; then tell the hooks.

    The stream's chart restarts after the alarm at the next monitoring run (a fresh baseline).
    When it was the last unresolved alert of its incident, the incident is resolved too, in the
    same transaction, with the same note (``incident_resolved``, ``closed_by_alert``).

    Raises
    ------
    UnknownAlertError, AlertTransitionError
        No such alert, or it is resolved already.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle alerts.
    """
    rec, incident = _change(session_factory, alert_id, by=by, note=note, now=now, target=AlertStatus.RESOLVED)
    hooks.notify(AlertEvent("resolved", rec, incident))
    return rec


def alert_to_dict(rec: AlertRecord) -> JSONObject:
    """JSON-ready alert (what ``vigil drift --json`` prints in ``alerts``)."""

    def iso(value: date | datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": rec.id,
        "site": rec.site,
        "stream": rec.stream,
        "detector": rec.detector,
        "window": rec.window,
        "alarm_date": rec.alarm_date.isoformat(),
        "change_date": iso(rec.change_date),
        "statistic": rec.statistic,
        "limit": rec.control_limit,
        "summary": rec.summary,
        "status": str(rec.status),
        "raised_by": rec.raised_by,
        "raised_at": iso(rec.raised_at),
        "acknowledged_by": rec.acknowledged_by,
        "acknowledged_at": iso(rec.acknowledged_at),
        "acknowledge_note": rec.acknowledge_note,
        "resolved_by": rec.resolved_by,
        "resolved_at": iso(rec.resolved_at),
        "resolution_note": rec.resolution_note,
        "details": rec.details,
    }
