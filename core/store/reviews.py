"""The reading worklist in SQL: filter, count, page and step through studies with their scores.

Every query here filters, orders and pages in the database, so a page of 25 studies costs the
same with 10k or 100k studies stored (apart from counting). A study is shown with the prediction
that the given model version made for its first instance; studies that version has not scored
(pending, outside the intended use, unreadable) have no score.

:func:`insert_synthetic_worklist` bulk-inserts SYNTHETIC studies for benchmarks only.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from core.errors import UnknownStudyError
from core.store.tables import (
    DeploymentRow,
    FeedbackRow,
    InstanceRow,
    ModelVersionRow,
    PredictionRow,
    SiteRow,
    StudyRow,
)

__all__ = [
    "BORDERLINE_MARGIN",
    "COUNT_CAP",
    "Cohort",
    "ReviewStatus",
    "ScoreBand",
    "WorklistOrder",
    "WorklistQuery",
    "WorklistRow",
    "count_worklist",
    "data_version",
    "insert_synthetic_worklist",
    "neighbour",
    "worklist_row",
    "worklist_rows",
]

#: Half-width of the "borderline" band around a prediction's operating threshold.
BORDERLINE_MARGIN: Final = 0.1
#: A worklist's count stops past this many studies (the reader sees "1,000+"). Counting walks the
#: rows one by one, so the cap is what a page costs at any store size; paging goes on past it.
COUNT_CAP: Final = 1_000


class ScoreBand(StrEnum):
    """Which model scores a worklist shows, relative to each prediction's own threshold."""

    ANY = "any"
    POSITIVE = "positive"  # score >= threshold
    NEGATIVE = "negative"  # score < threshold
    BORDERLINE = "borderline"  # |score - threshold| <= BORDERLINE_MARGIN
    UNSCORED = "unscored"  # no score: pending, outside intended use or unreadable


class ReviewStatus(StrEnum):
    """Which studies a worklist shows, by the feedback already recorded on them."""

    ANY = "any"
    NOT_REVIEWED_BY_ME = "not_reviewed_by_me"
    REVIEWED_BY_ME = "reviewed_by_me"
    UNREVIEWED = "unreviewed"  # by nobody


class WorklistOrder(StrEnum):
    """How a worklist is sorted; ties and the rest by arrival."""

    PRIORITY = "priority"  # model-positive first, then highest score, unscored last
    ARRIVAL = "arrival"  # oldest stored first
    SCORE = "score"  # highest score first, unscored last


