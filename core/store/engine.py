"""The database edge: engines for any SQLAlchemy URL, session factories and migrations.

SQLite (the embedded default) is tuned here and only here: WAL journal, ``synchronous=FULL``,
foreign keys on, and every transaction opened with ``BEGIN IMMEDIATE`` so that writers are
serialized at ``BEGIN`` instead of failing half-way through (the audit chain's read-last-then-append
relies on it). PostgreSQL sessions commit with ``synchronous_commit=on`` whatever the server's
default, so an acknowledged write is on disk. Other databases get plain SQLAlchemy settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, func, make_url, select
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from core.errors import DatabaseURLError

__all__ = [
    "MIGRATE_LOCK_KEY",
    "MIGRATIONS_DIR",
    "alembic_config",
    "SessionFactory",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "migrate",
    "write_with_retries",
]

#: Alembic's script directory, inside the package so migrations run from an installed wheel.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

#: What services receive: ``with session_factory.begin() as session: ...`` is one user action.
SessionFactory: TypeAlias = sessionmaker[Session]

#: Seconds a SQLite writer waits for another writer's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S: Final = 30.0

#: Times :func:`write_with_retries` runs a transaction that keeps losing unique-key races.
WRITE_ATTEMPTS: Final = 5

#: PostgreSQL advisory-lock key that serializes :func:`migrate` callers: any fixed bigint that
#: nothing else uses; the first 8 bytes of SHA-256("vigil.alembic.upgrade").
MIGRATE_LOCK_KEY: Final = 6790945897453532895

_T = TypeVar("_T")

# Execution option read by the SQLite ``begin`` hook; set by read-only session factories.
_SQLITE_BEGIN_OPTION: Final = "vigil_sqlite_begin"

# Drivers whose DBAPI ``connect()`` takes ``connect_timeout`` in whole seconds.
_CONNECT_TIMEOUT_BACKENDS: Final = frozenset({"postgresql", "mysql", "mariadb"})


def make_engine(url: str, *, connect_timeout_s: int = 10) -> Engine:
    """Create an engine for ``url`` and check that the database can be reached.

    Parameters
    ----------
    url : str
        Any SQLAlchemy URL, e.g. ``sqlite:///var/vigil.db``, ``sqlite://`` (in memory) or
        ``postgresql+psycopg://user@host/vigil``. The directory of a SQLite file must exist.
    connect_timeout_s : int, default 10
        Seconds to wait for a network database to answer; ignored for SQLite.

    Returns
    -------
    Engine
        Connected once already; SQLite engines carry the WAL / foreign-key / ``BEGIN IMMEDIATE``
        hooks, and in-memory SQLite uses one shared connection (``StaticPool``).

    Raises
    ------
    DatabaseURLError
        If the URL cannot be parsed, its driver is not installed, or the database cannot be
        opened or reached. The message hides any password.
    """
    parsed = _parse_url(url)
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _create_sqlite_engine(parsed)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, connect_args=_timeout_args(parsed, connect_timeout_s))
            if parsed.get_backend_name() == "postgresql":
                event.listen(engine, "connect", _postgresql_on_connect)
    except (ImportError, NoSuchModuleError) as exc:
        raise DatabaseURLError(shown, f"database driver not available: {exc}") from exc
    except ArgumentError as exc:
        raise DatabaseURLError(shown, str(exc)) from exc
    _check_reachable(engine, shown)
    return engine


def make_session_factory(engine: Engine, *, read_only: bool = False) -> SessionFactory:
    """Sessions whose loaded objects stay readable after commit (``expire_on_commit=False``).

    Parameters
    ----------
    engine : Engine
        From :func:`make_engine`.
    read_only : bool, default False
        On SQLite, open transactions with a deferred ``BEGIN`` so that pages that only read
        never wait for a writer (WAL lets them read a snapshot). A write in such a session may
        fail with "database is locked" under contention; use the default factory to write.
        No effect on other databases.

    Returns
    -------
    SessionFactory
        Callers own transactions: ``with factory.begin() as session: ...``.
    """
    bind = engine.execution_options(**{_SQLITE_BEGIN_OPTION: "DEFERRED"}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


def write_with_retries(
    session_factory: SessionFactory, work: Callable[[Session], _T], *, attempts: int = WRITE_ATTEMPTS
) -> _T:
    """Run ``work`` in one write transaction, again from a fresh read when a concurrent writer won.

    ``work`` must decide what to write from what it reads in its own transaction (is this file
    already stored? does this study have a prediction yet?). On SQLite every write transaction
    begins ``IMMEDIATE``, so those reads see every committed writer and the retry never fires;
    under PostgreSQL's READ COMMITTED two transactions can read the same "absent" and one then
    fails on a unique key, and its second run reads the winner's rows and acts on them.

    Parameters
    ----------
    session_factory : SessionFactory
    work : callable
        Called with the open session; what it returns is returned after the commit.
    attempts : int
        Transactions tried before the last unique-key failure is raised.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        Still conflicting after ``attempts`` transactions (a bug in ``work``, not a race).
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_factory.begin() as session:
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
    raise ValueError(f"attempts must be at least 1, got {attempts}")


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision (Alembic ``upgrade head``); idempotent.

    Runs in one transaction, so on SQLite and PostgreSQL a failed migration leaves the
    schema as it was, and concurrent callers are serialized: SQLite's ``BEGIN IMMEDIATE`` and,
    on PostgreSQL, the advisory lock :data:`MIGRATE_LOCK_KEY` make a second caller wait for the
    first to commit and then find nothing left to do.

    Returns
    -------
    str
        The revision the database is at afterwards, e.g. ``"0001"``.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Without it two first-time callers both create alembic_version, and the second
            # fails on the catalog's unique index when the first commits.
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATE_LOCK_KEY)))
        heads = MigrationContext.configure(connection).get_current_heads()
        # Already at the shipped heads (every open of an existing store): Alembic would load every
        # revision file to find nothing to do, most of the cost of opening a store.
        if set(heads) != _shipped_heads():
            # "heads": features may add migrations on parallel branches until a merge revision joins them.
            command.upgrade(alembic_config(connection), "heads")
            heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:  # pragma: no cover - upgrade always stamps a revision
        raise RuntimeError("alembic upgrade finished without stamping a revision")
    return "+".join(sorted(heads))


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is stamped with, or None when it was never migrated."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return "+".join(sorted(heads)) if heads else None


