"""The worklist pages and steps from the ``prediction`` indexes and still shows the same order.

``core.store.reviews`` used to sort every matching study on a computed key for each page; it now
walks ``ix_prediction_worklist_*`` (migration 0019) and stops after one page. These tests hold the
new queries to the order the old one defined, computed here in Python from every row, on stores
with tied scores, unscored studies, fallbacks and studies of two instances, on both databases.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, insert, select, update

from core.bench import store
from core.store import model_versions, reviews, users
from core.store.engine import SessionFactory
from core.store.reviews import Cohort, ReviewStatus, ScoreBand, WorklistOrder, WorklistQuery, WorklistRow
from core.store.tables import FeedbackRow, InstanceRow, PredictionRow, SiteRow, StudyRow
from tests.conftest import BACKENDS

#: About six studies share each of the ten distinct scores, so most pages of 7 end inside a tie;
#: each study stepped to is a query, so the walks grow with this.
ROWS = 64
NOW = datetime(2026, 12, 6, tzinfo=UTC)
FILTERS = [
    {},
    {"status": ReviewStatus.NOT_REVIEWED_BY_ME},
    {"band": ScoreBand.POSITIVE},
    {"band": ScoreBand.UNSCORED},
    {"sites": ("site-a",), "cohort": Cohort.LIVE},
    {"status": ReviewStatus.REVIEWED_BY_ME, "band": ScoreBand.BORDERLINE},
]
#: Stepping study by study is the slow part: walk the whole list under these filters only.
WALKED = [{}, {"status": ReviewStatus.NOT_REVIEWED_BY_ME}]


@pytest.fixture
def worklist_store(session_factory: SessionFactory, tmp_path: Path) -> SessionFactory:
    """A SYNTHETIC store made awkward: ties, unscored studies, fallbacks, second instances."""
    store.populate(session_factory, tmp_path, rows=ROWS, seed=3)
    rng = random.Random(7)
    with session_factory.begin() as s:
        preds = s.execute(select(PredictionRow.id, PredictionRow.score, PredictionRow.threshold)).all()
        for pid, score, threshold in preds:
            tied = round(score, 1)  # ten distinct scores: every page boundary falls inside a tie
            s.execute(update(PredictionRow).where(PredictionRow.id == pid).values(score=tied, label=tied >= threshold))
        read = set(s.scalars(select(FeedbackRow.prediction_id)))  # a read keeps its prediction
        picked = rng.sample([p.id for p in preds if p.id not in read], 20)
        s.execute(delete(PredictionRow).where(PredictionRow.id.in_(picked[:10])))  # never scored
        fallback = {"score": None, "label": None, "fallback": "outside the intended use"}
        s.execute(update(PredictionRow).where(PredictionRow.id.in_(picked[10:])).values(**fallback))
        _add_second_instances(s, rng)
    return session_factory


#: The two slow walks run on the embedded file and the server only: an in-memory SQLite runs the same SQL.
_WALK_BACKENDS = pytest.mark.parametrize("session_factory", BACKENDS, indirect=True)


@_WALK_BACKENDS
def test_pages_and_steps_follow_the_defined_order(worklist_store: SessionFactory) -> None:
    # One store per database, every order and filter over it (a store per case costs minutes).
    with worklist_store() as s:
        for order, filters in itertools.product(WorklistOrder, FILTERS):
            # Prepare
            query = _query(s, order=order, **filters)
            expected = _reference(s, query)

            # Execute
            offset, paged = 0, []
            while rows := reviews.worklist_rows(s, query, limit=7, offset=offset):
                paged += [r.study_uid for r in rows]
                offset += 7
            walk = filters in WALKED and expected
            forward = _walk(s, query, expected[0], forward=True) if walk else expected
            backward = _walk(s, query, expected[-1], forward=False) if walk else expected[::-1]

            # Assert
            case = f"{order} {filters}"
            assert paged == expected, case
            assert forward == expected, case
            assert backward == expected[::-1], case
            assert reviews.count_worklist(s, query) == len(expected), case
            assert reviews.count_worklist(s, query, cap=5) == min(len(expected), 6), case


#: Filters for the mixed-version store: none, the switched site alone, an unswitched site alone, both.
MIXED_FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ReviewStatus.NOT_REVIEWED_BY_ME},
    {"band": ScoreBand.POSITIVE},
    {"sites": ("site-a",)},
    {"sites": ("site-b",)},
    {"sites": ("site-a", "site-b"), "band": ScoreBand.BORDERLINE},
]


@_WALK_BACKENDS
def test_a_site_served_by_its_own_version_shows_it_and_every_view_pages_in_order(
    worklist_store: SessionFactory,
) -> None:
    # Prepare: site-a switched to a second version, which scored its studies differently and left some unscored
    with worklist_store.begin() as s:
        own = _second_version_at(s, "site-a", random.Random(11))
    with worklist_store() as s:
        fleet = _query(s, order=WorklistOrder.ARRIVAL).model_version_id
        own_predictions = set(s.scalars(select(PredictionRow.id).where(PredictionRow.model_version_id == own)))
        for order, filters in itertools.product(WorklistOrder, MIXED_FILTERS):
            query = _query(s, order=order, served=(("site-a", own),), **filters)
            expected = _mixed_reference(s, query, fleet=fleet)

            # Execute
            offset, paged = 0, []
            while rows := reviews.worklist_rows(s, query, limit=7, offset=offset):
                paged += rows
                offset += 7
            walk = filters in WALKED and expected
            forward = _walk(s, query, expected[0], forward=True) if walk else expected
            backward = _walk(s, query, expected[-1], forward=False) if walk else expected[::-1]

            # Assert: the order, the count, and each site's own version's predictions
            case = f"{order} {filters}"
            assert [r.study_uid for r in paged] == expected, case
            assert forward == expected, case
            assert backward == expected[::-1], case
            assert reviews.count_worklist(s, query) == len(expected), case
            assert reviews.count_worklist(s, query, cap=5) == min(len(expected), 6), case
            shown = [r for r in paged if r.prediction_id is not None]
            assert all((r.prediction_id in own_predictions) == (r.site_name == "site-a") for r in shown), case
            if not filters:  # the test cannot pass vacuously: site-a rows do show the second version
                assert any(r.site_name == "site-a" and r.prediction_id in own_predictions for r in paged), case


def _second_version_at(s: Any, site: str, rng: random.Random) -> int:
    """Register a SYNTHETIC second version; score ``site``'s first images with it (ties, a few left unscored)."""
    version = model_versions.register(
        s,
        version="synthetic-site-version",
        card={"version": "synthetic-site-version"},
        weights_sha256="0" * 64,
        now=NOW,
    ).id
    first = (
        select(func.min(InstanceRow.id))
        .join(StudyRow, StudyRow.id == InstanceRow.study_id)
        .join(SiteRow, SiteRow.id == StudyRow.site_id)
        .where(SiteRow.name == site)
        .group_by(InstanceRow.study_id)
    )
    instances = sorted(s.scalars(first))
    rows = []
    for instance_id in instances[5:]:  # the first five studies stay unscored by this version
        score = round(rng.random(), 1)
        rows.append(
            {
                "instance_id": instance_id,
                "model_version_id": version,
                "score": score,
                "label": score >= 0.5,
                "threshold": 0.5,
                "device": "synthetic",
                "created_at": NOW,
            }
        )
    s.execute(insert(PredictionRow), rows)
    return int(version)


