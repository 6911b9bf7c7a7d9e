"""Migration ``0011``: registered versions are immutable, the change-control tables append-only, history exact.

Every test acts as the application (its engine and sessions) on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from core.errors import DuplicateModelContentError
from core.models.address import content_address
from core.store import deployments, model_tags, model_versions
from core.store.engine import SessionFactory, alembic_config, make_engine, make_session_factory, migrate
from core.store.tables import DeploymentRow, ModelTagRow, ModelVersionRow
from tests.conftest import DATABASES, NewDatabase

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CARD = {"version": "v1", "operating_threshold": 0.5, "weights": {"sha256": "1" * 64}}


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, new_database: NewDatabase) -> Iterator[Engine]:
    engine_ = make_engine(new_database(request.param, migrated=True))
    migrate(engine_)
    yield engine_
    engine_.dispose()


@pytest.fixture
def sf(engine: Engine) -> SessionFactory:
    factory = make_session_factory(engine)
    with factory.begin() as session:
        v1 = model_versions.register(session, version="v1", card=CARD, weights_sha256="1" * 64, now=T0)
        v2 = model_versions.register(
            session, version="v2", card={**CARD, "version": "v2"}, weights_sha256="2" * 64, now=T0
        )
        deployments.record_switch(session, version_id=v1.id, action="initial", switched_by="t", now=T0, reason="r")
        deployments.record_switch(
            session, version_id=v2.id, action="promote", switched_by="t", now=T0 + timedelta(days=1), reason="r"
        )
        model_tags.add_tag(session, model_version_id=v1.id, tag="K999999", actor="t", now=T0)
    return factory


def test_a_version_is_content_addressed(sf: SessionFactory) -> None:
    with sf() as session:
        v1 = model_versions.get_by_version(session, "v1")
    assert v1.content_sha256 == content_address(CARD, "1" * 64) and v1.address_matches()
    assert v1.number == 1


def test_the_same_content_under_another_name_is_refused(sf: SessionFactory) -> None:
    with sf.begin() as session, pytest.raises(DuplicateModelContentError, match="'v1'"):
        model_versions.register(session, version="v1-again", card=CARD, weights_sha256="1" * 64, now=T0)


@pytest.mark.parametrize(
    "values",
    [{"card_json": "{}"}, {"weights_sha256": "f" * 64}, {"version": "v9"}, {"content_sha256": "0" * 64}],
    ids=["card", "weights", "name", "address"],
)
def test_changing_a_registered_version_is_refused(sf: SessionFactory, values: dict[str, str]) -> None:
    with pytest.raises(DBAPIError, match="immutable"), sf.begin() as session:
        session.execute(update(ModelVersionRow).where(ModelVersionRow.version == "v1").values(**values))
    with sf() as session:
        assert model_versions.get_by_version(session, "v1").address_matches()


def test_deleting_a_registered_version_is_refused(sf: SessionFactory) -> None:
    with sf.begin() as session:  # referenced by nothing, so only the guard can refuse it
        model_versions.register(session, version="v3", card={**CARD, "version": "v3"}, weights_sha256="3" * 64, now=T0)
    with pytest.raises(DBAPIError, match="immutable"), sf.begin() as session:
        session.execute(delete(ModelVersionRow).where(ModelVersionRow.version == "v3"))


@pytest.mark.parametrize("table", [ModelTagRow, DeploymentRow])
def test_history_and_tags_are_append_only(sf: SessionFactory, table: type[ModelTagRow] | type[DeploymentRow]) -> None:
    with pytest.raises(DBAPIError, match="append-only"), sf.begin() as session:
        session.execute(update(table).values(actor="x") if table is ModelTagRow else update(table).values(reason="x"))
    with pytest.raises(DBAPIError, match="append-only"), sf.begin() as session:
        session.execute(delete(table))


def test_the_serving_pointer_moves_with_the_history(sf: SessionFactory) -> None:
    with sf() as session:
        before = deployments.served_at(session, T0 + timedelta(hours=1))
        after = deployments.served_at(session, T0 + timedelta(days=2))
        never = deployments.served_at(session, T0 - timedelta(seconds=1))
        serving = model_versions.serving(session)
        latest = deployments.latest(session)
    assert before is not None and before.version == "v1" and before.slot == "blue"
    assert after is not None and after.version == "v2" and after.slot == "green" and after.previous_version == "v1"
    assert never is None
    assert serving is not None and serving.version == "v2" and latest is not None and latest.version == "v2"


def test_upgrading_backfills_addresses_and_the_serving_version(new_database: NewDatabase) -> None:
    url = new_database("sqlite-file")
    engine = make_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0010")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO model_version (version, card_json, weights_sha256, is_serving, created_at) "
                "VALUES ('old', :card, :w, 1, '2026-01-01 00:00:00.000000')"
            ),
            {"card": '{"operating_threshold":0.5,"version":"old"}', "w": "a" * 64},
        )
    migrate(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        old = model_versions.get_by_version(session, "old")
        history = deployments.history(session)
        address = session.scalars(select(ModelVersionRow.content_sha256)).one()
    engine.dispose()
    assert old.address_matches() and address == content_address({"operating_threshold": 0.5}, "a" * 64)
    assert [(d.version, d.action, d.slot) for d in history] == [("old", "initial", "blue")]
