"""The drift page (AppTest, run directly): warming-up streams, incidents with their evidence and actions, figures."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.audit.events import AuditAction
from core.drift.monitor import MonitorSettings, monitor_stream
from core.drift.novelty import detect_novelty
from core.drift.streams import Windowing, WindowKind, mean_stream
from core.drift.synthetic import piecewise_gaussian
from core.services.monitoring import SiteMonitoring
from core.services.monitoring_alerts import AlertCandidate, raise_alerts
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.alerts import AlertStatus
from tests.ui.conftest import USERS
from tests.ui.installation import Installation, clock
from ui import drift

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "drift_monitor.py")


def _page(role: Role) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["vigil.user"] = SignedInUser(USERS[role], role)
    return at.run()


def _candidate(site: str, stream: str, day: int) -> AlertCandidate:
    alarm = date(2025, 5, day)
    return AlertCandidate(
        site=site,
        key=f"{site}|{stream}|day|{alarm.isoformat()}",
        stream=stream,
        detector="cusum",
        window="day",
        alarm_date=alarm,
        change_date=date(2025, 5, 12),
        statistic=9.1,
        limit=7.36,
        summary=f"{stream} at {site}: CUSUM alarm on {alarm.isoformat()}",
        details={"arl0": 5000.0},
        ongoing=True,
    )


def _seed_incident(inst: Installation, site: str = "riverside") -> tuple[int, list[int]]:
    """Two image alarms two days apart at ``site``: one incident with two alerts."""
    raised = raise_alerts(
        inst.session_factory(),
        [_candidate(site, "noise", 14), _candidate(site, "intensity_mean", 16)],
        actor="system",
        now=clock,
    )
    incident_id = raised.alerts[0].incident_id
    assert incident_id is not None and len(raised.opened) == 1
    return incident_id, [a.id for a in raised.alerts]


def _riverside_label(at: AppTest) -> str:
    # The counts are drawn beside the (bare-name) site picker, fresh on every run.
    return next(m.value for m in at.markdown if m.value.startswith("riverside:")).split(" · ")[0]


def test_cmio_sees_settings_sites_and_warming_up_streams(installation: Installation) -> None:
    # Execute
    at = _page(Role.CMIO)

    # Assert
    assert not at.exception
    assert [t.value for t in at.title] == ["Drift monitoring"]
    captions = " ".join(c.value for c in at.caption)
    assert "False-alarm budget: at most one incident every 2 years" in captions and "17,532 days" in captions
    assert "warming up: 2/20 baseline values" in captions
    assert {o.split(" (")[0] for o in at.selectbox(key="drift-site").options} == {
        "eastgate",
        "harbor",
        "northfield",
        "riverside",
    }


def test_a_radiologist_is_refused(installation: Installation) -> None:
    # Execute
    at = _page(Role.RADIOLOGIST)

    # Assert
    assert not at.exception
    assert at.error and "does not give access" in at.error[0].value
    assert not at.title


def test_the_site_count_is_unresolved_incidents(installation: Installation) -> None:
    # Prepare: two alarms, one incident
    _seed_incident(installation)

    # Execute
    at = _page(Role.CMIO)
    at.selectbox(key="drift-site").select_index(3).run()  # riverside

    # Assert: one incident to handle, with both alerts as its evidence
    assert not at.exception
    assert _riverside_label(at) == "riverside: **1 unresolved incident**"
    incidents = at.dataframe[0].value
    assert list(incidents["family"]) == ["image"] and list(incidents["alarms"]) == [2]
    assert list(incidents["streams"]) == ["Noise estimate, Intensity mean"]
    evidence = at.dataframe[1].value
    assert list(evidence["stream"]) == ["noise", "intensity_mean"]
    assert list(evidence["alarm"]) == ["2025-05-14", "2025-05-16"]


def test_cmio_acknowledges_an_incident_with_a_note(installation: Installation) -> None:
    # Prepare
    incident_id, alert_ids = _seed_incident(installation)
    at = _page(Role.CMIO)
    at.selectbox(key="drift-site").select_index(3).run()  # riverside

    # Execute
    at.text_input[0].input("vendor confirms the UNIQUE2 update")
    next(b for b in at.button if b.label == "Acknowledge").click().run()

    # Assert: the incident and both alerts acknowledged, each audited with who and why
    assert not at.exception
    with installation.session_factory()() as session:
        entries = list(audit_log.iter_entries(session))
    acked = [e for e in entries if e.action == AuditAction.INCIDENT_ACKNOWLEDGED]
    assert [(e.actor, e.payload["incident_id"], e.payload["note"]) for e in acked] == [
        ("cmio", incident_id, "vendor confirms the UNIQUE2 update")
    ]
    alerts_acked = [e.payload["alert_id"] for e in entries if e.action == AuditAction.ALERT_ACKNOWLEDGED]
    assert alerts_acked == alert_ids
    # Assert: the page drawn after the action shows the new state
    assert [s.value for s in at.success] == [
        f"Incident #{incident_id} is now acknowledged with its 2 alerts; the actions are in the audit log."
    ]
    assert [str(v).split()[-1] for v in at.dataframe[0].value["status"]] == ["acknowledged"]
    assert set(at.dataframe[1].value["status"].map(lambda v: str(v).split()[-1])) == {"acknowledged"}


def test_resolving_an_incident_updates_the_count_at_once(installation: Installation) -> None:
    # Prepare
    incident_id, _ = _seed_incident(installation)
    at = _page(Role.ML_ENGINEER)
    at.selectbox(key="drift-site").select_index(3).run()
    assert _riverside_label(at) == "riverside: **1 unresolved incident**"

    # Execute
    at.text_input[0].input("retrained on the new software")
    next(b for b in at.button if b.label == "Resolve (restarts its charts)").click().run()

    # Assert: no stale count, no action left to take
    assert not at.exception and not at.error
    assert _riverside_label(at) == "riverside: **0 unresolved incidents**"
    assert [str(v).split()[-1] for v in at.dataframe[0].value["status"]] == ["resolved"]
    assert not [b for b in at.button if b.label == "Acknowledge"]
    with installation.session_factory()() as session:
        actions = [e.action for e in audit_log.iter_entries(session)][-3:]
    assert actions == [AuditAction.ALERT_RESOLVED, AuditAction.ALERT_RESOLVED, AuditAction.INCIDENT_RESOLVED]
    assert incident_id in [int(i) for i in at.dataframe[0].value["id"]]


def test_a_champion_sees_the_incidents_but_cannot_act(installation: Installation) -> None:
    # Prepare
    _seed_incident(installation)

    # Execute
    at = _page(Role.CHAMPION)
    at.selectbox(key="drift-site").select_index(3).run()

    # Assert: incidents, each incident's evidence and the site's alerts, and no action
    assert not at.exception
    assert len(at.dataframe) == 3
    assert not [b for b in at.button if b.label in ("Acknowledge", "Resolve (restarts its charts)")]


def test_empty_note_is_refused_on_the_page(installation: Installation) -> None:
    # Prepare
    _seed_incident(installation)
    at = _page(Role.ML_ENGINEER)
    at.selectbox(key="drift-site").select_index(3).run()

    # Execute
    next(b for b in at.button if b.label == "Resolve (restarts its charts)").click().run()

    # Assert
    assert [e.value for e in at.error] and "note is required" in at.error[0].value
    assert drift.monitoring_view  # the module stays importable after a refusal


def test_run_monitors_now_caches_image_features_with_the_shared_model(installation: Installation) -> None:
    # Prepare
    at = _page(Role.ML_ENGINEER)

    # Execute
    next(b for b in at.button if b.label == "Run monitors now").click().run()

    # Assert: every scored study of the deployment sites got its features (2 per site here)
    assert not at.exception
    assert [s.value for s in at.success] == [
        "Monitors ran: 10 studies' image features cached, 0 new alarms in 0 new incidents."
    ]


# --- figures, from a synthetic report ---------------------------------------------------------------


def _site() -> SiteMonitoring:
    s = piecewise_gaussian(120, change_points=[80], means=[0.0, 3.0], seed=1)
    dates = np.datetime64("2025-03-03") + np.arange(120)
    report = monitor_stream(
        mean_stream("noise", dates, s.values, Windowing(WindowKind.DAY)), settings=MonitorSettings()
    )
    days = [date(2025, 3, 3) + timedelta(days=i) for i in range(120)]
    novelty = detect_novelty(
        [str(i) for i in range(120)], days, {"software_versions": ["v4"] * 80 + ["v5"] * 40}, warmup=10
    )
    return SiteMonitoring("riverside", 120, 0, (report,), {}, novelty)


def test_chart_shows_values_limits_alarms_and_change_estimates() -> None:
    # Prepare
    report = _site().reports[0]

    # Execute
    fig = drift.chart_figure(report)

    # Assert
    names = [t.name for t in fig.data]
    assert names[:3] == ["window value", "CUSUM", "h"] and "EWMA" in names
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 3 * 2 * len(report.alarms) and len(report.alarms) >= 2  # alarm + change, 3 panels


def test_bocpd_heat_map_marks_the_change_point() -> None:
    # Prepare
    report = _site().reports[0]

    # Execute
    fig = drift.bocpd_figure(report)

    # Assert
    assert fig is not None and fig.data[0].type == "heatmap"
    assert [s.x0 for s in fig.layout.shapes] == ["2025-05-22"]  # window 80


def test_novelty_timeline_places_the_new_software_on_its_first_day() -> None:
    # Execute
    fig = drift.novelty_figure(_site())

    # Assert
    assert list(fig.data[0].x) == ["2025-05-22"] and list(fig.data[0].text) == ["v5"]


def test_alert_status_moves_show_in_the_table_rows() -> None:
    # Prepare
    from core.store.alerts import AlertRecord

    rec = AlertRecord(
        1,
        "k",
        "riverside",
        "noise",
        "cusum",
        "day",
        date(2025, 5, 14),
        None,
        9.0,
        7.0,
        "s",
        {},
        AlertStatus.RESOLVED,
        "system",
        clock(),
        "cmio",
        clock(),
        "seen",
        "ml",
        clock(),
        "retrained",
    )

    # Execute
    rows = drift._alert_rows([rec])

    # Assert
    assert rows[0]["who / why"] == "ack cmio: seen · resolved ml: retrained"
    assert str(rows[0]["status"]).endswith("resolved") and rows[0]["incident"] == ""


@pytest.fixture(autouse=True)
def _no_stale_views() -> None:
    drift._view.clear()
