"""The worklist (filters, SQL paging, keyset next / previous) and the case services behind the viewer."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from core.errors import BadInputError, PermissionDeniedError, PixelsUnreadableError, UnknownSiteError, UnknownStudyError
from core.models.loading import LoadedModel
from core.services import explanation, feedback, review, worklist
from core.services import models as model_service
from core.services.explanation import ExplainMethod
from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, ReviewStatus, ScoreBand, WorklistFilter, WorklistOrder
from core.store import model_versions, reviews, sites
from core.store.engine import SessionFactory
from core.store.tables import InstanceRow, StudyRow
from tests.conftest import BACKENDS
from tests.core.services.installations import installation_on
from tests.ui.installation import Installation, clock

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
CHAMPION = SignedInUser("champion", Role.CHAMPION)
# Every study of both cohorts, in arrival order (the default is a live-only triage list).
EVERYTHING = WorklistFilter(status=ReviewStatus.ANY, order=WorklistOrder.ARRIVAL, cohort=Cohort.ANY)


@pytest.fixture(params=BACKENDS)
def inst(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Installation:
    """The installation, its store on a SQLite file and on PostgreSQL (one contract, two backends)."""
    return installation_on(request.param, request, tmp_path_factory, tmp_path)


@pytest.fixture
def sf(inst: Installation) -> SessionFactory:
    return inst.session_factory()


def _model(inst: Installation, calls: list[int]):  # type: ignore[no-untyped-def]
    def provide(version: str) -> tuple[LoadedModel, threading.Lock]:
        calls.append(1)
        return model_service.load_named(
            inst.session_factory(), version, models_dir=inst.home / "models"
        ), threading.Lock()

    return provide


def _all_uids(sf: SessionFactory, flt: WorklistFilter, page_size: int = 3) -> list[str]:
    first = worklist.worklist_page(sf, RADIOLOGIST, flt, page=0, page_size=page_size)
    out = [r.study_uid for r in first.items]
    for page in range(1, first.pages):
        out += [r.study_uid for r in worklist.worklist_page(sf, RADIOLOGIST, flt, page=page, page_size=page_size).items]
    return out


def _read(sf: SessionFactory, uid: str, user: SignedInUser = RADIOLOGIST) -> None:
    info = review.open_case(sf, user, uid)
    assert info.prediction is not None
    form = feedback.FeedbackForm(
        study_uid=uid,
        prediction_id=info.prediction.prediction_id,
        agrees=True,
        finding=feedback.Finding.ABSENT,
        confidence=3,
        explanation=None,
        comment="",
        time_on_case_s=5.0,
        idempotency_key=feedback.new_idempotency_key(),
    )
    feedback.record_feedback(sf, user, form, now=clock)


def _add_synthetic(sf: SessionFactory, n: int, *, serving: bool = True) -> None:
    with sf.begin() as session:
        mv = model_versions.serving(session)
        assert mv is not None
        if not serving:
            mv = model_versions.register(session, version="other", card={}, weights_sha256="0" * 64, now=clock())
        site_ids = [s.id for s in sites.list_sites(session)]
        path = session.scalars(select(InstanceRow.path).limit(1)).one()
        reviews.insert_synthetic_worklist(
            session, n_studies=n, site_ids=site_ids, model_version_id=mv.id,
            image_path=path, threshold=0.5, seed=1, now=clock(),
        )  # fmt: skip


# --- worklist -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CMIO, Role.ML_ENGINEER, Role.ADMIN, Role.AUDITOR])
def test_only_readers_may_open_the_worklist_or_a_case(sf: SessionFactory, role: Role) -> None:
    user = SignedInUser("someone", role)
    with pytest.raises(PermissionDeniedError):
        worklist.worklist_page(sf, user, EVERYTHING)
    with pytest.raises(PermissionDeniedError):
        review.open_case(sf, user, "1.2.3")
    with pytest.raises(PermissionDeniedError):
        review.load_case_image(sf, user, "1.2.3")


def test_pages_partition_the_worklist_in_arrival_order(sf: SessionFactory) -> None:
    # Prepare
    _add_synthetic(sf, 20)

    # Execute
    pages = [worklist.worklist_page(sf, RADIOLOGIST, EVERYTHING, page=p, page_size=7) for p in range(5)]

    # Assert
    assert [len(p.items) for p in pages] == [7, 7, 7, 7, 2]
    assert pages[0].total == 30 and pages[0].pages == 5
    uids = _all_uids(sf, EVERYTHING, page_size=7)
    assert len(uids) == len(set(uids)) == 30
    ids = [r.study_id for p in pages for r in p.items]
    assert ids == sorted(ids)
    assert worklist.worklist_page(sf, RADIOLOGIST, EVERYTHING, page=99, page_size=7).page == 4  # clamped


def test_score_bands_split_the_worklist(sf: SessionFactory) -> None:
    # Prepare: 5 studies scored only by a model that is not serving
    _add_synthetic(sf, 5, serving=False)

    def total(band: ScoreBand) -> int:
        return worklist.worklist_page(sf, RADIOLOGIST, replace(EVERYTHING, band=band)).total

    # Assert
    assert total(ScoreBand.POSITIVE) + total(ScoreBand.NEGATIVE) + total(ScoreBand.UNSCORED) == total(ScoreBand.ANY)
    assert total(ScoreBand.UNSCORED) == 5
    borderline = worklist.worklist_page(sf, RADIOLOGIST, replace(EVERYTHING, band=ScoreBand.BORDERLINE))
    assert all(abs(r.score - r.threshold) <= 0.1 for r in borderline.items if r.score is not None and r.threshold)


def test_site_and_date_filters(sf: SessionFactory) -> None:
    page = worklist.worklist_page(sf, RADIOLOGIST, replace(EVERYTHING, sites=("harbor",)))
    assert page.total == 2 and {r.site_name for r in page.items} == {"harbor"}
    dates = sorted(r.study_date for r in worklist.worklist_page(sf, RADIOLOGIST, EVERYTHING).items if r.study_date)
    windowed = worklist.worklist_page(sf, RADIOLOGIST, replace(EVERYTHING, date_from=dates[2], date_to=dates[5]))
    assert all(dates[2] <= r.study_date <= dates[5] for r in windowed.items if r.study_date)
    assert windowed.total >= 4
    with pytest.raises(UnknownSiteError):
        worklist.worklist_page(sf, RADIOLOGIST, replace(EVERYTHING, sites=("nowhere",)))
    with pytest.raises(BadInputError, match="date range is empty"):
        worklist.worklist_page(
            sf, RADIOLOGIST, replace(EVERYTHING, date_from=date(2025, 1, 2), date_to=date(2025, 1, 1))
        )
    with pytest.raises(BadInputError, match="page size"):
        worklist.worklist_page(sf, RADIOLOGIST, EVERYTHING, page_size=1000)


def test_review_status_follows_recorded_feedback(sf: SessionFactory) -> None:
    # Prepare
    uid = _all_uids(sf, EVERYTHING)[0]

    # Execute
    _read(sf, uid)

    # Assert
    def uids(status: ReviewStatus, user: SignedInUser = RADIOLOGIST) -> set[str]:
        flt = replace(EVERYTHING, status=status)
        return {r.study_uid for r in worklist.worklist_page(sf, user, flt, page_size=100).items}

    assert uids(ReviewStatus.REVIEWED_BY_ME) == {uid}
    assert uid not in uids(ReviewStatus.NOT_REVIEWED_BY_ME)
    assert uid not in uids(ReviewStatus.UNREVIEWED, CHAMPION)
    assert uid in uids(ReviewStatus.NOT_REVIEWED_BY_ME, CHAMPION)
    row = next(r for r in worklist.worklist_page(sf, CHAMPION, EVERYTHING).items if r.study_uid == uid)
    assert (row.readers, row.reviewed_by_me) == (1, False)


@pytest.mark.parametrize("order", list(WorklistOrder))
def test_next_and_previous_walk_the_same_order_as_the_pages(sf: SessionFactory, order: WorklistOrder) -> None:
    # Prepare
    flt = replace(EVERYTHING, order=order)
    expected = _all_uids(sf, flt)

    # Execute
    walked, uid = [expected[0]], expected[0]
    while (uid := worklist.neighbours(sf, RADIOLOGIST, flt, uid).next) is not None:
        walked.append(uid)
    back = worklist.neighbours(sf, RADIOLOGIST, flt, expected[-1])

    # Assert
    assert walked == expected
    assert back.previous == expected[-2] and back.next is None
    assert worklist.neighbours(sf, RADIOLOGIST, flt, expected[0]).previous is None
    if order is WorklistOrder.SCORE:
        scores = [r.score for r in worklist.worklist_page(sf, RADIOLOGIST, flt, page_size=100).items]
        assert scores == sorted(scores, reverse=True)


def test_next_still_works_after_the_current_study_leaves_the_list(sf: SessionFactory) -> None:
    # Prepare: the default list is "not yet read by me"
    flt = WorklistFilter()
    first, second, third = _all_uids(sf, flt)[:3]

    # Execute
    _read(sf, second)
    nav = worklist.neighbours(sf, RADIOLOGIST, flt, second)

    # Assert
    assert (nav.previous, nav.next) == (first, third)


def test_the_data_version_moves_with_every_kind_of_change(sf: SessionFactory) -> None:
    before = worklist.data_version(sf)
    _read(sf, _all_uids(sf, EVERYTHING)[0])
    after_feedback = worklist.data_version(sf)
    _add_synthetic(sf, 1)
    assert len({before, after_feedback, worklist.data_version(sf)}) == 3


# --- the case -------------------------------------------------------------------------------------


def test_open_case_gives_the_prediction_card_essentials_and_metadata(sf: SessionFactory) -> None:
    uid = _all_uids(sf, EVERYTHING)[0]
    info = review.open_case(sf, RADIOLOGIST, uid)
    assert info.prediction is not None and info.prediction.score is not None
    assert info.card is not None and info.card.synthetic and info.card.operating_threshold == 0.5
    assert info.study.site and info.study.vendor and info.study.study_uid == uid
    with pytest.raises(UnknownStudyError):
        review.open_case(sf, RADIOLOGIST, "1.2.3.4")


def test_the_image_opens_at_the_files_own_window(sf: SessionFactory) -> None:
    image = review.load_case_image(sf, RADIOLOGIST, _all_uids(sf, EVERYTHING)[0])
    assert image.default.name == "File default"
    assert [p.name for p in image.presets][1:] == [
        "Full range",
        "Lung (dark detail)",
        "Mediastinum / bone (bright detail)",
    ]
    assert image.value_range[0] < image.default.center < image.value_range[1]
    assert not image.pixels.flags.writeable


@pytest.mark.filterwarnings("ignore:Expected implicit VR")
@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_unreadable_pixels_raise_a_typed_error(sf: SessionFactory, inst: Installation, damage: str) -> None:
    # Prepare
    uid = _all_uids(sf, EVERYTHING)[0]
    bad = inst.home / "bad.dcm"
    if damage == "garbage":
        bad.write_bytes(b"DICM" * 100)
    with sf.begin() as session:
        study_id = session.scalars(select(StudyRow.id).where(StudyRow.study_uid == uid)).one()
        session.execute(update(InstanceRow).where(InstanceRow.study_id == study_id).values(path=str(bad)))

    # Execute / Assert
    with pytest.raises(PixelsUnreadableError, match=uid):
        review.load_case_image(sf, RADIOLOGIST, uid)
    assert review.open_case(sf, RADIOLOGIST, uid).study.study_uid == uid  # the rest of the case still loads


def test_a_tampered_artifact_is_not_shown_but_recomputed(sf: SessionFactory, inst: Installation) -> None:
    # Prepare
    uid = _all_uids(sf, EVERYTHING)[0]
    calls: list[int] = []

    def case() -> explanation.StoredExplanation:
        return explanation.explain_case(
            sf,
            RADIOLOGIST,
            uid,
            method=ExplainMethod.GRADCAM,
            model=_model(inst, calls),
            artifacts_dir=inst.settings.artifacts_dir,
            now=clock,
        )

    first = case()  # the map `vigil init` stored with the score: loaded, nothing computed
    with np.load(first.artifact_path) as stored:
        np.savez_compressed(first.artifact_path, heatmap=np.zeros_like(stored["heatmap"]))

    # Execute
    again = case()

    # Assert: recomputed with the model, the same map within two float16 steps (batches round apart)
    assert calls == [1] and first.reused and not again.reused
    np.testing.assert_allclose(again.heatmap, first.heatmap, rtol=0, atol=2 * 2.0**-11)