class Cohort(StrEnum):
    """Live studies from deployment sites, the retrospective benchmark studies, or both."""

    LIVE = "live"  # sites without ``is_benchmark``
    BENCHMARK = "benchmark"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class WorklistQuery:
    """What a worklist shows and in which order.

    Attributes
    ----------
    model_version_id : int or None
        Whose predictions to show (the serving version); None shows every study unscored.
    reader_id : int
        ``app_user.id`` of the reader, for the "by me" review states.
    sites : tuple of str
        Site names to include; empty for every site.
    date_from, date_to : date or None
        Inclusive study-date bounds; a study without a date is left out when either is set.
    cohort : Cohort
        Live studies only (the default), benchmark studies only, or both.
    served : tuple of (str, int)
        Sites served by a version other than ``model_version_id``, each with that version's id:
        a study at such a site is shown with that version's prediction. Empty (the default) when
        every site in view is served by ``model_version_id``.
    """

    model_version_id: int | None
    reader_id: int
    sites: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    band: ScoreBand = ScoreBand.ANY
    status: ReviewStatus = ReviewStatus.ANY
    order: WorklistOrder = WorklistOrder.ARRIVAL
    cohort: Cohort = Cohort.ANY
    served: tuple[tuple[str, int], ...] = ()

    def parts(self) -> list[tuple[int, tuple[str, ...] | None, tuple[str, ...]]]:
        """Each version in view with its sites: ``(version id, only these sites or None, not these sites)``.

        ``model_version_id`` comes first and serves every site not in :attr:`served`; a part whose
        sites the ``sites`` filter leaves out entirely is dropped.
        """
        if self.model_version_id is None:
            return []
        others: dict[int, list[str]] = {}
        for name, version_id in self.served:
            others.setdefault(version_id, []).append(name)
        wanted = set(self.sites)
        elsewhere = tuple(sorted(name for name, _ in self.served))
        fleet = [(self.model_version_id, None, elsewhere)] if not wanted or wanted - set(elsewhere) else []
        return fleet + [
            (version_id, tuple(sorted(names)), ())
            for version_id, names in sorted(others.items())
            if not wanted or wanted & set(names)
        ]


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One study as a worklist shows it; prediction fields are None when it has no prediction.

    ``arrived_at`` is when Vigil stored the study and ``first_read_at`` when the first reader
    recorded feedback on it (None while nobody has), both UTC.
    """

    study_id: int
    study_uid: str
    accession_number: str
    site_name: str
    study_date: date | None
    vendor: str
    view_position: str
    prediction_id: int | None
    score: float | None
    label: bool | None
    threshold: float | None
    fallback: str | None
    readers: int
    reviewed_by_me: bool
    arrived_at: datetime
    first_read_at: datetime | None


def worklist_rows(session: Session, query: WorklistQuery, *, limit: int, offset: int = 0) -> list[WorklistRow]:
    """One page of the worklist, in the query's order.

    The scored studies come first, walked in the order of a ``prediction`` index; then the
    studies the version has not scored, by arrival. Each part stops after the page, so page 0
    costs the same at 10k and 1M studies; a deep ``offset`` still reads the rows it skips.
    """
    rows = _page(session, query, limit, offset)
    readers = _readers(session, [r.study_id for r in rows])
    return [_row(r, *readers.get(r.study_id, (0, None))) for r in rows]


def count_worklist(session: Session, query: WorklistQuery, *, cap: int = COUNT_CAP) -> int:
    """How many studies the query selects, counting no further than ``cap + 1``.

    Returns
    -------
    int
        The exact count when it is at most ``cap``; ``cap + 1`` means "more than ``cap``". Counting
        stops there so that a page never pays for counting a million studies.
    """
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    scored = _scored(query)
    if scored is None:
        return _count(session, _everything(query), cap + 1)
    n = 0
    for part in scored:  # disjoint sites: the counts add up
        n += _count(session, part, cap + 1 - n)
        if n > cap:
            return n
    return n + _count(session, _unscored(query), cap + 1 - n)


def worklist_row(session: Session, query: WorklistQuery, study_uid: str) -> WorklistRow:
    """One study as the worklist shows it, whether or not the query's filters select it.

    Raises
    ------
    UnknownStudyError
        If the study is not stored.
    """
    row = session.execute(_select(query).where(StudyRow.study_uid == study_uid)).one_or_none()
    if row is None:
        raise UnknownStudyError(study_uid)
    return _row(row, *_readers(session, [row.study_id]).get(row.study_id, (0, None)))


def neighbour(session: Session, query: WorklistQuery, current: WorklistRow, *, forward: bool) -> str | None:
    """The StudyInstanceUID after (or before) ``current`` in the query's order, None at either end.

    Keyset stepping: ``current`` need not match the filters any more (a study the reader has just
    reviewed leaves a "not reviewed by me" list), the next one is still the right one. Each probe
    is a range on one index, so a step costs the same at any store size.
    """
    scored = _scored(query)
    if scored is None:
        return _first_uid(session, _everything(query), _ARRIVAL, current.study_id, forward=forward)
    unscored = _unscored(query)
    key = _scored_key(query.order)
    if _is_scored(current):
        steps = [_step_scored(session, part, key, current, forward=forward) for part in scored]
        found = _nearest(steps, key, forward=forward)
        if found is None and forward:
            found = _first_uid(session, unscored, _ARRIVAL, None, forward=True)
        return found
    found = _first_uid(session, unscored, _ARRIVAL, current.study_id, forward=forward)
    if found is None and not forward:
        found = _nearest([_first_row(session, part, key, forward=False) for part in scored], key, forward=False)
    return found


def data_version(session: Session) -> str:
    """A token that changes whenever a worklist could change: new studies, predictions, feedback, model.

    Five index look-ups (the largest keys, the serving version, the newest switch), whatever the table sizes;
    UI caches key on it instead of hashing result frames.
    """
    stmt = select(
        select(func.max(StudyRow.id)).scalar_subquery(),
        select(func.max(PredictionRow.id)).scalar_subquery(),
        select(func.max(FeedbackRow.id)).scalar_subquery(),
        select(func.max(ModelVersionRow.id)).where(ModelVersionRow.is_serving).scalar_subquery(),
        # A switch of one site's version moves no fleet pointer, only the deployment history.
        select(func.max(DeploymentRow.id)).scalar_subquery(),
    )
    s, p, f, m, d = session.execute(stmt).one()
    return f"s{s or 0}.p{p or 0}.f{f or 0}.m{m or 0}.d{d or 0}"


def _first_instance_id() -> Any:
    # Chest studies hold one frontal image; a study with several shows its first one.
    # An alias, so the subquery keeps its own FROM when the outer query also reads ``instance``.
    first = aliased(InstanceRow)
    return select(func.min(first.id)).where(first.study_id == StudyRow.id).correlate(StudyRow).scalar_subquery()


def _columns(query: WorklistQuery) -> tuple[Any, ...]:
    mine = exists().where(FeedbackRow.study_id == StudyRow.id, FeedbackRow.user_id == query.reader_id)
    return (
        StudyRow.id.label("study_id"),
        StudyRow.study_uid,
        StudyRow.accession_number,
        SiteRow.name.label("site_name"),
        StudyRow.study_date,
        StudyRow.vendor,
        StudyRow.view_position,
        StudyRow.created_at.label("arrived_at"),
        PredictionRow.id.label("prediction_id"),
        PredictionRow.score,
        PredictionRow.label,
        PredictionRow.threshold,
        PredictionRow.fallback,
        mine.label("reviewed_by_me"),
    )


def _select(query: WorklistQuery) -> Select[*tuple[Any, ...]]:
    """Every study with its site's version's prediction for its first instance, if any (outer join)."""
    mv_id = query.model_version_id if query.model_version_id is not None else -1
    version: Any = literal(mv_id)
    if query.served:
        version = case(dict(query.served), value=SiteRow.name, else_=mv_id)
    return (
        select(*_columns(query))
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
        .outerjoin(
            PredictionRow,
            and_(PredictionRow.instance_id == _first_instance_id(), PredictionRow.model_version_id == version),
        )
    )


def _everything(query: WorklistQuery) -> Select[*tuple[Any, ...]]:
    """The filtered worklist as one part, when its order is by arrival or nothing is scored."""
    return _filtered(_select(query), query)


def _scored(query: WorklistQuery) -> list[Select[*tuple[Any, ...]]] | None:
    """The studies scored by the version serving their site, one part per version (None when ordered by arrival).

    Each part is joined from the prediction side so that SQL can walk ``ix_prediction_worklist_*``
    of its version in the page's order and stop after one page, instead of sorting every study on
    a computed key. The parts select disjoint sites; with one version in view there is one part.
    """
    if query.order is WorklistOrder.ARRIVAL or query.model_version_id is None:
        return None
    return [_scored_part(query, *part) for part in query.parts()]


def _scored_part(
    query: WorklistQuery, version_id: int, only: tuple[str, ...] | None, excluded: tuple[str, ...]
) -> Select[*tuple[Any, ...]]:
    """The studies of ``only`` (of every site but ``excluded``) that ``version_id`` scored."""
    stmt = (
        select(*_columns(query))
        .select_from(PredictionRow)
        .join(InstanceRow, InstanceRow.id == PredictionRow.instance_id)
        .join(StudyRow, StudyRow.id == InstanceRow.study_id)
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
        .where(
            PredictionRow.model_version_id == version_id,
            PredictionRow.score.is_not(None),
            PredictionRow.label.is_not(None),
            InstanceRow.id == _first_instance_id(),
        )
    )
    if only is not None:
        stmt = stmt.where(SiteRow.name.in_(only))
    if excluded:
        stmt = stmt.where(SiteRow.name.not_in(excluded))
    return _filtered(stmt, query)


def _unscored(query: WorklistQuery) -> Select[*tuple[Any, ...]]:
    """The studies the version did not score (no prediction, or a fallback without a score)."""
    unscored = or_(PredictionRow.score.is_(None), PredictionRow.label.is_(None))
    return _filtered(_select(query), query).where(unscored)


@dataclass(frozen=True, slots=True)
class _KeyColumn:
    """One column of a worklist order: the SQL column, its direction, and a row's value in it."""

    column: ColumnElement[Any]
    descending: bool
    value: Callable[[WorklistRow], object]

    def order(self, *, forward: bool) -> ColumnElement[Any]:
        return self.column.desc() if self.descending == forward else self.column.asc()

    def beyond(self, row: WorklistRow, *, forward: bool) -> ColumnElement[bool]:
        """Rows strictly after ``row`` in this column (before, when not ``forward``)."""
        # A bound literal: SQLAlchemy refuses ``<`` against a Python bool, and a boolean column
        # orders false < true on both databases.
        v = literal(self.value(row))
        return self.column < v if self.descending == forward else self.column > v


