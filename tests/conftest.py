"""Fixtures shared across the test suite.

``session_factory`` runs every store contract test against each supported embedded
database (the Flower ``ObjectStore`` test pattern): an in-memory SQLite database and a SQLite
file in ``tmp_path``, both migrated to the newest revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate

#: The database flavours every store contract test runs against.
DATABASES = ["sqlite-memory", "sqlite-file"]


def database_url(kind: str, tmp_path: Path) -> str:
    """Return the SQLAlchemy URL for one of :data:`DATABASES`."""
    if kind == "sqlite-memory":
        return "sqlite://"
    if kind == "sqlite-file":
        return f"sqlite:///{tmp_path / 'vigil.db'}"
    raise ValueError(f"unknown database kind {kind!r}")


@pytest.fixture(params=DATABASES)
def session_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionFactory]:
    """Return a session factory on a freshly migrated database of each kind."""
    engine = make_engine(database_url(request.param, tmp_path))
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
