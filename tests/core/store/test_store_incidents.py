"""Drift incidents in the store: stage, attach, list, lifecycle and refusals; migration 0007 over stored alerts."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import IncidentTransitionError, UnknownAlertError, UnknownIncidentError
from core.store import alerts, incidents, sites
from core.store.alerts import AlertIn
from core.store.engine import SessionFactory, alembic_config, make_engine, make_session_factory, migrate
from core.store.incidents import IncidentIn, IncidentStatus
from tests.core.store.conftest import Seeded

AT = datetime.fromisoformat("2025-06-01T00:00:00+00:00")


def _alert(session: Session, site_id: int, key: str, day: int, change: int | None) -> int:
    rec = alerts.add_alert(
        session,
        AlertIn(
            key,
            site_id,
            "noise",
            "cusum",
            "day",
            date(2025, 5, day),
            None if change is None else date(2025, 5, change),
            9.0,
            7.4,
            f"alarm {key}",
            {},
        ),
        raised_by="system",
        now=AT,
    )
    return rec.id


def _incident(session: Session, site_id: int, day: int = 14) -> int:
    return incidents.add_incident(
        session,
        IncidentIn(site_id, "image", date(2025, 5, day), None, "Image streams at north"),
        opened_by="system",
        now=AT,
    ).id


def test_attach_widens_the_dates_and_lists_the_alerts(session_factory: SessionFactory, seeded: Seeded) -> None:
    # Prepare
    with session_factory.begin() as s:
        incident_id = _incident(s, seeded.north_id)
        first = _alert(s, seeded.north_id, "a", 14, 13)
        second = _alert(s, seeded.north_id, "b", 12, None)

    # Execute
    with session_factory.begin() as s:
        incidents.attach(s, incident_id, first, summary="one")
        rec = incidents.attach(s, incident_id, second, summary="two")

    # Assert
    with session_factory() as s:
        assert incidents.alert_ids(s, incident_id) == [second, first]  # oldest alarm first
        assert [a.incident_id for a in alerts.list_alerts(s, incident_id=incident_id)] == [incident_id] * 2
    assert rec.first_alarm_date == date(2025, 5, 12) and rec.change_date == date(2025, 5, 13)
    assert rec.summary == "two" and rec.status is IncidentStatus.OPEN and rec.site == "north"


def test_lifecycle_moves_forward_only(session_factory: SessionFactory, seeded: Seeded, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as s:
        incident_id = _incident(s, seeded.north_id)

    # Execute
    with session_factory.begin() as s:
        acked = incidents.acknowledge(s, incident_id, by="cmio", note="seen", now=now)
        resolved = incidents.resolve(s, incident_id, by="ml", note="done", now=now)

    # Assert
    assert acked.status is IncidentStatus.ACKNOWLEDGED and acked.acknowledge_note == "seen"
    assert resolved.is_resolved and resolved.resolved_by == "ml" and resolved.resolved_at == now
    with session_factory.begin() as s, pytest.raises(IncidentTransitionError, match="'resolved'"):
        incidents.acknowledge(s, incident_id, by="cmio", note="again", now=now)
    with session_factory.begin() as s, pytest.raises(IncidentTransitionError, match="cannot become 'resolved'"):
        incidents.resolve(s, incident_id, by="cmio", note="again", now=now)


def test_a_resolved_incident_is_never_joined(session_factory: SessionFactory, seeded: Seeded, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as s:
        incident_id = _incident(s, seeded.north_id)
        alert_id = _alert(s, seeded.north_id, "a", 14, None)
        incidents.resolve(s, incident_id, by="ml", note="done", now=now)

    # Execute / Assert
    with session_factory.begin() as s, pytest.raises(IncidentTransitionError, match="joined"):
        incidents.attach(s, incident_id, alert_id, summary="x")


def test_an_alert_of_another_site_cannot_join(session_factory: SessionFactory, seeded: Seeded) -> None:
    with session_factory.begin() as s:
        incident_id = _incident(s, seeded.north_id)
        alert_id = _alert(s, seeded.south_id, "a", 14, None)
        with pytest.raises(ValueError, match="other site"):
            incidents.attach(s, incident_id, alert_id, summary="x")


@pytest.mark.parametrize("missing", ["incident", "alert"])
def test_unknown_ids_are_named(session_factory: SessionFactory, seeded: Seeded, now: datetime, missing: str) -> None:
    with session_factory.begin() as s:
        incident_id = _incident(s, seeded.north_id)
        alert_id = _alert(s, seeded.north_id, "a", 14, None)
        if missing == "incident":
            with pytest.raises(UnknownIncidentError, match="unknown drift incident: 999"):
                incidents.attach(s, 999, alert_id, summary="x")
            with pytest.raises(UnknownIncidentError, match="999"):
                incidents.acknowledge(s, 999, by="x", note="x", now=now)
        else:
            with pytest.raises(UnknownAlertError, match="998"):
                incidents.attach(s, incident_id, 998, summary="x")


def test_listing_filters_by_site_status_and_family(
    session_factory: SessionFactory, seeded: Seeded, now: datetime
) -> None:
    # Prepare
    with session_factory.begin() as s:
        old = _incident(s, seeded.north_id, day=1)
        new = _incident(s, seeded.north_id, day=20)
        south = _incident(s, seeded.south_id, day=10)
        incidents.resolve(s, old, by="ml", note="done", now=now)

    # Execute / Assert
    with session_factory() as s:
        assert [i.id for i in incidents.list_incidents(s)] == [new, south, old]
        assert [i.id for i in incidents.list_incidents(s, site_id=seeded.north_id)] == [new, old]
        open_ = incidents.list_incidents(s, statuses=(IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED))
        assert [i.id for i in open_] == [new, south]
        assert incidents.list_incidents(s, family="score") == []


def test_an_unknown_family_is_refused_by_the_schema(session_factory: SessionFactory, seeded: Seeded) -> None:
    with session_factory.begin() as s, pytest.raises(IntegrityError):
        incidents.add_incident(
            s,
            IncidentIn(seeded.north_id, "weather", date(2025, 5, 1), None, "x"),
            opened_by="system",
            now=AT,
        )


# --- migration 0007 on a database that already has alerts ------------------------------------------

#: How SQLite stores an aware UTC timestamp (what the 0006-era code wrote).
STAMP = "2025-06-01 00:00:00.000000"


def test_upgrading_from_0006_keeps_the_alerts_with_no_incident(tmp_path: Path) -> None:
    # Prepare: a database at the previous head with two stored alerts, one resolved
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0006")
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO site (id, name, is_benchmark, created_at) VALUES (1, 'north', 0, :t)"), {"t": STAMP}
        )
        for key, status in (("k1", "open"), ("k2", "resolved")):
            c.execute(
                text(
                    "INSERT INTO drift_alert (dedupe_key, site_id, stream, detector, window, alarm_date, summary, "
                    "details_json, status, raised_by, raised_at) VALUES (:k, 1, 'noise', 'cusum', 'day', "
                    "'2025-05-14', 's', '{}', :st, 'system', :t)"
                ),
                {"k": key, "st": status, "t": STAMP},
            )

    # Execute
    head = migrate(engine)

    # Assert: the rows survive the table copy, with no incident; the new column and table work
    sf = make_session_factory(engine)
    with sf() as s:
        stored = sorted(alerts.list_alerts(s), key=lambda a: a.dedupe_key)
        assert [(a.dedupe_key, str(a.status), a.incident_id) for a in stored] == [
            ("k1", "open", None),
            ("k2", "resolved", None),
        ]
    columns = {c["name"] for c in inspect(engine).get_columns("drift_alert")}
    fks = {fk["referred_table"] for fk in inspect(engine).get_foreign_keys("drift_alert")}
    assert int(head) >= 7 and "incident_id" in columns and fks == {"site", "drift_incident"}
    with sf.begin() as s:
        incident_id = _incident(s, sites.get_site(s, "north").id)
        incidents.attach(s, incident_id, stored[0].id, summary="adopted")
    with engine.begin() as c, pytest.raises(IntegrityError):
        c.execute(text("UPDATE drift_alert SET status = 'bogus'"))  # the copied table kept its CHECK
    engine.dispose()


def test_downgrading_0007_drops_the_incidents_and_keeps_the_alerts(tmp_path: Path) -> None:
    # Prepare
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    sf = make_session_factory(engine)
    with sf.begin() as s:
        site = sites.add_site(s, "north", now=AT)
        incidents.attach(s, _incident(s, site.id), _alert(s, site.id, "a", 14, None), summary="x")

    # Execute
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")

    # Assert
    assert "drift_incident" not in inspect(engine).get_table_names()
    assert "incident_id" not in {c["name"] for c in inspect(engine).get_columns("drift_alert")}
    with engine.connect() as c:
        assert c.execute(text("SELECT dedupe_key FROM drift_alert")).scalars().all() == ["a"]
    engine.dispose()