_ARRIVAL: Final = (_KeyColumn(StudyRow.id.expression, False, lambda r: r.study_id),)
_SCORE: Final = _KeyColumn(PredictionRow.score.expression, True, lambda r: r.score)
_POSITIVE: Final = _KeyColumn(PredictionRow.label.expression, True, lambda r: r.label)


def _scored_key(order: WorklistOrder) -> tuple[_KeyColumn, ...]:
    # Model-positive first, then the highest score, then arrival: ix_prediction_worklist_* serve it.
    return (_POSITIVE, _SCORE, *_ARRIVAL) if order is WorklistOrder.PRIORITY else (_SCORE, *_ARRIVAL)


def _order_by(key: Sequence[_KeyColumn], *, forward: bool) -> list[ColumnElement[Any]]:
    return [k.order(forward=forward) for k in key]


def _page(session: Session, query: WorklistQuery, limit: int, offset: int) -> list[Any]:
    scored = _scored(query)
    if scored is None:
        stmt = _everything(query).order_by(*_order_by(_ARRIVAL, forward=True))
        return list(session.execute(stmt.limit(limit).offset(offset)))
    key = _scored_key(query.order)
    if len(scored) == 1:
        stmt = scored[0].order_by(*_order_by(key, forward=True))
        rows = list(session.execute(stmt.limit(limit).offset(offset)))
    else:
        # A k-way merge of the versions' index walks: each reads at most offset + limit rows in
        # the page's order, as one walk with an OFFSET would; the merge keeps the global order.
        walks = [
            list(session.execute(part.order_by(*_order_by(key, forward=True)).limit(offset + limit))) for part in scored
        ]
        merged = heapq.merge(*walks, key=lambda r: _sort_key(r, key))
        rows = list(itertools.islice(merged, offset, offset + limit))
    if len(rows) == limit:
        return rows
    # The scored part ends on this page: the unscored part starts where it stopped.
    n_scored = offset + len(rows) if rows else sum(_count(session, part, None) for part in scored)
    tail = _unscored(query).order_by(*_order_by(_ARRIVAL, forward=True))
    return rows + list(session.execute(tail.limit(limit - len(rows)).offset(max(0, offset - n_scored))))


