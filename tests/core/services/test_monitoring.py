"""Drift monitoring service over a seeded store: alerts with audit entries, no duplicates, lifecycle, hooks.

The store is filled directly (no DICOM, no model): two studies a day at a benchmark site and at
"riverside", whose scores rise by three standard deviations and whose software version changes
on day 60. Image streams have no cached features here and show as skipped values.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.audit.events import AuditAction
from core.drift.monitor import MonitorSettings, StreamStatus
from core.errors import AlertTransitionError, BadInputError, PermissionDeniedError, UnknownAlertError, UnknownSiteError
from core.imaging.spacing import SpacingSource
from core.services import monitoring
from core.services.audit import verify_ledger
from core.services.monitoring import AlertEvent, AlertHooks, compute_monitoring, run_monitoring
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, model_versions, predictions, sites, studies, users
from core.store.alerts import AlertStatus
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.predictions import PredictionIn
from core.store.studies import InstanceIn, StudyIn

NOW = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
DAY0 = date(2025, 3, 3)
SHIFT_DAY = 60
UPDATE = DAY0 + timedelta(days=SHIFT_DAY)


def clock() -> datetime:
    return NOW


def _study(uid: str, day: date, software: str) -> StudyIn:
    return StudyIn(
        study_uid=uid,
        patient_id=uid,
        accession_number=uid,
        study_date=day,
        modality="DX",
        body_part="CHEST",
        view_position="PA",
        manufacturer_raw="Philips Medical Systems",
        vendor="Philips",
        vendor_mapped=True,
        manufacturer_model_name="DigitalDiagnost",
        station_name="S1",
        institution_name="H",
        software_versions=software,
        protocol_name="Thorax PA",
        patient_age="060Y",
        patient_sex="F",
        kvp=125.0,
    )


def _instance(uid: str) -> InstanceIn:
    return InstanceIn(
        sop_instance_uid=uid + ".1",
        series_uid=uid + ".2",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        path=f"/nonexistent/{uid}.dcm",
        sha256=f"{abs(hash(uid)):064d}"[:64],
        rows=256,
        columns=256,
        pixel_spacing_row=1.6,
        pixel_spacing_col=1.6,
        photometric="MONOCHROME2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        spacing_source=SpacingSource.PIXEL_SPACING,
    )


def _seed(sf: SessionFactory, *, days: int = 90, shift: float = 0.24) -> None:
    rng = np.random.default_rng(0)
    with sf.begin() as s:
        bench = sites.add_site(s, "benchmark", is_benchmark=True, now=NOW)
        river = sites.add_site(s, "riverside", now=NOW)
        mv = model_versions.register(
            s, version="v1", card={"version": "v1", "operating_threshold": 0.5}, weights_sha256="0" * 64, now=NOW
        )
        model_versions.set_serving(s, "v1")
        for site in (bench, river):
            for day in range(days):
                changed = site is river and day >= SHIFT_DAY
                for j in range(2):
                    uid = f"1.2.826.0.1.{site.id}.{day}.{j}"
                    stored = studies.add_study_with_instance(
                        s,
                        site_id=site.id,
                        study=_study(uid, DAY0 + timedelta(days=day), "v5" if changed else "v4"),
                        instance=_instance(uid),
                        now=NOW,
                    )
                    score = float(np.clip(rng.normal(0.3 + (shift if changed else 0.0), 0.08), 0.0, 1.0))
                    predictions.add_prediction(
                        s,
                        PredictionIn(stored.instance.id, mv.id, None, score, score >= 0.5, 0.5, None, "cpu"),
                        now=NOW,
                    )
        users.add_user(s, username="cmio", role="cmio", password_hash="x", now=NOW)
        users.add_user(s, username="champ", role="champion", password_hash="x", now=NOW)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded database, built once per module; each test works on a copy."""
    path = tmp_path_factory.mktemp("monitoring") / "seeded.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    _seed(make_session_factory(engine))
    engine.dispose()
    return path


@pytest.fixture
def seeded(template: Path, tmp_path: Path) -> Iterator[SessionFactory]:
    copy = tmp_path / "vigil.db"
    shutil.copyfile(template, copy)
    engine = make_engine(f"sqlite:///{copy}")
    yield make_session_factory(engine)
    engine.dispose()


def _run(sf: SessionFactory, hooks: AlertHooks | None = None) -> monitoring.MonitoringRun:
    return run_monitoring(sf, model=None, by="cli:test", now=clock, hooks=hooks or AlertHooks())


def _entries(sf: SessionFactory, action: AuditAction) -> list[dict[str, object]]:
    with sf() as s:
        return [dict(e.payload) for e in audit_log.iter_entries(s) if e.action == action]


