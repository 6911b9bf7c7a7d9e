"""The session's PostgreSQL server (``tests/postgres.py``): private, disposable, one database per test."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from core.store.engine import current_revision, head_revision, make_engine
from tests.postgres import ENV_URL, PostgresServer


def _show(server: PostgresServer, setting: str) -> str:
    engine = create_engine(server.admin_url, poolclass=NullPool)
    with engine.connect() as connection:
        value = str(connection.exec_driver_sql(f"SHOW {setting}").scalar_one())
    engine.dispose()
    return value


def _databases(server: PostgresServer) -> set[str]:
    engine = create_engine(server.admin_url, poolclass=NullPool)
    with engine.connect() as connection:
        names = set(connection.exec_driver_sql("SELECT datname FROM pg_database").scalars())
    engine.dispose()
    return names


def test_a_started_cluster_is_heard_on_loopback_only_and_does_not_sync(postgres_server: PostgresServer) -> None:
    # Execute
    settings = {name: _show(postgres_server, name) for name in ("listen_addresses", "fsync")}

    # Assert: a server named by the environment is someone else's; one we started is private
    if os.environ.get(ENV_URL):
        assert settings["listen_addresses"]
    else:
        assert settings == {"listen_addresses": "127.0.0.1", "fsync": "off"}
        assert postgres_server.admin_url.host == "127.0.0.1"


def test_databases_start_empty_or_at_head_and_are_dropped(postgres_server: PostgresServer) -> None:
    # Execute
    empty, migrated = postgres_server.create_database(), postgres_server.create_database(migrated=True)
    revisions = []
    for url in (empty, migrated):
        engine = make_engine(url)
        revisions.append(current_revision(engine))
        engine.dispose()
    listed = _databases(postgres_server)
    for url in (empty, migrated):
        postgres_server.drop_database(url)

    # Assert
    names = {make_url(url).database for url in (empty, migrated)}
    assert revisions == [None, head_revision()]
    assert names <= listed
    assert not names & _databases(postgres_server)
