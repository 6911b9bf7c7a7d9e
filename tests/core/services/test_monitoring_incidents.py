"""Drift incidents over a seeded store: grouping across runs, one-transaction ack / resolve, audit, permissions.

The store is ``test_monitoring``'s (two studies a day at a benchmark site and at "riverside", whose
scores rise and whose software changes on day 60). Grouping across runs is driven through
:func:`raise_alerts`, the transaction every monitoring run ends with, so that alarm dates can be
placed exactly; the whole-run tests use :func:`run_monitoring` itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.drift.incidents import IncidentFamily
from core.errors import BadInputError, IncidentTransitionError, PermissionDeniedError, UnknownIncidentError
from core.services import monitoring
from core.services.audit import verify_ledger
from core.services.monitoring import AlertEvent, AlertHooks, MonitoringConfig, compute_monitoring, run_monitoring
from core.services.monitoring_alerts import AlertCandidate, raise_alerts
from core.services.permissions import Role, SignedInUser
from core.store import alerts, audit_log, sites
from core.store.alerts import AlertIn, AlertStatus
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.incidents import IncidentStatus
from tests.core.services.test_monitoring import NOW, _seed, clock

D = date(2025, 5, 2)  # the seeded update day at riverside
CMIO = SignedInUser("cmio", Role.CMIO)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("incidents") / "seeded.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    _seed(make_session_factory(engine))
    engine.dispose()
    return path


@pytest.fixture
def sf(template: Path, tmp_path: Path) -> Iterator[SessionFactory]:
    copy = tmp_path / "vigil.db"
    shutil.copyfile(template, copy)
    engine = make_engine(f"sqlite:///{copy}")
    yield make_session_factory(engine)
    engine.dispose()


def _candidate(stream: str, day: int, *, site: str = "riverside", detector: str = "cusum") -> AlertCandidate:
    alarm = D + timedelta(days=day)
    return AlertCandidate(
        site=site,
        key=f"{site}|{stream}|day|{alarm.isoformat()}",
        stream=stream,
        detector=detector,
        window="study" if stream.startswith("novelty:") else "day",
        alarm_date=alarm,
        change_date=alarm - timedelta(days=1),
        statistic=9.0,
        limit=7.36,
        summary=f"{stream} at {site}: alarm on {alarm.isoformat()}",
        details={},
        ongoing=not stream.startswith("novelty:"),
    )


def _entries(sf: SessionFactory, *actions: AuditAction) -> list[tuple[AuditAction | str, dict[str, object]]]:
    with sf() as s:
        return [(e.action, dict(e.payload)) for e in audit_log.iter_entries(s) if not actions or e.action in actions]


def _count(sf: SessionFactory) -> int:
    return len(_entries(sf))


# --- a whole run --------------------------------------------------------------------------------------


def test_a_run_groups_its_alerts_into_incidents_by_family(sf: SessionFactory) -> None:
    # Prepare
    told: list[AlertEvent] = []
    hooks = AlertHooks()
    hooks.subscribe("t", told.append)

    # Execute
    run = run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=hooks)

    # Assert: every new alert is in an incident of its own family, and the run names the incidents it opened
    assert run.raised and all(a.incident_id is not None for a in run.raised)
    by_id = {i.id: i for i in run.view.incidents}
    for a in run.raised:
        incident = by_id[a.incident_id]  # type: ignore[index]
        assert a.id in [m.id for m in incident.alerts] and incident.site == a.site
        assert incident.family == monitoring.IncidentFamily(
            "metadata" if a.stream.startswith("novelty:") else monitoring.STREAMS[a.stream].group.value
        )
    assert {i.id for i in run.opened} == {a.incident_id for a in run.raised}
    assert {i.family for i in run.opened} >= {IncidentFamily.SCORE, IncidentFamily.METADATA}
    assert len(run.view.unresolved_incidents("riverside")) == len(run.opened)
    # Assert: audited, alert_raised naming the incident; hooks told per alert, with its incident
    opened = _entries(sf, AuditAction.INCIDENT_OPENED)
    assert sorted(p["incident_id"] for _, p in opened) == sorted(i.id for i in run.opened)  # type: ignore[type-var]
    assert sorted(a for _, p in opened for a in p["alert_ids"]) == sorted(a.id for a in run.raised)  # type: ignore[attr-defined]
    raised = {p["alert_id"]: p["incident_id"] for _, p in _entries(sf, AuditAction.ALERT_RAISED)}
    assert raised == {a.id: a.incident_id for a in run.raised}
    assert [(e.kind, e.alert.id, e.incident.id if e.incident else None) for e in told] == [
        ("raised", a.id, a.incident_id) for a in run.raised
    ]
    assert verify_ledger(sf).ok


def test_a_second_run_opens_nothing(sf: SessionFactory) -> None:
    # Prepare
    first = run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=AlertHooks())
    before = _count(sf)

    # Execute
    second = run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=AlertHooks())

    # Assert
    assert second.raised == () and second.opened == ()
    assert [i.id for i in second.view.incidents] == [i.id for i in first.view.incidents]
    assert _count(sf) == before


# --- grouping across runs ---------------------------------------------------------------------------


def test_a_later_alert_joins_the_open_incident_within_the_window_and_one_after_it_opens_another(
    sf: SessionFactory,
) -> None:
    # Prepare: run 1 raises an image alarm on day 1 and a score alarm on day 2
    first = raise_alerts(sf, [_candidate("noise", 1), _candidate("mean_score", 2)], actor="system", now=clock)
    image, score = (a.incident_id for a in first.alerts)

    # Execute: run 2, five days later, another image stream; run 3, day 9 (8 days after the first image alarm)
    second = raise_alerts(sf, [_candidate("intensity_mean", 6)], actor="system", now=clock)
    third = raise_alerts(sf, [_candidate("intensity_spread", 9)], actor="system", now=clock)

    # Assert
    assert image != score and len(first.opened) == 2
    assert second.opened == () and second.alerts[0].incident_id == image
    assert len(third.opened) == 1 and third.alerts[0].incident_id not in (image, score)
    incident = {i.id: i for i in monitoring.list_incidents(sf)}[image]  # type: ignore[index]
    assert [a.stream for a in incident.alerts] == ["noise", "intensity_mean"]
    assert incident.record.first_alarm_date == D + timedelta(days=1)
    assert incident.record.change_date == D  # the earliest estimated change among its alerts
    assert incident.record.summary.startswith("Image streams at riverside: 2 alarms from 2025-05-03")
    assert len(_entries(sf, AuditAction.INCIDENT_OPENED)) == 3
    assert verify_ledger(sf).ok


def test_the_window_comes_from_the_monitoring_config(sf: SessionFactory) -> None:
    # Prepare
    raise_alerts(sf, [_candidate("noise", 1)], actor="system", now=clock, window_days=2)

    # Execute: three days after the first alarm, with a two-day window
    later = raise_alerts(sf, [_candidate("intensity_mean", 4)], actor="system", now=clock, window_days=2)

    # Assert
    assert len(later.opened) == 1


def test_a_resolved_incident_is_never_joined(sf: SessionFactory) -> None:
    # Prepare
    first = raise_alerts(sf, [_candidate("noise", 1)], actor="system", now=clock)
    incident_id = first.alerts[0].incident_id
    assert incident_id is not None
    monitoring.resolve_incident(sf, incident_id, by="cli:ml", note="scanner serviced", now=clock, hooks=AlertHooks())

    # Execute: the next day, well inside the window
    later = raise_alerts(sf, [_candidate("intensity_mean", 2)], actor="system", now=clock)

    # Assert
    assert len(later.opened) == 1 and later.alerts[0].incident_id != incident_id


# --- acknowledging and resolving an incident ----------------------------------------------------------


def _two_image_alerts(sf: SessionFactory) -> tuple[int, list[int]]:
    raised = raise_alerts(sf, [_candidate("noise", 1), _candidate("intensity_mean", 2)], actor="system", now=clock)
    incident_id = raised.alerts[0].incident_id
    assert incident_id is not None and raised.alerts[1].incident_id == incident_id
    return incident_id, [a.id for a in raised.alerts]


def test_acknowledging_an_incident_moves_it_and_its_open_alerts_in_one_transaction(sf: SessionFactory) -> None:
    # Prepare
    incident_id, alert_ids = _two_image_alerts(sf)
    told: list[AlertEvent] = []
    hooks = AlertHooks()
    hooks.subscribe("retraining", told.append)
    before = _count(sf)

    # Execute
    incident = monitoring.acknowledge_incident(
        sf, incident_id, by=CMIO, note="vendor confirms the update", now=clock, hooks=hooks
    )

    # Assert: the incident and both alerts moved, with who and why
    assert incident.status is IncidentStatus.ACKNOWLEDGED and incident.record.acknowledged_by == "cmio"
    assert [(a.status, a.acknowledged_by, a.acknowledge_note) for a in incident.alerts] == [
        (AlertStatus.ACKNOWLEDGED, "cmio", "vendor confirms the update")
    ] * 2
    # Assert: three entries, written together, the incident's last, naming the alerts it moved
    new = _entries(sf)[before:]
    assert [action for action, _ in new] == [AuditAction.ALERT_ACKNOWLEDGED] * 2 + [AuditAction.INCIDENT_ACKNOWLEDGED]
    assert [p["alert_id"] for _, p in new[:2]] == alert_ids
    assert all(p["incident_id"] == incident_id and p["note"] == "vendor confirms the update" for _, p in new)
    assert new[2][1]["acknowledged_alert_ids"] == alert_ids
    assert [(e.kind, e.alert.id, e.incident.status if e.incident else None) for e in told] == [
        ("acknowledged", i, IncidentStatus.ACKNOWLEDGED) for i in alert_ids
    ]
    assert verify_ledger(sf).ok


def test_resolving_an_incident_resolves_every_unresolved_alert_and_restarts_their_charts(sf: SessionFactory) -> None:
    # Prepare: a real run; the score incident holds the mean-score alert; one of its alerts acknowledged alone
    run = run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=AlertHooks())
    score = next(i for i in run.opened if i.family is IncidentFamily.SCORE)
    monitoring.acknowledge_alert(sf, score.alerts[0].id, by="cli:ml", note="looking", now=clock, hooks=AlertHooks())
    before = _count(sf)

    # Execute
    resolved = monitoring.resolve_incident(sf, score.id, by="cli:ml", note="retrained", now=clock, hooks=AlertHooks())
    again = run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=AlertHooks())

    # Assert: the incident and all its alerts resolved, audited in one go
    assert resolved.is_resolved and resolved.unresolved_alerts == ()
    assert {a.resolution_note for a in resolved.alerts} == {"retrained"}
    new = _entries(sf)[before:]
    assert [a for a, _ in new] == [AuditAction.ALERT_RESOLVED] * len(score.alerts) + [AuditAction.INCIDENT_RESOLVED]
    assert new[-1][1]["resolved_alert_ids"] == sorted(a.id for a in score.alerts)
    # Assert: each stream's chart restarted after its alarm, so the same change is not raised again
    assert "mean_score" not in [a.stream for a in again.raised]
    report = next(r for r in compute_monitoring(sf, site="riverside").sites[0].reports if r.stream.name == "mean_score")
    assert len(report.segment_starts) == 2
    assert verify_ledger(sf).ok


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("ack-twice", IncidentTransitionError),
        ("resolve-twice", IncidentTransitionError),
        ("ack-resolved", IncidentTransitionError),
        ("unknown", UnknownIncidentError),
    ],
)
def test_wrong_moves_are_refused_and_write_nothing(sf: SessionFactory, step: str, error: type[Exception]) -> None:
    # Prepare
    incident_id, _ = _two_image_alerts(sf)
    if step == "ack-twice":
        monitoring.acknowledge_incident(sf, incident_id, by="t", note="seen", now=clock, hooks=AlertHooks())
    elif step in ("resolve-twice", "ack-resolved"):
        monitoring.resolve_incident(sf, incident_id, by="t", note="done", now=clock, hooks=AlertHooks())
    target = 9999 if step == "unknown" else incident_id
    before = _count(sf)
    with sf() as s:
        statuses = [a.status for a in alerts.list_alerts(s)]

    # Execute / Assert
    with pytest.raises(error, match=str(target)):
        move = monitoring.resolve_incident if step == "resolve-twice" else monitoring.acknowledge_incident
        move(sf, target, by="t", note="again", now=clock, hooks=AlertHooks())
    assert _count(sf) == before
    with sf() as s:
        assert [a.status for a in alerts.list_alerts(s)] == statuses


def test_a_note_is_required(sf: SessionFactory) -> None:
    incident_id, _ = _two_image_alerts(sf)
    with pytest.raises(BadInputError, match=f"note is required to mark incident {incident_id}"):
        monitoring.resolve_incident(sf, incident_id, by="t", note="  ", now=clock)


def test_only_cmio_and_ml_engineers_handle_incidents(sf: SessionFactory) -> None:
    # Prepare
    incident_id, _ = _two_image_alerts(sf)
    before = _count(sf)

    # Execute / Assert: a champion may list, not handle; a radiologist may not even list
    assert monitoring.list_incidents(sf, by=SignedInUser("champ", Role.CHAMPION))
    for move in (monitoring.acknowledge_incident, monitoring.resolve_incident):
        with pytest.raises(PermissionDeniedError, match="handle drift alerts"):
            move(sf, incident_id, by=SignedInUser("champ", Role.CHAMPION), note="x", now=clock)
    with pytest.raises(PermissionDeniedError):
        monitoring.list_incidents(sf, by=SignedInUser("rad", Role.RADIOLOGIST))
    # a role withdrawn since sign-in: "champ" signed in with a stale CMIO role
    with pytest.raises(PermissionDeniedError):
        monitoring.resolve_incident(sf, incident_id, by=SignedInUser("champ", Role.CMIO), note="x", now=clock)
    assert _count(sf) == before


# --- alert-level actions inside an incident -----------------------------------------------------------


def test_resolving_the_last_unresolved_alert_resolves_its_incident(sf: SessionFactory) -> None:
    # Prepare
    incident_id, (first, second) = _two_image_alerts(sf)
    told: list[AlertEvent] = []
    hooks = AlertHooks()
    hooks.subscribe("t", told.append)

    # Execute
    monitoring.resolve_alert(sf, first, by="cli:ml", note="noise was a loose cable", now=clock, hooks=hooks)
    monitoring.acknowledge_alert(sf, second, by="cli:ml", note="seen", now=clock, hooks=hooks)
    middle = monitoring.list_incidents(sf)[0]
    monitoring.resolve_alert(sf, second, by="cli:ml", note="cable replaced", now=clock, hooks=hooks)

    # Assert: neither the first resolution nor an acknowledgement moves the incident; the last one closes it
    assert middle.status is IncidentStatus.OPEN
    final = monitoring.list_incidents(sf)[0]
    assert final.is_resolved and final.record.resolution_note == "cable replaced"
    closed = _entries(sf, AuditAction.INCIDENT_RESOLVED)
    assert [(p["incident_id"], p["closed_by_alert"]) for _, p in closed] == [(incident_id, second)]
    assert [e.incident.status if e.incident else None for e in told] == [
        IncidentStatus.OPEN,
        IncidentStatus.OPEN,
        IncidentStatus.RESOLVED,
    ]
    assert verify_ledger(sf).ok


# --- alerts from before incidents ---------------------------------------------------------------------


def test_unresolved_alerts_from_before_incidents_are_grouped_at_the_next_run(sf: SessionFactory) -> None:
    # Prepare: alerts as migration 0007 leaves them (incident_id NULL), two unresolved image alarms, one resolved
    with sf.begin() as s:
        site_id = sites.get_site(s, "riverside").id
        ids = []
        for key, stream, day in (("old1", "noise", 1), ("old2", "intensity_mean", 3), ("old3", "noise", 2)):
            alarm = D + timedelta(days=day)
            staged = alerts.add_alert(
                s,
                AlertIn(key, site_id, stream, "cusum", "day", alarm, None, 9.0, 7.4, "s", {}),
                raised_by="system",
                now=NOW,
            )
            ids.append(staged.id)
        alerts.resolve(s, ids[2], by="t", note="old", now=NOW)

    # Execute: a run with nothing new
    adopted = raise_alerts(sf, [], actor="system", now=clock)
    again = raise_alerts(sf, [], actor="system", now=clock)

    # Assert
    assert adopted.alerts == () and len(adopted.opened) == 1 and again.opened == ()
    with sf() as s:
        grouped = {a.id: a.incident_id for a in alerts.list_alerts(s)}
    assert grouped == {ids[0]: adopted.opened[0].id, ids[1]: adopted.opened[0].id, ids[2]: None}
    [(_, payload)] = _entries(sf, AuditAction.INCIDENT_OPENED)
    assert payload["alert_ids"] == ids[:2] and payload["family"] == "image"
    assert verify_ledger(sf).ok


# --- settings and serialization -----------------------------------------------------------------------


@pytest.mark.parametrize("window", [-1, -30])
def test_a_negative_incident_window_is_refused_naming_it(sf: SessionFactory, window: int) -> None:
    with pytest.raises(BadInputError, match=f"got {window}"):
        MonitoringConfig(incident_window_days=window)
    before = _count(sf)
    with pytest.raises(BadInputError, match=f"got {window}"):
        raise_alerts(sf, [_candidate("noise", 1)], actor="system", now=clock, window_days=window)
    assert _count(sf) == before


def test_incidents_serialize_to_json_with_their_evidence(sf: SessionFactory) -> None:
    # Prepare
    incident_id, alert_ids = _two_image_alerts(sf)

    # Execute
    data = json.loads(json.dumps(monitoring.incident_to_dict(monitoring.list_incidents(sf)[0])))

    # Assert
    assert data["id"] == incident_id and data["alert_ids"] == alert_ids
    assert data["family"] == "image" and data["status"] == "open" and data["site"] == "riverside"
    assert data["first_alarm_date"] == "2025-05-03" and data["change_date"] == "2025-05-02"
    assert [e["stream_title"] for e in data["evidence"]] == ["Noise estimate", "Intensity mean"]