def _count(session: Session, stmt: Select[*tuple[Any, ...]], limit: int | None) -> int:
    inner = (stmt if limit is None else stmt.limit(limit)).subquery()
    return int(session.scalars(select(func.count()).select_from(inner)).one())


def _is_scored(row: WorklistRow) -> bool:
    return row.score is not None and row.label is not None


def _step_scored(
    session: Session,
    scored: Select[*tuple[Any, ...]],
    key: Sequence[_KeyColumn],
    current: WorklistRow,
    *,
    forward: bool,
) -> Any | None:
    """The row of ``scored`` next to ``current`` in ``key`` order (None past the last or before the first).

    Tries the rows that share ``current``'s key up to its last column and differ there, then up
    to the column before, and so on: the first hit is the neighbour, and each try is one index range.
    """
    for i in reversed(range(len(key))):
        same = [k.column == literal(k.value(current)) for k in key[:i]]
        candidates = scored.where(*same, key[i].beyond(current, forward=forward))
        found = _first_row(session, candidates, key, forward=forward)
        if found is not None:
            return found
    return None


def _nearest(rows: Sequence[Any | None], key: Sequence[_KeyColumn], *, forward: bool) -> str | None:
    """The StudyInstanceUID of the first of ``rows`` in ``key`` order (the last when not ``forward``)."""
    found = [r for r in rows if r is not None]
    if not found:
        return None
    pick = min if forward else max
    return str(pick(found, key=lambda r: _sort_key(r, key)).study_uid)