def _mixed_reference(s: Any, query: WorklistQuery, *, fleet: int | None) -> list[str]:
    """The defined order over each site's studies read with its own version alone, sorted here in Python."""
    names = list(s.scalars(select(SiteRow.name)))
    served = dict(query.served)
    rows = []
    for name in names:
        if query.sites and name not in query.sites:
            continue
        alone = replace(query, model_version_id=served.get(name, fleet), sites=(name,), served=())
        rows += [reviews._row(r, 0, None) for r in s.execute(reviews._everything(alone))]
    return [r.study_uid for r in sorted(rows, key=_key(query.order))]


def test_a_study_that_left_the_list_still_has_the_right_neighbours(worklist_store: SessionFactory) -> None:
    # Prepare: every study, then the same list without one scored study in the middle
    with worklist_store() as s:
        query = _query(s, order=WorklistOrder.PRIORITY)
        everything = _reference(s, query)
        scored = [u for u in everything if reviews.worklist_row(s, query, u).score is not None]
        gone = scored[len(scored) // 2]
        i = everything.index(gone)

        # Execute: step from the study as if a filter had just dropped it
        current = reviews.worklist_row(s, query, gone)
        after = reviews.neighbour(s, query, current, forward=True)
        before = reviews.neighbour(s, query, current, forward=False)

    # Assert
    assert (before, after) == (everything[i - 1], everything[i + 1])


def test_the_first_page_walks_an_index_instead_of_sorting_every_study(tmp_path: Path) -> None:
    # Prepare: a SYNTHETIC SQLite store; catch the page's SQL
    sf, _ = store.build_store(tmp_path, rows=400)
    with sf() as s:
        query = _query(s, order=WorklistOrder.PRIORITY, status=ReviewStatus.NOT_REVIEWED_BY_ME)
        engine = s.get_bind()
        caught: list[tuple[str, Any]] = []

        def catch(_conn: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
            if "ORDER BY" in statement and not many:
                caught.append((statement, params))

        event.listen(engine, "before_cursor_execute", catch)
        try:
            # Execute
            reviews.worklist_rows(s, query, limit=25)
        finally:
            event.remove(engine, "before_cursor_execute", catch)

    # Assert: the page is read in index order; only ties on the score are sorted (by arrival)
    db = sqlite3.connect(tmp_path / "vigil.db")
    plan = "\n".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + caught[0][0], caught[0][1]))
    db.close()
    assert "ix_prediction_worklist_priority" in plan, plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_a_negative_cap_is_refused(worklist_store: SessionFactory) -> None:
    with worklist_store() as s, pytest.raises(ValueError, match="-1"):
        reviews.count_worklist(s, _query(s, order=WorklistOrder.PRIORITY), cap=-1)


