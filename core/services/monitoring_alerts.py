"""Drift alerts: from alarms to stored, audited alerts; acknowledge and resolve; subscriber hooks.

One alert per ongoing change: a stream alarm is raised only when the stream (at that site and
window) has no open or acknowledged alert, and every alert's key is stored, so a second run
finds the same alarm and writes nothing. A metadata novelty is one alert per new value.

Hooks (the retraining workflow subscribes one) are called with an :class:`AlertEvent` after the
transaction that raised, acknowledged or resolved the alert has committed; a hook that raises
is reported with a warning and never undoes the action.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.drift.calibration import Calibration
from core.drift.monitor import MonitorSettings, StreamReport
from core.drift.novelty import NOVELTY_ATTRIBUTES, NoveltyReport
from core.drift.sitestreams import STREAMS
from core.drift.streams import StreamKind, Windowing
from core.errors import BadInputError, PermissionDeniedError
from core.services.permissions import Permission, SignedInUser, can, parse_role, require
from core.store import alerts, audit_log, sites, users
from core.store.alerts import AlertIn, AlertRecord, AlertStatus
from core.store.engine import SessionFactory
from core.types import JSONObject, JSONValue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "ALERT_HOOKS",
    "AlertCandidate",
    "AlertEvent",
    "AlertHook",
    "AlertHooks",
    "acknowledge_alert",
    "actor_of",
    "alert_to_dict",
    "candidates_for_site",
    "list_alerts",
    "raise_alerts",
    "resolve_alert",
]

_KEY_MAX: Final = 255
_UNRESOLVED: Final = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What a hook is told: ``kind`` is ``"raised"``, ``"acknowledged"`` or ``"resolved"``."""

    kind: str
    alert: AlertRecord


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
    if handle and not (can(by, Permission.APPROVE_DEPLOYMENT) or can(by, Permission.MANAGE_MODELS)):
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


def raise_alerts(
    session_factory: SessionFactory, candidates: Sequence[AlertCandidate], *, actor: str, now: Callable[[], datetime]
) -> list[AlertRecord]:
    """Store the candidates that are new, each with its ``alert_raised`` audit entry, in one transaction.

    A candidate is skipped when its key is stored already, or when it is a stream alarm and that
    stream (site, window) still has an open or acknowledged alert: the same ongoing change.
    """
    if not candidates:
        return []
    raised: list[AlertRecord] = []
    with session_factory.begin() as session:
        site_ids = {s.name: s.id for s in sites.list_sites(session)}
        ongoing = {(a.site, a.stream, a.window) for a in alerts.list_alerts(session, statuses=_UNRESOLVED)}
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
            _audit(session, rec, AuditAction.ALERT_RAISED, actor=actor, note=None, now=now)
            ongoing.add(scope)
            raised.append(rec)
    return raised


def _audit(
    session: Session,
    rec: AlertRecord,
    action: AuditAction,
    *,
    actor: str,
    note: str | None,
    now: Callable[[], datetime],
) -> None:
    payload: JSONObject = {
        "alert_id": rec.id,
        "site": rec.site,
        "stream": rec.stream,
        "detector": rec.detector,
        "window": rec.window,
        "alarm_date": rec.alarm_date.isoformat(),
        "change_date": rec.change_date.isoformat() if rec.change_date else None,
        "status": str(rec.status),
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


def _change(
    session_factory: SessionFactory,
    alert_id: int,
    *,
    by: SignedInUser | str,
    note: str,
    now: Callable[[], datetime],
    target: AlertStatus,
) -> AlertRecord:
    actor = actor_of(by, handle=True)
    note = note.strip()
    if not note:
        raise BadInputError(f"say why: a note is required to mark alert {alert_id} {target}")
    with session_factory.begin() as session:
        if isinstance(by, SignedInUser):
            # The role is re-read in the transaction: a role withdrawn since sign-in takes effect now.
            stored = users.get_user(session, by.username)
            actor_of(SignedInUser(stored.username, parse_role(stored.role)), handle=True)
        step = alerts.acknowledge if target is AlertStatus.ACKNOWLEDGED else alerts.resolve
        rec = step(session, alert_id, by=actor, note=note, now=now())
        action = AuditAction.ALERT_ACKNOWLEDGED if target is AlertStatus.ACKNOWLEDGED else AuditAction.ALERT_RESOLVED
        _audit(session, rec, action, actor=actor, note=note, now=now)
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

    Raises
    ------
    UnknownAlertError, AlertTransitionError
        No such alert, or it is not open.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle alerts.
    """
    rec = _change(session_factory, alert_id, by=by, note=note, now=now, target=AlertStatus.ACKNOWLEDGED)
    hooks.notify(AlertEvent("acknowledged", rec))
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

    Raises
    ------
    UnknownAlertError, AlertTransitionError
        No such alert, or it is resolved already.
    BadInputError
        An empty note.
    PermissionDeniedError
        A person whose role may not handle alerts.
    """
    rec = _change(session_factory, alert_id, by=by, note=note, now=now, target=AlertStatus.RESOLVED)
    hooks.notify(AlertEvent("resolved", rec))
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