def _sort_key(row: Any, key: Sequence[_KeyColumn]) -> tuple[Any, ...]:
    """``row``'s place in ``key`` order as a tuple that sorts ascending (a scored row: no NULLs)."""
    # Every key column is a bool, a float or an int: all order as floats.
    values = (float(cast(float, k.value(row))) for k in key)
    return tuple(-v if k.descending else v for k, v in zip(key, values, strict=True))


def _first_row(
    session: Session, stmt: Select[*tuple[Any, ...]], key: Sequence[_KeyColumn], *, forward: bool
) -> Any | None:
    """The first row of ``stmt`` in ``key`` order (backwards when not ``forward``)."""
    return session.execute(stmt.order_by(*_order_by(key, forward=forward)).limit(1)).first()


def _first_uid(
    session: Session,
    stmt: Select[*tuple[Any, ...]],
    key: Sequence[_KeyColumn],
    after_id: int | None,
    *,
    forward: bool,
) -> str | None:
    """The first study of ``stmt`` in ``key`` order (backwards when not ``forward``), past ``after_id``."""
    if after_id is not None:
        stmt = stmt.where(StudyRow.id > after_id if forward else StudyRow.id < after_id)
    found = _first_row(session, stmt, key, forward=forward)
    return None if found is None else str(found.study_uid)


def _filtered(stmt: Select[*tuple[Any, ...]], query: WorklistQuery) -> Select[*tuple[Any, ...]]:
    conditions: list[ColumnElement[bool]] = []
    if query.cohort is not Cohort.ANY:
        conditions.append(SiteRow.is_benchmark.is_(query.cohort is Cohort.BENCHMARK))
    if query.sites:
        conditions.append(SiteRow.name.in_(query.sites))
    if query.date_from is not None:
        conditions.append(StudyRow.study_date >= query.date_from)
    if query.date_to is not None:
        conditions.append(StudyRow.study_date <= query.date_to)
    band = _band_condition(query.band)
    if band is not None:
        conditions.append(band)
    status = _status_condition(query.status, query.reader_id)
    if status is not None:
        conditions.append(status)
    return stmt.where(*conditions) if conditions else stmt


def _band_condition(band: ScoreBand) -> ColumnElement[bool] | None:
    score, threshold = PredictionRow.score, PredictionRow.threshold
    return {
        ScoreBand.ANY: None,
        ScoreBand.POSITIVE: score >= threshold,
        ScoreBand.NEGATIVE: score < threshold,
        ScoreBand.BORDERLINE: func.abs(score - threshold) <= BORDERLINE_MARGIN,
        ScoreBand.UNSCORED: score.is_(None),
    }[band]


def _status_condition(status: ReviewStatus, reader_id: int) -> ColumnElement[bool] | None:
    anyone = exists().where(FeedbackRow.study_id == StudyRow.id)
    mine = exists().where(FeedbackRow.study_id == StudyRow.id, FeedbackRow.user_id == reader_id)
    return {
        ReviewStatus.ANY: None,
        ReviewStatus.NOT_REVIEWED_BY_ME: ~mine,
        ReviewStatus.REVIEWED_BY_ME: mine,
        ReviewStatus.UNREVIEWED: ~anyone,
    }[status]


def _readers(session: Session, study_ids: Sequence[int]) -> dict[int, tuple[int, datetime | None]]:
    """Distinct readers and the first feedback time on each of ``study_ids`` (one grouped query per page)."""
    if not study_ids:
        return {}
    stmt = (
        select(FeedbackRow.study_id, func.count(func.distinct(FeedbackRow.user_id)), func.min(FeedbackRow.created_at))
        .where(FeedbackRow.study_id.in_(study_ids))
        .group_by(FeedbackRow.study_id)
    )
    # min() keeps its argument's UTCDateTime type, so the first read comes back aware (UTC).
    return {int(study_id): (int(n), first) for study_id, n, first in session.execute(stmt)}


def _row(r: Any, readers: int, first_read_at: datetime | None) -> WorklistRow:
    return WorklistRow(
        study_id=r.study_id,
        study_uid=r.study_uid,
        accession_number=r.accession_number,
        site_name=r.site_name,
        study_date=r.study_date,
        vendor=r.vendor,
        view_position=r.view_position,
        prediction_id=r.prediction_id,
        score=r.score,
        label=r.label,
        threshold=r.threshold,
        fallback=r.fallback,
        readers=readers,
        reviewed_by_me=bool(r.reviewed_by_me),
        arrived_at=r.arrived_at,
        first_read_at=first_read_at,
    )


