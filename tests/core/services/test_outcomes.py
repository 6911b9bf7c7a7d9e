"""Labels for metrics: precedence of sources, the ground-truth loader, and the per-site summary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit.events import AuditAction
from core.errors import PathNotFoundError
from core.sampledata.manifest import ManifestRow, write_manifest
from core.services import outcomes as outcome_service
from core.services.outcomes import LabelSource, resolve_labels
from core.store import audit_log, outcomes, users
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.feedback import FeedbackIn, FeedbackRecord, add_feedback
from core.store.outcomes import OutcomeRecord, OutcomeSource
from core.store.tables import InstanceRow, StudyRow
from tests.conftest import NewDatabase
from tests.core.services.test_validation import SiteDesign, clock, seed_pilot_cohort

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _outcome(oid: int, study: int, source: OutcomeSource, label: bool, minutes: int = 0) -> OutcomeRecord:
    return OutcomeRecord(
        oid, study, f"1.2.{study}", "north", source, label, f"ref{oid}", "", "t", None, T0 + timedelta(minutes=minutes)
    )


def _feedback(fid: int, study: int, finding: str, *, superseded_by: int | None = None) -> FeedbackRecord:
    return FeedbackRecord(
        fid,
        study,
        f"1.2.{study}",
        1,
        "v1",
        0.5,
        0.5,
        fid,
        f"reader{fid}",
        "radiologist",
        True,
        finding,
        4,
        None,
        "",
        1000,
        None,
        superseded_by,
        f"k{fid}",
        T0,
    )


def test_adjudication_beats_every_other_source() -> None:
    # Prepare
    records = [
        _outcome(1, 7, OutcomeSource.EMR, False),
        _outcome(2, 7, OutcomeSource.ADJUDICATED, True),
        _outcome(3, 7, OutcomeSource.GROUND_TRUTH, False),
    ]

    # Execute
    result = resolve_labels(records, [_feedback(1, 7, "absent")])

    # Assert
    assert result.labels[7].label == 1 and result.labels[7].source is LabelSource.ADJUDICATED


def test_latest_adjudication_wins() -> None:
    # Execute
    result = resolve_labels(
        [_outcome(1, 7, OutcomeSource.ADJUDICATED, True, 0), _outcome(2, 7, OutcomeSource.ADJUDICATED, False, 5)], []
    )

    # Assert
    assert result.labels[7].label == 0


def test_conflicting_emr_falls_through_to_readers_and_is_counted() -> None:
    # Prepare
    records = [_outcome(1, 7, OutcomeSource.EMR, True), _outcome(2, 7, OutcomeSource.EMR, False)]

    # Execute
    result = resolve_labels(
        records, [_feedback(1, 7, "present"), _feedback(2, 7, "present"), _feedback(3, 7, "absent")]
    )

    # Assert
    assert result.labels[7].source is LabelSource.READER_FEEDBACK and result.labels[7].label == 1
    assert result.conflicts == {"emr": 1}


def test_split_readers_superseded_rows_and_indeterminate_settle_nothing() -> None:
    # Prepare
    fb = [
        _feedback(1, 7, "present"),
        _feedback(2, 7, "absent"),
        _feedback(3, 8, "present", superseded_by=4),
        _feedback(4, 8, "indeterminate"),
    ]

    # Execute
    result = resolve_labels([], fb)

    # Assert: unknown, never negative
    assert 7 not in result.labels and 8 not in result.labels
    assert result.conflicts == {"reader_feedback": 1}


@pytest.fixture
def store(backend: str, new_database: NewDatabase) -> SessionFactory:
    """A seeded pilot cohort on a SQLite file and on PostgreSQL (one contract, two backends)."""
    engine = make_engine(new_database(backend, migrated=True))
    migrate(engine)
    sf = make_session_factory(engine)
    seed_pilot_cohort(sf, design=(SiteDesign("benchmark", 6, 2.0, n_unlabelled=4),))
    return sf


def _stored_images(sf: SessionFactory) -> dict[str, tuple[str, str]]:
    """Study UID -> (SOP Instance UID, SHA-256) of its stored instance."""
    query = select(StudyRow.study_uid, InstanceRow.sop_instance_uid, InstanceRow.sha256).join(
        InstanceRow, InstanceRow.study_id == StudyRow.id
    )
    with sf() as session:
        return {study: (sop, sha) for study, sop, sha in session.execute(query).all()}


def _manifest_for(sf: SessionFactory, path: Path, extra_uid: str, *, edited: str | None = None) -> list[str]:
    """Label every stored study (and ``extra_uid``); ``edited`` names a study whose file hash is wrong."""
    images = _stored_images(sf)
    uids = sorted(images)
    template = ManifestRow(
        *[""] * 5,
        "benchmark",
        True,
        "test",
        "2025-01-01",
        0,
        "PA",
        "P",
        50,
        "F",
        "A",
        "GE",
        "M",
        "v1",
        "p",
        120.0,
        2.0,
        1.0,
        True,
        1.6,
        256,
        256,
        14,
        "MONOCHROME2",
        None,
        None,
        None,
        None,
        0,
        0,
        0,
        0,
    )  # type: ignore[arg-type]
    rows = []
    for i, uid in enumerate([*uids, extra_uid]):
        sop, sha = images.get(uid, ("9.9.9.1", "0" * 64))
        rows.append(
            replace(
                template,
                study_uid=uid,
                sop_instance_uid=sop,
                file_sha256=sha if uid != edited else "f" * 64,
                label=i % 2,
            )
        )
    write_manifest(rows, path)
    return uids


def test_ground_truth_loads_once_marked_as_such(store: SessionFactory, tmp_path: Path) -> None:
    # Prepare: the seed already labelled 6 studies from another manifest; this one covers all 10 and one more
    uids = _manifest_for(store, tmp_path / "manifest.csv", "9.9.9")

    # Execute
    first = outcome_service.load_ground_truth(store, tmp_path / "manifest.csv", actor="init", now=clock)
    again = outcome_service.load_ground_truth(store, tmp_path / "manifest.csv", actor="init", now=clock)

    # Assert
    assert (first.loaded, first.not_in_store, first.in_manifest) == (len(uids), 1, len(uids) + 1)
    assert (again.loaded, again.already_loaded) == (0, len(uids))
    with store() as session:
        stored = outcomes.list_outcomes(session, source=OutcomeSource.GROUND_TRUTH)
        entries = [e for e in audit_log.iter_entries(session) if e.action is AuditAction.GROUND_TRUTH_LOADED]
    assert sum(r.source_ref == f"manifest:{first.manifest_sha256}" for r in stored) == len(uids)
    assert len(entries) == 1 and entries[0].payload["source"] == "ground_truth"


def test_ground_truth_skips_a_study_whose_stored_image_is_not_the_manifests(
    store: SessionFactory, tmp_path: Path
) -> None:
    # Prepare: the manifest records other bytes for one stored study's file
    edited = sorted(_stored_images(store))[0]
    uids = _manifest_for(store, tmp_path / "manifest.csv", "9.9.9", edited=edited)

    # Execute
    result = outcome_service.load_ground_truth(store, tmp_path / "manifest.csv", actor="init", now=clock)

    # Assert: counted, not labelled; every other stored study labelled
    assert (result.loaded, result.different_image, result.not_in_store) == (len(uids) - 1, 1, 1)
    assert result.to_dict()["different_image"] == 1
    with store() as session:
        ref = f"manifest:{result.manifest_sha256}"
        labelled = {
            r.study_id
            for r in outcomes.list_outcomes(session, source=OutcomeSource.GROUND_TRUTH)
            if r.source_ref == ref
        }
        edited_id = outcomes.study_ids_by_uid(session, [edited])[edited]
    assert edited_id not in labelled and len(labelled) == len(uids) - 1


def test_missing_manifest_is_named(store: SessionFactory, tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(PathNotFoundError, match="nope.csv"):
        outcome_service.load_ground_truth(store, tmp_path / "nope.csv", actor="t", now=clock)


def test_summary_counts_unlabelled_as_unknown_and_names_sources(store: SessionFactory) -> None:
    # Prepare: a reader labels one of the unlabelled studies
    with store.begin() as session:
        user = users.add_user(session, username="rad", role="radiologist", password_hash="x", now=clock())
        unlabelled = sorted(set(outcomes.study_sites(session)) - {r.study_id for r in outcomes.list_outcomes(session)})
        from sqlalchemy import select

        from core.store.tables import InstanceRow, PredictionRow

        pred_id = session.scalars(
            select(PredictionRow.id)
            .join(InstanceRow, PredictionRow.instance_id == InstanceRow.id)
            .where(InstanceRow.study_id == unlabelled[0])
        ).one()
        add_feedback(
            session,
            FeedbackIn(unlabelled[0], pred_id, user.id, "radiologist", True, "present", 5, None, "", 1, None, "key-1"),
            now=clock(),
        )

    # Execute
    summary = outcome_service.label_summary(store)

    # Assert
    assert (summary.n_studies, summary.n_labelled, summary.n_unlabelled) == (10, 7, 3)
    assert summary.by_source == {"ground_truth": 6, "reader_feedback": 1}
    assert summary.per_site["benchmark"]["n_unlabelled"] == 3
