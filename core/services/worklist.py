"""The reader's worklist: filtered, paged in SQL, stepped through with next / previous.

Every function needs :attr:`Permission.REVIEW_STUDIES`. Each study is shown with the prediction of
the version serving its site (``core.store.deployments``); the filters and the order are the ones
``core.store.reviews`` defines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Final

from core.errors import BadInputError
from core.services.permissions import Permission, SignedInUser, require
from core.store import deployments, model_versions, reviews, sites, users
from core.store.engine import SessionFactory
from core.store.model_versions import ModelVersionRecord
from core.store.reviews import COUNT_CAP, Cohort, ReviewStatus, ScoreBand, WorklistOrder, WorklistQuery, WorklistRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "COUNT_CAP",
    "Cohort",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Neighbours",
    "ReviewStatus",
    "ScoreBand",
    "WorklistFilter",
    "WorklistOrder",
    "WorklistPage",
    "WorklistRow",
    "data_version",
    "neighbours",
    "site_names",
    "turnaround",
    "worklist_page",
]

DEFAULT_PAGE_SIZE: Final = 25
#: A page never sends more rows than this to the browser.
MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """What the reader asked to see; hashable, so UI caches can key on it.

    The default is a triage list: live studies only (the retrospective benchmark studies are a
    separate cohort), not yet read by me, model-positive and high-score studies first.
    """

    sites: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    band: ScoreBand = ScoreBand.ANY
    status: ReviewStatus = ReviewStatus.NOT_REVIEWED_BY_ME
    order: WorklistOrder = WorklistOrder.PRIORITY
    cohort: Cohort = Cohort.LIVE


@dataclass(frozen=True, slots=True)
class WorklistPage:
    """One page of studies and where it sits in the whole list.

    Attributes
    ----------
    page : int
        0-based, clamped to the last page.
    pages : int
        At least 1, even for an empty list; past the count's cap, one more than this page while
        this page is full (``capped``), so the reader can keep paging.
    model_version : str or None
        The version whose scores are shown, and any other serving a site in view with its sites
        (``"v1; v2 at north"``); None before a model is registered.
    total : int
        How many studies the filter selects, or :data:`COUNT_CAP` when there are more (``capped``):
        counting stops there, so a page costs the same at any store size.
    capped : bool
        More than ``total`` studies match.
    """

    items: tuple[WorklistRow, ...]
    total: int
    page: int
    page_size: int
    pages: int
    model_version: str | None
    capped: bool = False

    @property
    def total_text(self) -> str:
        """The count as a reader sees it: ``"123"``, or ``"1,000+"`` past the cap."""
        return f"{self.total:,}+" if self.capped else f"{self.total:,}"

    @property
    def pages_text(self) -> str:
        """``"4"``, or ``"41+"`` while the list goes on past the count's cap."""
        return f"{self.pages:,}+" if self.capped else f"{self.pages:,}"


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The studies before and after one study in the current worklist (None at either end)."""

    previous: str | None
    next: str | None


def worklist_page(
    session_factory: SessionFactory,
    user: SignedInUser,
    flt: WorklistFilter,
    *,
    page: int = 0,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> WorklistPage:
    """One page of the worklist.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    BadInputError
        ``page_size`` outside 1..:data:`MAX_PAGE_SIZE`, or ``date_from`` after ``date_to``.
    UnknownSiteError
        A filtered site is not registered.
    """
    require(user, Permission.REVIEW_STUDIES)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadInputError(f"page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
    with session_factory() as session:
        query, version = _query(session, user, flt)
        counted = reviews.count_worklist(session, query, cap=COUNT_CAP)
        total, capped = min(counted, COUNT_CAP), counted > COUNT_CAP
        pages = max(1, -(-total // page_size))
        page = max(page, 0) if capped else min(max(page, 0), pages - 1)
        items = reviews.worklist_rows(session, query, limit=page_size, offset=page * page_size)
        if capped and not items:  # paged past the end of a long list: show its last page
            page = _last_page(session, query, page_size)
            items = reviews.worklist_rows(session, query, limit=page_size, offset=page * page_size)
    if capped:
        pages = max(pages, page + (2 if len(items) == page_size else 1))
    return WorklistPage(tuple(items), total, page, page_size, pages, version, capped=capped)


def _last_page(session: Session, query: WorklistQuery, page_size: int) -> int:
    # Past the cap the list's length is unknown: count it in full, once, for this rare jump.
    n = reviews.count_worklist(session, query, cap=2**62)
    return max(0, -(-n // page_size) - 1)


def neighbours(session_factory: SessionFactory, user: SignedInUser, flt: WorklistFilter, study_uid: str) -> Neighbours:
    """The previous and next study around ``study_uid`` in the filtered, ordered worklist.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        ``study_uid`` is not stored.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        query, _ = _query(session, user, flt)
        current = reviews.worklist_row(session, query, study_uid)
        return Neighbours(
            previous=reviews.neighbour(session, query, current, forward=False),
            next=reviews.neighbour(session, query, current, forward=True),
        )


