"""Fixtures shared across the test suite.

``session_factory`` runs every store contract test against each supported database (the Flower
``ObjectStore`` test pattern): an in-memory SQLite database, a SQLite file in ``tmp_path`` and a
PostgreSQL database of its own on the session's throwaway server (``tests/postgres.py``), each
migrated to the newest revision. ``new_database`` gives other suites (audit, services) the same
choice of backends.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import Engine

from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from tests.postgres import PostgresServer, start_server

#: The database flavours every store contract test runs against.
DATABASES = ["sqlite-memory", "sqlite-file", "postgresql"]

#: One embedded and one server database: the backends of the audit and service suites.
BACKENDS = ["sqlite-file", "postgresql"]

#: ``new_database(kind, migrated=...)``: the URL of a new database of one of :data:`DATABASES`.
NewDatabase = Callable[..., str]

#: The modules that take minutes, longest first. ``scripts/test`` runs the suite on every core
#: (pytest-xdist, work stealing); started first, the longest work runs beside everything else
#: instead of alone at the end (longest-processing-time-first scheduling). Whole modules move, so
#: their module-scoped fixtures are still set up once.
LONGEST_FIRST: Final = (
    "tests/core/models/test_bundled_reproduction.py",
    "tests/e2e/test_change_control_browser.py",
    "tests/test_fl_cli.py",
    "tests/core/services/test_concurrency.py",
    "tests/fuzz/test_fuzz.py",
    "tests/e2e/test_accessibility_browser.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run :data:`LONGEST_FIRST`'s modules first, in that order; the rest keep their order.

    A module renamed or removed without updating the list stops the run, naming it: otherwise the
    suite would only grow slower, with nothing said.
    """
    if missing := [path for path in LONGEST_FIRST if not (config.rootpath / path).is_file()]:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names modules that do not exist: {missing}")
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Return the session's PostgreSQL server, started on first use and stopped at the end.

    Fails (never skips) when PostgreSQL is not installed: ``scripts/test`` installs it first.
    """
    server = start_server()
    yield server
    server.close()


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, made once per test process (to be copied)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Return ``new_database(kind, *, migrated=False) -> url``: a database of its own for this test.

    ``sqlite-file`` databases are files in ``tmp_path``; ``postgresql`` ones are created on
    :func:`postgres_server` (started only when a test asks for one) and dropped after the test.
    ``migrated=True`` lets a file or PostgreSQL database start as a copy of one already at the
    newest revision, which saves migrating it from scratch; callers still run ``migrate``, which
    then has nothing to do.
    """
    created: list[str] = []
    counter = iter(range(1_000_000))

    def new(kind: str, *, migrated: bool = False) -> str:
        if kind == "sqlite-memory":
            return "sqlite://"
        if kind == "sqlite-file":
            path = tmp_path / f"vigil-{next(counter)}.db"
            if migrated:
                shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
            return f"sqlite:///{path}"
        if kind == "postgresql":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            created.append(server.create_database(migrated=migrated))
            return created[-1]
        raise ValueError(f"unknown database kind {kind!r}")

    yield new
    if created:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        for url in created:
            server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Return each of :data:`BACKENDS` in turn, for ``new_database`` (one contract, two backends)."""
    kind: str = request.param
    return kind


@pytest.fixture(params=DATABASES)
def session_factory(request: pytest.FixtureRequest, new_database: NewDatabase) -> Iterator[SessionFactory]:
    """Return a session factory on a freshly migrated database of each kind."""
    engine = make_engine(new_database(request.param, migrated=True))
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def store_engine(session_factory: SessionFactory) -> Engine:
    """Return the engine behind ``session_factory`` (same parametrization)."""
    bind = session_factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


@pytest.fixture
def now() -> datetime:
    """Return a fixed, aware UTC instant so stored timestamps are predictable."""
    return datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
