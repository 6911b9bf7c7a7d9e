"""Open the configured store, migrated to the current schema."""

from __future__ import annotations

from datetime import UTC, datetime

from core.config import Settings
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate

__all__ = ["open_store", "utc_now"]


def open_store(settings: Settings) -> SessionFactory:
    """Connect to ``settings.database_url`` and bring its schema to the head revision.

    Raises
    ------
    DatabaseURLError
        The URL cannot be parsed or the database cannot be reached; nothing is written.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return make_session_factory(engine)


def utc_now() -> datetime:
    """The clock every service is given: timezone-aware UTC."""
    return datetime.now(UTC)