def turnaround(row: WorklistRow, now: datetime) -> timedelta:
    """Arrival to first read, or arrival to ``now`` while nobody has read the study.

    Parameters
    ----------
    row : WorklistRow
        A study as the worklist shows it (``arrived_at`` and ``first_read_at`` in UTC).
    now : datetime
        Aware; the clock for a study still waiting.

    Returns
    -------
    timedelta
        Never negative (a clock skew between writers does not show as time travel).
    """
    end = row.first_read_at if row.first_read_at is not None else now
    return max(timedelta(0), end - row.arrived_at)


def site_names(session_factory: SessionFactory, user: SignedInUser) -> list[str]:
    """Registered sites, by name, for the site filter."""
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        return [s.name for s in sites.list_sites(session)]


def data_version(session_factory: SessionFactory) -> str:
    """A token that changes whenever any worklist could change (see ``core.store.reviews.data_version``)."""
    with session_factory() as session:
        return reviews.data_version(session)


def _query(session: Session, user: SignedInUser, flt: WorklistFilter) -> tuple[WorklistQuery, str | None]:
    if flt.date_from is not None and flt.date_to is not None and flt.date_from > flt.date_to:
        raise BadInputError(f"date range is empty: {flt.date_from} is after {flt.date_to}")
    for name in flt.sites:
        sites.get_site(session, name)  # a typo must not look like an empty worklist
    shown, served, label = _versions_in_view(session, flt.sites)
    reader = users.get_user(session, user.username)
    query = WorklistQuery(
        model_version_id=None if shown is None else shown.id,
        reader_id=reader.id,
        sites=flt.sites,
        date_from=flt.date_from,
        date_to=flt.date_to,
        band=flt.band,
        status=flt.status,
        order=flt.order,
        cohort=flt.cohort,
        served=served,
    )
    return query, label


def _versions_in_view(
    session: Session, wanted: tuple[str, ...]
) -> tuple[ModelVersionRecord | None, tuple[tuple[str, int], ...], str | None]:
    """The version whose predictions the worklist shows, the sites in view served by another, and a label.

    Each study is shown with the prediction of the version serving its site. When every site in
    view is served by one version, that version alone (one index walk, as before per-site
    deployment); otherwise the fleet-wide version, with the sites served by another version and
    theirs. The label names them: ``"v1"``, or ``"v1; v2 at north, south"``.
    """
    fleet = model_versions.serving(session)
    by_site = deployments.versions_by_site(session)
    in_view = {name: v for name, v in by_site.items() if v is not None and (not wanted or name in wanted)}
    versions = {v.id: v for v in in_view.values()}
    if fleet is None or not versions:
        return fleet, (), None if fleet is None else fleet.version
    if len(versions) == 1:
        (only,) = versions.values()
        return only, (), only.version
    served = tuple((name, v.id) for name, v in sorted(in_view.items()) if v.id != fleet.id)
    elsewhere: dict[str, list[str]] = {}
    for name, v in sorted(in_view.items()):
        if v.id != fleet.id:
            elsewhere.setdefault(v.version, []).append(name)
    label = "; ".join([fleet.version, *(f"{v} at {', '.join(names)}" for v, names in elsewhere.items())])
    return fleet, served, label