def test_score_shift_and_new_software_raise_alerts_with_audit_entries(seeded: SessionFactory) -> None:
    # Execute
    run = _run(seeded)

    # Assert
    by_stream = {a.stream: a for a in run.raised}
    assert set(by_stream) >= {"mean_score", "novelty:software_versions"}
    score = by_stream["mean_score"]
    # ranked scores are bounded (about 2.4 after 100 values): a 3 sigma shift takes a few days, not one
    assert score.site == "riverside" and UPDATE <= score.alarm_date <= UPDATE + timedelta(days=5)
    assert score.change_date is not None and abs((score.change_date - UPDATE).days) <= 3
    assert score.details["arl0"] == MonitorSettings().arl0 and "cusum" in score.details
    novelty = by_stream["novelty:software_versions"]
    assert novelty.alarm_date == UPDATE and novelty.details["value"] == "v5"
    assert novelty.details["known_before"] == ["v4"]
    assert all(a.alarm_date >= UPDATE for a in run.raised)
    raised = _entries(seeded, AuditAction.ALERT_RAISED)
    assert sorted(int(p["alert_id"]) for p in raised) == sorted(a.id for a in run.raised)  # type: ignore[call-overload]
    assert verify_ledger(seeded).ok


def test_a_second_run_raises_nothing_new(seeded: SessionFactory) -> None:
    # Prepare
    first = _run(seeded)

    # Execute
    second = _run(seeded)

    # Assert
    assert first.raised and second.raised == ()
    assert {a.id for a in second.view.alerts} == {a.id for a in first.raised}
    assert len(_entries(seeded, AuditAction.ALERT_RAISED)) == len(first.raised)


def test_an_ongoing_change_raises_one_alert_even_when_data_arrive_late(seeded: SessionFactory) -> None:
    # Prepare: an alert is open for the score stream; then three more weeks arrive
    first = _run(seeded)
    with seeded.begin() as s:
        site = sites.get_site(s, "riverside")
        mv = model_versions.serving(s)
        assert mv is not None
        for day in range(90, 111):
            uid = f"1.2.826.0.9.{day}"
            stored = studies.add_study_with_instance(
                s,
                site_id=site.id,
                study=_study(uid, DAY0 + timedelta(days=day), "v5"),
                instance=_instance(uid),
                now=NOW,
            )
            predictions.add_prediction(
                s, PredictionIn(stored.instance.id, mv.id, None, 0.9, True, 0.5, None, "cpu"), now=NOW
            )

    # Execute
    second = _run(seeded)

    # Assert
    assert [a.stream for a in first.raised].count("mean_score") == 1
    assert "mean_score" not in [a.stream for a in second.raised]


def test_acknowledge_then_resolve_records_who_and_why(seeded: SessionFactory) -> None:
    # Prepare
    alert = next(a for a in _run(seeded).raised if a.stream == "mean_score")
    events: list[AlertEvent] = []
    hooks = AlertHooks()
    hooks.subscribe("retraining", events.append)
    cmio = SignedInUser("cmio", Role.CMIO)

    # Execute
    acked = monitoring.acknowledge_alert(
        seeded, alert.id, by=cmio, note="vendor confirms update", now=clock, hooks=hooks
    )
    resolved = monitoring.resolve_alert(
        seeded, alert.id, by="cli:ml", note="retrained; new baseline", now=clock, hooks=hooks
    )

    # Assert
    assert acked.status is AlertStatus.ACKNOWLEDGED and acked.acknowledged_by == "cmio"
    assert acked.acknowledge_note == "vendor confirms update"
    assert resolved.status is AlertStatus.RESOLVED and resolved.resolved_by == "cli:ml"
    assert resolved.resolution_note == "retrained; new baseline" and resolved.resolved_at == NOW
    assert [(e.kind, e.alert.id) for e in events] == [("acknowledged", alert.id), ("resolved", alert.id)]
    assert [p["alert_id"] for p in _entries(seeded, AuditAction.ALERT_ACKNOWLEDGED)] == [alert.id]
    assert [p["note"] for p in _entries(seeded, AuditAction.ALERT_RESOLVED)] == ["retrained; new baseline"]


