"""Scratch databases on a PostgreSQL server: made for one benchmark store, dropped after it.

``vigil bench --suite store --store-server URL`` measures the store on PostgreSQL as well as on
SQLite. It never touches an existing database: each store is a new database with a name of its
own (``vigil_bench_<pid>_<hex>``) that is dropped, its connections closed, when the block ends,
whatever ended it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from core.errors import BadInputError

__all__ = ["scratch_database"]


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """Create an empty database on ``server_url``'s server; yield its URL; drop it on exit.

    Parameters
    ----------
    server_url : str
        A PostgreSQL URL (``postgresql+psycopg://user:password@host:port/postgres``) whose role
        may create databases; the database it names is only connected to.

    Raises
    ------
    BadInputError
        The URL is not a PostgreSQL URL, or the server cannot be reached or refuses to create
        the database (its message says why; the password is never shown).
    """
    try:
        url = make_url(server_url)
    except ArgumentError:
        raise BadInputError(f"--store-server {server_url[:80]!r} is not a database URL") from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() != "postgresql":
        raise BadInputError(f"--store-server names a PostgreSQL server, got {shown!r}")
    name = f"vigil_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except SQLAlchemyError as exc:
            raise BadInputError(f"cannot create a scratch database on {shown}: {exc.__class__.__name__}") from None
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
