"""Hospital sites: register, look up and list (``vigil site add`` / ``vigil site list``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BadInputError, DuplicateSiteError, UnknownSiteError
from core.store.tables import SiteRow

__all__ = ["SiteRecord", "add_site", "benchmark_site", "get_site", "list_sites"]


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """A registered site.

    Attributes
    ----------
    id : int
        Database key, for foreign keys only; people name sites by ``name``.
    name : str
        Unique, as given to ``vigil site add``.
    is_benchmark : bool
        True for the retrospective benchmark site that deployment sites are compared with.
    created_at : datetime
        Aware, UTC.
    """

    id: int
    name: str
    is_benchmark: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: SiteRow) -> SiteRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(id=row.id, name=row.name, is_benchmark=row.is_benchmark, created_at=row.created_at)


def add_site(session: Session, name: str, *, is_benchmark: bool = False, now: datetime) -> SiteRecord:
    """Stage a new site. The caller owns the transaction.

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    name : str
        Site name; surrounding whitespace is removed.
    is_benchmark : bool, default False
        Mark the retrospective benchmark site.
    now : datetime
        Aware creation time.

    Returns
    -------
    SiteRecord

    Raises
    ------
    BadInputError
        If ``name`` is empty.
    DuplicateSiteError
        If a site of that name is already registered.
    """
    name = name.strip()
    if not name:
        raise BadInputError("site name must not be empty")
    if _find(session, name) is not None:
        raise DuplicateSiteError(name)
    row = SiteRow(name=name, is_benchmark=is_benchmark, created_at=now)
    session.add(row)
    session.flush()  # assigns row.id, and fires the unique constraint if a concurrent writer won
    return SiteRecord.from_row(row)


def get_site(session: Session, name: str) -> SiteRecord:
    """Look a site up by name.

    Raises
    ------
    UnknownSiteError
        If no site of that name is registered.
    """
    row = _find(session, name.strip())
    if row is None:
        raise UnknownSiteError(name)
    return SiteRecord.from_row(row)


def list_sites(session: Session) -> list[SiteRecord]:
    """Every site, sorted by name."""
    return [SiteRecord.from_row(row) for row in session.scalars(select(SiteRow).order_by(SiteRow.name))]


def benchmark_site(session: Session) -> SiteRecord | None:
    """The retrospective benchmark site (the first by name if several are marked), or None."""
    return next((s for s in list_sites(session) if s.is_benchmark), None)


def _find(session: Session, name: str) -> SiteRow | None:
    return session.scalars(select(SiteRow).where(SiteRow.name == name)).one_or_none()
