"""Every reader follows the version serving each study's site (per-site deployment, end to end).

On a small installation (the random test model, two studies per site): a challenger with a
passing gate is promoted at two sites only and the pending studies are scored. For a study at a
switched site and one at a site left alone, the worklist, the case review, the explanation and
the feedback each show the version serving that study's site; a rollback at one site returns it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from core.audit.events import AuditAction, AuditEntry
from core.errors import BadInputError
from core.models.loading import LoadedModel
from core.services import (
    adjudication,
    auth,
    deployment,
    explanation,
    feedback,
    models,
    monitoring,
    prediction,
    result_report,
    review,
    worklist,
)
from core.services.feedback import Finding
from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, ReviewStatus, WorklistFilter
from core.store import audit_log, model_versions, predictions, sites, studies
from core.store.engine import SessionFactory
from tests.ui.installation import TEST_MODEL_VERSION, Installation, clock, copy_installation
from tests.ui.installation import shared_template as _template
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
SIGNER, PASSWORD = "dr.mio", "a long enough signer password"
EVERY_STUDY = WorklistFilter(status=ReviewStatus.ANY, cohort=Cohort.ANY)


@pytest.fixture
def inst(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Installation]:
    """The challenger promoted at two sites only (per-site deployment on by default), everything scored."""
    installation = copy_installation(_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(installation)
    sf = installation.session_factory()
    auth.add_user(sf, SIGNER, "cmio", PASSWORD, actor="t", now=clock, full_name="Dr Carla Mio")
    deployment.promote(
        sf,
        CHALLENGER,
        signer=SIGNER,
        password=PASSWORD,
        models_dir=installation.home / "models",
        actor=SIGNER,
        now=clock,
        sites=_live_sites(sf)[:2],
    )
    prediction.predict_serving(sf, _loader(installation), site=None, batch_size=4, actor="t", now=clock)
    yield installation


def _live_sites(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return [s.name for s in sites.list_sites(session) if not s.is_benchmark]


def _loader(inst: Installation):  # type: ignore[no-untyped-def]
    return lambda version: models.load_named(inst.session_factory(), version, models_dir=inst.home / "models")


def _provider(inst: Installation, asked: list[str]):  # type: ignore[no-untyped-def]
    def provide(version: str) -> tuple[LoadedModel, threading.Lock]:
        asked.append(version)
        return _loader(inst)(version), threading.Lock()

    return provide


def _study_at(sf: SessionFactory, site: str) -> str:
    with sf() as session:
        return studies.list_studies(session, site=site, limit=1)[0].study_uid


def _version_of_prediction(sf: SessionFactory, prediction_id: int | None) -> str | None:
    with sf() as session:
        by_id = {p.id: p.model_version_id for p in predictions.list_predictions(session)}
        return None if prediction_id is None else model_versions.get_by_id(session, by_id[prediction_id]).version


def _form(uid: str, prediction_id: int) -> feedback.FeedbackForm:
    return feedback.FeedbackForm(
        study_uid=uid,
        prediction_id=prediction_id,
        agrees=True,
        finding=Finding.ABSENT,
        confidence=4,
        explanation=None,
        comment="",
        time_on_case_s=12.0,
        idempotency_key=feedback.new_idempotency_key(),
    )


def _what_readers_see(inst: Installation, uid: str) -> dict[str, str | None]:
    """The version each reader shows for ``uid``: worklist row, case review, explanation, feedback row."""
    sf = inst.session_factory()
    rows = worklist.worklist_page(sf, RADIOLOGIST, EVERY_STUDY, page_size=100).items
    row = next(r for r in rows if r.study_uid == uid)
    case = review.open_case(sf, RADIOLOGIST, uid)
    assert case.prediction is not None
    asked: list[str] = []
    shown = explanation.explain_case(
        sf,
        RADIOLOGIST,
        uid,
        method="gradcam",
        model=_provider(inst, asked),
        artifacts_dir=inst.settings.artifacts_dir,
        now=clock,
    )
    saved = feedback.record_feedback(sf, RADIOLOGIST, _form(uid, case.prediction.prediction_id), now=clock)
    assert asked in ([], [shown.model_version])  # the provider loads the version it is asked for
    return {
        "worklist": _version_of_prediction(sf, row.prediction_id),
        "case": case.prediction.model_version,
        "explanation": shown.model_version,
        "feedback": saved.record.model_version,
    }


def test_each_reader_shows_the_version_serving_the_study_site(inst: Installation) -> None:
    # Prepare
    sf = inst.session_factory()
    switched, _, unswitched, *_ = _live_sites(sf)
    at_switched, at_unswitched = _study_at(sf, switched), _study_at(sf, unswitched)

    # Execute
    seen_switched = _what_readers_see(inst, at_switched)
    seen_unswitched = _what_readers_see(inst, at_unswitched)

    # Assert
    assert seen_switched == dict.fromkeys(seen_switched, CHALLENGER)
    assert seen_unswitched == dict.fromkeys(seen_unswitched, TEST_MODEL_VERSION)


def test_feedback_on_a_version_the_site_does_not_serve_is_refused_naming_it(inst: Installation) -> None:
    # Prepare: the fleet version's own prediction of a study at a switched site (made before the switch)
    sf = inst.session_factory()
    site = _live_sites(sf)[0]
    uid = _study_at(sf, site)
    with sf() as session:
        fleet_id = model_versions.get_by_version(session, TEST_MODEL_VERSION).id
        first = studies.list_instances(session, uid)[0]
        stale = predictions.prediction_for(session, first.id, fleet_id)
    assert stale is not None

    # Execute / Assert
    with pytest.raises(BadInputError, match=rf"{CHALLENGER}, the version serving site '{site}'"):
        feedback.record_feedback(sf, RADIOLOGIST, _form(uid, stale.id), now=clock)
    assert feedback.feedback_history(sf, RADIOLOGIST, uid) == []


def test_the_worklist_of_one_site_uses_its_version_and_the_whole_list_names_both(inst: Installation) -> None:
    # Prepare
    sf = inst.session_factory()
    switched, _, unswitched, *_ = _live_sites(sf)

    # Execute
    of_switched = worklist.worklist_page(sf, RADIOLOGIST, WorklistFilter(sites=(switched,), status=ReviewStatus.ANY))
    of_unswitched = worklist.worklist_page(
        sf, RADIOLOGIST, WorklistFilter(sites=(unswitched,), status=ReviewStatus.ANY)
    )
    everything = worklist.worklist_page(sf, RADIOLOGIST, EVERY_STUDY, page_size=100)

    # Assert: a site's list shows its version alone; the whole list names each version and its sites
    assert of_switched.model_version == CHALLENGER and of_unswitched.model_version == TEST_MODEL_VERSION
    assert everything.model_version == f"{TEST_MODEL_VERSION}; {CHALLENGER} at {', '.join(_live_sites(sf)[:2])}"
    versions = {r.site_name: _version_of_prediction(sf, r.prediction_id) for r in everything.items}
    assert {versions[s] for s in _live_sites(sf)[:2]} == {CHALLENGER}
    assert versions[unswitched] == TEST_MODEL_VERSION


def test_a_rollback_at_one_site_returns_its_readers_to_the_version_before(inst: Installation) -> None:
    # Prepare
    sf = inst.session_factory()
    first, second, *_ = _live_sites(sf)

    # Execute
    deployment.rollback(
        sf, reason="undo at one site", models_dir=inst.home / "models", actor=SIGNER, now=clock, site=first
    )

    # Assert: the site rolled back shows the fleet version again; the other switched site keeps the challenger
    back = review.open_case(sf, RADIOLOGIST, _study_at(sf, first)).prediction
    kept = review.open_case(sf, RADIOLOGIST, _study_at(sf, second)).prediction
    assert back is not None and back.model_version == TEST_MODEL_VERSION
    assert kept is not None and kept.model_version == CHALLENGER
    seen = _what_readers_see(inst, _study_at(sf, first))
    assert seen == dict.fromkeys(seen, TEST_MODEL_VERSION)


def test_adjudication_result_reports_and_monitoring_follow_each_site(inst: Installation, tmp_path: Path) -> None:
    # Prepare
    sf = inst.session_factory()
    switched, _, unswitched, *_ = _live_sites(sf)
    champion = SignedInUser("champion", Role.CHAMPION)
    uids = {switched: _study_at(sf, switched), unswitched: _study_at(sf, unswitched)}

    # Execute
    files = {site: adjudication.case_file(sf, champion, uid) for site, uid in uids.items()}
    reports = {site: result_report.export_result_sr(sf, uid, out_dir=tmp_path / site) for site, uid in uids.items()}
    view = monitoring.compute_monitoring(sf)
    queue = {item.study_uid: item for item in adjudication.adjudication_queue(sf, champion, now=clock)}

    # Assert: each names the version serving the study's site, and scores come from it
    assert (files[switched].model_version, files[unswitched].model_version) == (CHALLENGER, TEST_MODEL_VERSION)
    for site, exported in reports.items():
        assert f"model {files[site].model_version}" in str(pydicom.dcmread(exported.path).SeriesDescription)
    monitored = {s.site: s.model_version for s in view.sites}
    assert monitored == {site: CHALLENGER if site in _live_sites(sf)[:2] else TEST_MODEL_VERSION for site in monitored}
    assert view.model_version == TEST_MODEL_VERSION  # the fleet-wide version, as before
    for site, uid in uids.items():
        if uid in queue:  # queued when scored and not settled; its score is the site's version's
            assert queue[uid].score == files[site].score


def _benchmark(sf: SessionFactory) -> str:
    with sf() as session:
        return next(s.name for s in sites.list_sites(session) if s.is_benchmark)


def _reference_entries(sf: SessionFactory) -> list[AuditEntry]:
    with sf() as session:
        return [e for e in audit_log.iter_entries(session) if e.payload.get("reference") is True]


def test_a_version_serving_some_sites_scores_the_benchmark_as_their_reference(inst: Installation) -> None:
    # Prepare: the fixture's `predict_serving(site=None)` after the promotion at two sites
    sf = inst.session_factory()
    bench, switched = _benchmark(sf), _live_sites(sf)[0]
    with sf() as session:
        n_bench = studies.count_studies(session, site=bench)

    # Execute
    view = monitoring.compute_monitoring(sf, site=switched)
    seen = _what_readers_see(inst, _study_at(sf, bench))

    # Assert: every benchmark study scored by the challenger, audited as the reference
    entries = _reference_entries(sf)
    assert len(entries) == n_bench > 0
    assert {(e.action, e.payload["model_version"]) for e in entries} == {(AuditAction.PREDICTION_MADE, CHALLENGER)}
    # Assert: the switched site's score streams now have the challenger's benchmark as reference
    (site_view,) = view.sites
    assert site_view.model_version == CHALLENGER
    assert f"has {n_bench}" in site_view.missing.get("score_psi", f"has {n_bench}")  # few studies here: named
    # Assert: readers of the benchmark still see the version serving it
    assert set(seen.values()) == {TEST_MODEL_VERSION}


def test_a_monitoring_run_gives_a_newly_switched_sites_version_its_reference(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # Prepare: the challenger promoted at one site; only that site scored (as a PACS pull does)
    installation = copy_installation(_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(installation)
    sf = installation.session_factory()
    auth.add_user(sf, SIGNER, "cmio", PASSWORD, actor="t", now=clock, full_name="Dr Carla Mio")
    site = _live_sites(sf)[0]
    deployment.promote(
        sf, CHALLENGER, signer=SIGNER, password=PASSWORD, models_dir=installation.home / "models",
        actor=SIGNER, now=clock, sites=[site],
    )  # fmt: skip
    prediction.predict_serving(sf, _loader(installation), site=site, batch_size=4, actor="t", now=clock)
    before = _reference_entries(sf)

    # Execute: "Run monitors now" for that site
    run = monitoring.run_monitoring(sf, model=None, by="system", now=clock, site=site, load=_provider(installation, []))

    # Assert: the benchmark scored by the challenger, and its features cached with the site's
    with sf() as session:
        n_bench = studies.count_studies(session, site=_benchmark(sf))
    assert before == [] and len(_reference_entries(sf)) == n_bench > 0
    assert run.features_computed >= n_bench
    (site_view,) = run.view.sites
    assert "has 0" not in site_view.missing.get("score_psi", "")