def test_resolving_restarts_the_chart_and_the_same_change_is_not_raised_again(seeded: SessionFactory) -> None:
    # Prepare
    alert = next(a for a in _run(seeded).raised if a.stream == "mean_score")
    monitoring.resolve_alert(seeded, alert.id, by="cli:ml", note="expected after the update", now=clock)

    # Execute
    again = _run(seeded)
    view = compute_monitoring(seeded, site="riverside")

    # Assert
    assert "mean_score" not in [a.stream for a in again.raised]
    report = next(r for r in view.sites[0].reports if r.stream.name == "mean_score")
    assert len(report.segment_starts) == 2
    assert report.status == StreamStatus.MONITORING
    assert report.baseline is not None and report.baseline.mean == pytest.approx(0.54, abs=0.04)  # the new level


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("ack-twice", AlertTransitionError),
        ("resolve-twice", AlertTransitionError),
        ("ack-resolved", AlertTransitionError),
        ("unknown", UnknownAlertError),
    ],
)
def test_lifecycle_refuses_wrong_moves(seeded: SessionFactory, step: str, error: type[Exception]) -> None:
    # Prepare
    alert = _run(seeded).raised[0]
    if step == "ack-twice":
        monitoring.acknowledge_alert(seeded, alert.id, by="t", note="seen", now=clock)
    elif step in ("resolve-twice", "ack-resolved"):
        monitoring.resolve_alert(seeded, alert.id, by="t", note="done", now=clock)
    target = 9999 if step == "unknown" else alert.id
    entries = len(_entries(seeded, AuditAction.ALERT_ACKNOWLEDGED)) + len(_entries(seeded, AuditAction.ALERT_RESOLVED))

    # Execute / Assert
    with pytest.raises(error):
        if step == "resolve-twice":
            monitoring.resolve_alert(seeded, target, by="t", note="again", now=clock)
        else:
            monitoring.acknowledge_alert(seeded, target, by="t", note="again", now=clock)
    after = len(_entries(seeded, AuditAction.ALERT_ACKNOWLEDGED)) + len(_entries(seeded, AuditAction.ALERT_RESOLVED))
    assert after == entries


def test_a_note_is_required(seeded: SessionFactory) -> None:
    alert = _run(seeded).raised[0]
    with pytest.raises(BadInputError, match="note is required"):
        monitoring.acknowledge_alert(seeded, alert.id, by="t", note="   ", now=clock)


def test_only_cmio_and_ml_engineers_handle_alerts(seeded: SessionFactory) -> None:
    # Prepare
    alert = _run(seeded).raised[0]

    # Execute / Assert: a champion may view, not handle; a radiologist may not even view
    assert monitoring.list_alerts(seeded, by=SignedInUser("champ", Role.CHAMPION))
    with pytest.raises(PermissionDeniedError, match="handle drift alerts"):
        monitoring.acknowledge_alert(seeded, alert.id, by=SignedInUser("champ", Role.CHAMPION), note="x", now=clock)
    with pytest.raises(PermissionDeniedError):
        monitoring.list_alerts(seeded, by=SignedInUser("rad", Role.RADIOLOGIST))


def test_a_role_withdrawn_since_sign_in_takes_effect(seeded: SessionFactory) -> None:
    # Prepare: "champ" signed in with a stale CMIO role
    alert = _run(seeded).raised[0]

    # Execute / Assert
    with pytest.raises(PermissionDeniedError):
        monitoring.acknowledge_alert(seeded, alert.id, by=SignedInUser("champ", Role.CMIO), note="x", now=clock)


def test_a_failing_hook_warns_and_the_alert_stays_raised(seeded: SessionFactory) -> None:
    # Prepare
    hooks = AlertHooks()

    def broken(event: AlertEvent) -> None:
        raise RuntimeError("queue down")

    hooks.subscribe("retraining", broken)

    # Execute
    with pytest.warns(UserWarning, match="queue down"):
        run = _run(seeded, hooks)

    # Assert
    assert run.raised
    assert {a.id for a in monitoring.list_alerts(seeded)} == {a.id for a in run.raised}


def test_hooks_can_unsubscribe() -> None:
    # Prepare
    hooks = AlertHooks()
    calls: list[AlertEvent] = []
    hooks.subscribe("a", calls.append)

    # Execute
    hooks.unsubscribe("a")
    hooks.unsubscribe("never-subscribed")

    # Assert
    assert hooks.names == ()


def test_streams_without_data_say_why(seeded: SessionFactory) -> None:
    # Execute
    view = compute_monitoring(seeded, site="riverside")

    # Assert
    site = view.sites[0]
    reports = {r.stream.name: r for r in site.reports}
    assert reports["noise"].stream.n_missing == 180  # no features cached: every value skipped and counted
    assert reports["noise"].status == StreamStatus.WARMING_UP
    assert "embedding_distance" in site.missing
    assert view.calibrations["cusum"].arl0 == MonitorSettings().arl0


def test_unknown_site_is_refused(seeded: SessionFactory) -> None:
    with pytest.raises(UnknownSiteError):
        compute_monitoring(seeded, site="nowhere")


def test_no_serving_model_is_bad_input(session_factory: SessionFactory) -> None:
    with pytest.raises(BadInputError, match="no model version is serving"):
        compute_monitoring(session_factory)


def test_alerts_serialize_to_json(seeded: SessionFactory) -> None:
    # Prepare
    import json

    alert = _run(seeded).raised[0]

    # Execute
    text = json.dumps(monitoring.alert_to_dict(alert))

    # Assert
    assert json.loads(text)["id"] == alert.id