def _query(s: Any, *, order: WorklistOrder, **filters: Any) -> WorklistQuery:
    serving = model_versions.serving(s)
    assert serving is not None
    reader = users.get_user(s, "bench-reader").id
    return WorklistQuery(model_version_id=serving.id, reader_id=reader, order=order, **filters)


def _reference(s: Any, query: WorklistQuery) -> list[str]:
    """Every selected study in the order the worklist defines, sorted here in Python."""
    rows = [reviews._row(r, 0, None) for r in s.execute(reviews._everything(query))]
    return [r.study_uid for r in sorted(rows, key=_key(query.order))]


def _key(order: WorklistOrder) -> Any:
    def scored(r: WorklistRow) -> bool:
        return r.score is not None and r.label is not None

    def key(r: WorklistRow) -> tuple[Any, ...]:
        # Scored before unscored; model-positive first (priority); highest score; then arrival.
        score = -r.score if scored(r) and r.score is not None else 0.0
        if order is WorklistOrder.ARRIVAL:
            return (r.study_id,)
        if order is WorklistOrder.SCORE:
            return (not scored(r), score, r.study_id)
        return (not scored(r), not (scored(r) and r.label), score, r.study_id)

    return key


def _walk(s: Any, query: WorklistQuery, start: str, *, forward: bool) -> list[str]:
    walked, uid = [start], start
    while (uid := reviews.neighbour(s, query, reviews.worklist_row(s, query, uid), forward=forward)) is not None:
        walked.append(uid)
    return walked


def _add_second_instances(s: Any, rng: random.Random) -> None:
    """A later image on some studies, scored high: the worklist shows the first image's score."""
    studies = s.execute(select(StudyRow.id, StudyRow.study_uid).order_by(StudyRow.id)).all()
    serving = model_versions.serving(s)
    assert serving is not None
    top = s.execute(select(func.max(InstanceRow.id))).scalar_one()
    for n, (study_id, uid) in enumerate(rng.sample(studies, 15), start=1):
        instance = {
            "id": top + n,
            "study_id": study_id,
            "sop_instance_uid": f"{uid}.2",
            "image_path": "SYNTHETIC-second.dcm",
        }
        s.execute(insert(InstanceRow), [_instance_row(s, instance)])
        s.execute(
            insert(PredictionRow),
            [
                {
                    "instance_id": top + n,
                    "model_version_id": serving.id,
                    "score": 0.99,
                    "label": True,
                    "threshold": 0.5,
                    "device": "synthetic",
                    "created_at": NOW,
                }
            ],
        )


def _instance_row(s: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of an existing instance row with ``values`` replaced (the table has many columns)."""
    first = s.execute(select(InstanceRow).limit(1)).scalar_one()
    row = {c.key: getattr(first, c.key) for c in InstanceRow.__table__.columns}
    row.update(values)
    return row