# --- reviewer accounts ----------------------------------------------------------------------------
# core.store.users has no update yet; this belongs there and should move when that module grows one.


# --- SYNTHETIC rows for benchmarks ---------------------------------------------------------------

#: Every synthetic study carries this institution name, so it can never pass for a real one.
SYNTHETIC_MARK: Final = "SYNTHETIC BENCHMARK STUDY"
_CHUNK: Final = 5000


def insert_synthetic_worklist(
    session: Session,
    *,
    n_studies: int,
    site_ids: Sequence[int],
    model_version_id: int,
    image_path: str,
    threshold: float,
    seed: int,
    now: datetime,
) -> int:
    """Bulk-insert ``n_studies`` SYNTHETIC studies, one instance and one prediction each.

    For UI benchmarks that need a 10k- or 100k-study database in seconds: SQLAlchemy Core
    ``INSERT`` in chunks, no audit entries, no DICOM ingest. Every instance points at the same
    ``image_path`` (a real file, so the viewer can open any of them); every study's
    ``institution_name`` is :data:`SYNTHETIC_MARK` and its UID starts with ``2.25.999``. Never
    use it on a database that holds real studies.

    Returns
    -------
    int
        The number of studies inserted.
    """
    rng = random.Random(seed)
    start = (session.scalars(select(func.max(StudyRow.id))).one() or 0) + 1
    first_instance = (session.scalars(select(func.max(InstanceRow.id))).one() or 0) + 1
    for lo in range(0, n_studies, _CHUNK):
        ids = range(start + lo, start + min(lo + _CHUNK, n_studies))
        studies = [_synthetic_study(i, site_ids[i % len(site_ids)], rng, now) for i in ids]
        instances = [_synthetic_instance(i, first_instance + i - start, image_path, now) for i in ids]
        scores = [rng.random() for _ in ids]
        preds = [
            _synthetic_prediction(first_instance + i - start, model_version_id, s, threshold, now)
            for i, s in zip(ids, scores, strict=True)
        ]
        session.execute(insert(StudyRow), studies)
        session.execute(insert(InstanceRow), instances)
        session.execute(insert(PredictionRow), preds)
    return n_studies


def _synthetic_study(i: int, site_id: int, rng: random.Random, now: datetime) -> dict[str, object]:
    return {
        "id": i,
        "study_uid": f"2.25.999{i}",
        "site_id": site_id,
        "patient_id": f"SYN{i:07d}",
        "accession_number": f"SYNACC{i:07d}",
        "study_date": date(2024, 1, 1) + timedelta(days=rng.randrange(366)),
        "modality": "DX",
        "body_part": "CHEST",
        "view_position": "PA",
        "manufacturer_raw": "SYNTHETIC",
        "vendor": "SYNTHETIC",
        "vendor_mapped": False,
        "manufacturer_model_name": "",
        "station_name": "",
        "institution_name": SYNTHETIC_MARK,
        "software_versions": "",
        "protocol_name": "",
        "patient_age": "",
        "patient_sex": "",
        "kvp": None,
        "created_at": now,
    }


def _synthetic_instance(study_id: int, instance_id: int, image_path: str, now: datetime) -> dict[str, object]:
    return {
        "id": instance_id,
        "study_id": study_id,
        "sop_instance_uid": f"2.25.999{study_id}.1",
        "series_uid": f"2.25.999{study_id}.0",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1",
        "path": image_path,
        "sha256": f"{study_id:064x}",
        "rows": 0,
        "columns": 0,
        "pixel_spacing_row": None,
        "pixel_spacing_col": None,
        "photometric": "MONOCHROME2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "created_at": now,
    }


def _synthetic_prediction(
    instance_id: int, model_version_id: int, score: float, threshold: float, now: datetime
) -> dict[str, object]:
    return {
        "instance_id": instance_id,
        "model_version_id": model_version_id,
        "input_sha256": None,
        "score": score,
        "label": score >= threshold,
        "threshold": threshold,
        "latency_ms": None,
        "device": "synthetic",
        "peak_memory_bytes": None,
        "fallback": None,
        "created_at": now,
    }
