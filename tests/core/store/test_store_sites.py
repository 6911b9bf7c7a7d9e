"""Contract tests for core.store.sites, on every database flavour."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.errors import BadInputError, DuplicateSiteError, UnknownSiteError
from core.store import sites
from core.store.engine import SessionFactory
from core.store.sites import SiteRecord


def test_add_then_get_site(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        added = sites.add_site(session, "  north ", is_benchmark=True, now=now)
    with session_factory() as session:
        fetched = sites.get_site(session, "north")

    # Assert
    assert added == fetched
    assert fetched == SiteRecord(id=added.id, name="north", is_benchmark=True, created_at=now)


def test_list_sites_is_sorted_by_name(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        for name in ["south", "benchmark", "north"]:
            sites.add_site(session, name, is_benchmark=name == "benchmark", now=now)

    # Execute
    with session_factory() as session:
        listed = sites.list_sites(session)

    # Assert
    assert [s.name for s in listed] == ["benchmark", "north", "south"]
    assert [s.is_benchmark for s in listed] == [True, False, False]


def test_duplicate_site_is_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        sites.add_site(session, "north", now=now)

    # Execute / Assert
    with pytest.raises(DuplicateSiteError, match="north"), session_factory.begin() as session:
        sites.add_site(session, "north", now=now)


def test_unknown_site_is_an_error(session_factory: SessionFactory) -> None:
    # Execute / Assert
    with pytest.raises(UnknownSiteError, match="nowhere"), session_factory() as session:
        sites.get_site(session, "nowhere")


def test_empty_site_name_is_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="empty"), session_factory.begin() as session:
        sites.add_site(session, "   ", now=now)


def test_add_site_does_not_commit(session_factory: SessionFactory, now: datetime) -> None:
    # Execute: stage, then roll back explicitly
    with session_factory() as session:
        sites.add_site(session, "north", now=now)
        session.rollback()

    # Assert
    with session_factory() as session:
        assert sites.list_sites(session) == []
