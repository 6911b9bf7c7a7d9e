"""Alembic environment for Vigil's store, driven from code by :func:`core.store.engine.migrate`.

The caller passes an open connection in ``config.attributes["connection"]``, so any URL works
and no ``alembic.ini`` is needed. Without one (offline ``--sql`` mode, or the ``alembic`` command
with ``sqlalchemy.url`` set), it falls back to the configured URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from core.store.tables import Base

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the caller's connection, or one opened from ``sqlalchemy.url``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("pass a connection in config.attributes['connection'] or set sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.begin() as own_connection:
            _configure(own_connection)
    finally:
        engine.dispose()


def _main() -> None:
    try:
        offline = context.is_offline_mode()
    except NameError:
        return  # imported outside Alembic (e.g. ``pytest --doctest-modules``): nothing to run
    if offline:
        run_migrations_offline()
    else:
        run_migrations_online()


_main()