def head_revision() -> str:
    """Return the newest revision shipped with this code (for model cards' ``data_schema``)."""
    return "+".join(sorted(_shipped_heads()))


@functools.cache
def _shipped_heads() -> frozenset[str]:
    """The head revisions of the migrations shipped with this code (read once per process)."""
    heads = ScriptDirectory.from_config(alembic_config(None)).get_heads()
    if not heads:  # pragma: no cover - the package always ships revision 0001
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return frozenset(heads)


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic configuration for this package's migrations, bound to ``connection``.

    Use it with ``alembic.command`` (``downgrade``, ``revision --autogenerate``) when the
    helpers here are not enough; no ``alembic.ini`` is involved.
    """
    # Configured in code, not from an alembic.ini, so it works wherever the package is installed.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(url, "not a SQLAlchemy URL (e.g. sqlite:///var/vigil.db)") from exc


def _timeout_args(url: URL, connect_timeout_s: int) -> dict[str, Any]:
    return {"connect_timeout": connect_timeout_s} if url.get_backend_name() in _CONNECT_TIMEOUT_BACKENDS else {}


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _create_sqlite_engine(url: URL) -> Engine:
    memory = _is_memory(url)
    if memory:
        # One connection shared by every session, or each would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _check_sqlite_directory(url)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_on_connect_memory if memory else _sqlite_on_connect_file)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _check_sqlite_directory(url: URL) -> None:
    database = url.database or ""
    if database.startswith("file:"):
        return  # a URI filename; sqlite3 resolves it and reports errors on connect
    directory = Path(database).expanduser().parent
    if not directory.is_dir():
        raise DatabaseURLError(url.render_as_string(), f"directory {directory} does not exist")


def _sqlite_on_connect_file(dbapi_connection: Any, _record: object) -> None:
    _sqlite_prepare(dbapi_connection, wal=True)


def _sqlite_on_connect_memory(dbapi_connection: Any, _record: object) -> None:
    _sqlite_prepare(dbapi_connection, wal=False)  # in-memory databases have no WAL


def _sqlite_prepare(dbapi_connection: Any, *, wal: bool) -> None:
    # Take BEGIN away from the sqlite3 driver (which skips it for SELECT and DDL); the
    # "begin" hook emits it instead, so transactions, savepoints and DDL behave (SQLAlchemy
    # docs, "Transactions with SQLite and the sqlite3 driver").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite, per connection
        if wal:
            # Readers keep reading a snapshot while one writer writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            # Every commit (feedback, audit) is synced before it is acknowledged; WAL's usual
            # NORMAL may lose the last commits on power loss.
            cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _postgresql_on_connect(dbapi_connection: Any, _record: object) -> None:
    # A server (or role) set to synchronous_commit=off acknowledges commits before their WAL is
    # flushed; a crash then loses acknowledged feedback and audit entries. Set it per session,
    # outside a transaction so the pool's reset-on-return rollback keeps it.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET synchronous_commit TO on")
    finally:
        cursor.close()
        dbapi_connection.autocommit = autocommit


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _check_reachable(engine: Engine, shown_url: str) -> None:
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseURLError(shown_url, f"cannot connect: {exc.orig}") from exc
