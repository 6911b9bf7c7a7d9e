"""Per-site deployment (migration ``0016``): which version serves a site, now and at any past moment.

The rule, on every database: the version serving site S is the one of the newest switch for S,
else the one of the newest fleet-wide switch; "at T" applies it to the switches made by T.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, text

from core.store import deployments, model_versions, sites, studies, users
from core.store.engine import SessionFactory, alembic_config, make_engine, make_session_factory, migrate
from tests.conftest import DATABASES, NewDatabase
from tests.core.store.conftest import instance_in, study_in

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CARD = {"version": "v1", "operating_threshold": 0.5, "weights": {"sha256": "1" * 64}}


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, new_database: NewDatabase) -> Iterator[Engine]:
    engine_ = make_engine(new_database(request.param, migrated=True))
    migrate(engine_)
    yield engine_
    engine_.dispose()


@pytest.fixture
def sf(engine: Engine) -> SessionFactory:
    """v1 serves the fleet from T0; v2 and v3 are registered; sites north, south, east."""
    factory = make_session_factory(engine)
    with factory.begin() as session:
        for name in ("north", "south", "east"):
            sites.add_site(session, name, now=T0)
        ids = [
            model_versions.register(
                session, version=v, card={**CARD, "version": v}, weights_sha256=str(i) * 64, now=T0
            ).id
            for i, v in enumerate(("v1", "v2", "v3"), start=1)
        ]
        deployments.record_switch(session, version_id=ids[0], action="initial", switched_by="t", now=T0, reason="r")
    return factory


def _switch(sf: SessionFactory, version: str, at: datetime, site: str | None = None) -> deployments.DeploymentRecord:
    with sf.begin() as session:
        vid = model_versions.get_by_version(session, version).id
        return deployments.record_switch(
            session, version_id=vid, action="promote", switched_by="t", now=at, reason="r", site=site
        )


def _serving(sf: SessionFactory) -> dict[str, str | None]:
    with sf() as session:
        found = {name: deployments.serving_for(session, name) for name in ("north", "south", "east")}
        fleet = model_versions.serving(session)
    return {**{k: None if v is None else v.version for k, v in found.items()}, "fleet": fleet and fleet.version}


def test_a_site_switch_moves_only_that_site(sf: SessionFactory) -> None:
    # Execute
    record = _switch(sf, "v2", T0 + HOUR, site="north")

    # Assert: north serves v2 from the other slot; every other site and the fleet pointer keep v1
    assert (record.site, record.previous_version, record.slot) == ("north", "v1", "green")
    assert _serving(sf) == {"north": "v2", "south": "v1", "east": "v1", "fleet": "v1"}


def test_a_fleet_switch_leaves_sites_with_their_own_switch(sf: SessionFactory) -> None:
    # Prepare
    _switch(sf, "v2", T0 + HOUR, site="north")

    # Execute
    fleet = _switch(sf, "v3", T0 + 2 * HOUR)

    # Assert
    assert (fleet.site, fleet.previous_version, fleet.slot) == (None, "v1", "green")
    assert _serving(sf) == {"north": "v2", "south": "v3", "east": "v3", "fleet": "v3"}


def test_slots_alternate_within_each_scope(sf: SessionFactory) -> None:
    # Execute: north v2 (green, from the fleet's blue), north v3 (blue), fleet v2 (green)
    slots = [
        _switch(sf, "v2", T0 + HOUR, site="north").slot,
        _switch(sf, "v3", T0 + 2 * HOUR, site="north").slot,
        _switch(sf, "v2", T0 + 3 * HOUR).slot,
    ]

    # Assert
    assert slots == ["green", "blue", "green"]


def test_served_at_applies_the_site_rule_to_the_switches_made_by_then(sf: SessionFactory) -> None:
    # Prepare: north v2 at +1h, fleet v3 at +2h, north back to v1 at +3h
    _switch(sf, "v2", T0 + HOUR, site="north")
    _switch(sf, "v3", T0 + 2 * HOUR)
    _switch(sf, "v1", T0 + 3 * HOUR, site="north")
    moments = [T0 - HOUR, T0, T0 + HOUR - timedelta(microseconds=1), T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]

    # Execute
    with sf() as session:
        answers = {
            site: [getattr(deployments.served_at(session, m, site), "version", None) for m in moments]
            for site in ("north", "south", None)
        }

    # Assert: exact at every boundary (a switch is in force from its own instant)
    assert answers["north"] == [None, "v1", "v1", "v2", "v2", "v1"]
    assert answers["south"] == [None, "v1", "v1", "v1", "v3", "v3"]
    assert answers[None] == [None, "v1", "v1", "v1", "v3", "v3"]


def test_every_reader_asks_one_function_for_the_version_serving_a_site_now_or_then(sf: SessionFactory) -> None:
    # Prepare: north v2 at +1h, fleet v3 at +2h
    _switch(sf, "v2", T0 + HOUR, site="north")
    _switch(sf, "v3", T0 + 2 * HOUR)

    # Execute
    with sf() as session:
        now = {site: deployments.version_serving(session, site) for site in ("north", "south")}
        then = {site: deployments.version_serving(session, site, at=T0 + HOUR) for site in ("north", "south")}
        before = deployments.version_serving(session, "north", at=T0 - HOUR)
        by_site = deployments.versions_by_site(session)

    # Assert: a site's own switch, else the fleet's; as it was at a moment; None before any switch
    assert {k: v and v.version for k, v in now.items()} == {"north": "v2", "south": "v3"}
    assert {k: v and v.version for k, v in then.items()} == {"north": "v2", "south": "v1"}
    assert before is None
    assert {k: v and v.version for k, v in by_site.items()} == {"east": "v3", "north": "v2", "south": "v3"}


def test_history_of_a_site_holds_its_own_and_the_fleet_switches(sf: SessionFactory) -> None:
    # Prepare
    _switch(sf, "v2", T0 + HOUR, site="north")
    _switch(sf, "v3", T0 + 2 * HOUR, site="south")

    # Execute
    with sf() as session:
        north = [(d.version, d.site) for d in deployments.history(session, "north")]
        every = [(d.version, d.site) for d in deployments.history(session)]

    # Assert
    assert north == [("v1", None), ("v2", "north")]
    assert every == [("v1", None), ("v2", "north"), ("v3", "south")]


def test_a_prediction_writer_reads_the_version_serving_each_study_site(sf: SessionFactory) -> None:
    # Prepare
    _switch(sf, "v2", T0 + HOUR, site="north")
    with sf.begin() as session:
        study_ids = [
            studies.add_study_with_instance(
                session,
                site_id=sites.get_site(session, name).id,
                study=study_in(i),
                instance=instance_in(i, study=i),
                now=T0,
            ).study.id
            for i, name in enumerate(("north", "south"))
        ]

    # Execute
    with sf() as session:
        served = deployments.serving_for_studies(session, [*study_ids, study_ids[1]])
        v1, v2 = (model_versions.get_by_version(session, v).id for v in ("v1", "v2"))

    # Assert
    assert served == {study_ids[0]: v2, study_ids[1]: v1}


@pytest.mark.parametrize("backend", ["sqlite-file", "postgresql"])
def test_upgrading_backfills_full_names_and_keeps_switches_fleet_wide(backend: str, new_database: NewDatabase) -> None:
    # Prepare: a 0015 database with one user and the initial switch
    engine = make_engine(new_database(backend))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0015")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO app_user (username, role, password_hash, created_at) "
                "VALUES ('dr.old', 'cmio', 'h', '2026-01-01 00:00:00+00:00')"
            )
        )

    # Execute
    migrate(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        old = users.get_user(session, "dr.old")
    engine.dispose()

    # Assert: the printed name of a user created before 0016 is their username
    assert old.full_name == "dr.old"
