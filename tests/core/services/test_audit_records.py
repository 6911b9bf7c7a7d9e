"""Cross-checking the records against the hashes their audit entries recorded, on a real installation.

Tampering acts in the tables beside the ledger (raw SQL, as a database user would); the ledger
itself is untouched, so the hash chain still verifies and only the cross-check can tell.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.audit.events import AuditAction
from core.audit.records import BULK_HASH_KEY, RECORD_HASH_KEY, RecordKind
from core.cli import main
from core.explain.result import ExplainMethod
from core.services import explanation, fhir_ingest, models, review, worklist
from core.services.adjudication import record_adjudication
from core.services.audit import verify_ledger
from core.services.audit_records import crosscheck_records
from core.services.feedback import FeedbackForm, Finding, new_idempotency_key, record_feedback
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine
from tests.core.services.test_fhir_ingest import _bundle, _imaging_study, _patient, _report
from tests.ui.installation import Installation, clock, copy_installation, shared_template

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
CHAMPION = SignedInUser("champion", Role.CHAMPION)


@dataclass(frozen=True)
class Store:
    """An installation with one row of every cross-checked kind written through its service."""

    sf: SessionFactory
    engine: Engine
    ids: dict[str, int]  # "prediction", "explanation", "feedback", "adjudicated", "ground_truth", "emr"
    env: dict[str, str]  # VIGIL_HOME and VIGIL_DATABASE_URL, for the command line

    def sql(self, statement: str, **params: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def seq_recording(self, kind: RecordKind, row_id: int) -> int:
        with self.sf() as session:
            for entry in audit_log.iter_entries(session):
                bulk = entry.payload.get(BULK_HASH_KEY)
                if isinstance(bulk, dict) and kind is RecordKind.OUTCOME and str(row_id) in bulk:
                    return entry.seq
                if RECORD_HASH_KEY in entry.payload and entry.payload.get(f"{kind}_id") == row_id:
                    return entry.seq
        raise AssertionError(f"no entry records {kind} {row_id}")


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Store]:
    inst: Installation = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    sf = inst.session_factory()
    uid = worklist.worklist_page(sf, RADIOLOGIST, worklist.WorklistFilter()).items[0].study_uid
    case = review.open_case(sf, RADIOLOGIST, uid)
    assert case.prediction is not None
    form = FeedbackForm(
        study_uid=uid,
        prediction_id=case.prediction.prediction_id,
        agrees=False,
        finding=Finding.PRESENT,
        confidence=4,
        explanation=None,
        comment="a comment",
        time_on_case_s=30.0,
        idempotency_key=new_idempotency_key(),
    )
    fb = record_feedback(sf, RADIOLOGIST, form, now=clock).record
    adjudicated = record_adjudication(sf, CHAMPION, uid, label=True, reason="nodule on CT", now=clock)
    model = models.load_serving(sf, models_dir=inst.home / "models")
    expl = explanation.explain_study(
        sf,
        model,
        uid,
        method=ExplainMethod.GRADCAM,
        artifacts_dir=inst.settings.artifacts_dir,
        lock=None,
        actor="t",
        now=clock,
    )
    bundle = _bundle(
        [
            _patient("p1", "MRN-1"),
            _imaging_study("ct1", "p1", uid),
            _report("ct1", pid="p1", code="24627-2", conclusion="10828004", day="2024-03-10", uid=uid),
        ]
    )
    emr = fhir_ingest.ingest_payload(sf, bundle, name="ct.json", secret=b"s" * 32, actor="t", now=clock)
    assert emr.outcomes == 1
    engine = make_engine(inst.database_url)
    with engine.connect() as conn:
        first = {
            source: conn.execute(text("SELECT min(id) FROM outcome WHERE source = :s"), {"s": source}).scalar_one()
            for source in ("ground_truth", "emr")
        }
    ids = {
        "prediction": case.prediction.prediction_id,
        "explanation": expl.explanation_id,
        "feedback": fb.id,
        "adjudicated": adjudicated.id,
        **first,
    }
    yield Store(sf, engine, ids, inst.env)
    engine.dispose()


def test_an_intact_installation_cross_checks_every_record(store: Store) -> None:
    # Prepare: the fixture wrote every kind through its service

    # Execute
    check = crosscheck_records(store.sf)

    # Assert
    assert check.ok and check.problems == 0 and check.first_problem is None
    assert all(check.checked[str(kind)] > 0 for kind in RecordKind)
    assert set(check.unverifiable.values()) == {0}, "vigil init writes no row without its hash"


@pytest.mark.parametrize(
    ("key", "kind", "statement", "named"),
    [
        (
            "prediction",
            RecordKind.PREDICTION,
            "UPDATE prediction SET score = 0.01 WHERE id = :id",
            "score",
        ),
        (
            "prediction",
            RecordKind.PREDICTION,
            "UPDATE prediction SET label = NOT label WHERE id = :id",
            "label",
        ),
        (
            "explanation",
            RecordKind.EXPLANATION,
            "UPDATE explanation SET artifact_sha256 = 'ab' || substr(artifact_sha256, 3) WHERE id = :id",
            "artifact_sha256",
        ),
        (
            "explanation",
            RecordKind.EXPLANATION,
            "UPDATE explanation SET params_json = '{}' WHERE id = :id",
            None,
        ),
        (
            "feedback",
            RecordKind.FEEDBACK,
            "UPDATE clinician_feedback SET comment = 'rewritten' WHERE id = :id",
            None,
        ),
        (
            "feedback",
            RecordKind.FEEDBACK,
            "UPDATE clinician_feedback SET agrees = NOT agrees WHERE id = :id",
            "agrees",
        ),
        ("adjudicated", RecordKind.OUTCOME, "UPDATE outcome SET label = NOT label WHERE id = :id", "label"),
        ("ground_truth", RecordKind.OUTCOME, "UPDATE outcome SET label = NOT label WHERE id = :id", None),
        ("emr", RecordKind.OUTCOME, "UPDATE outcome SET label = NOT label WHERE id = :id", None),
    ],
)
def test_an_edited_row_is_named_with_its_entry(
    store: Store, key: str, kind: RecordKind, statement: str, named: str | None
) -> None:
    # Prepare
    row_id = store.ids[key]
    seq = store.seq_recording(kind, row_id)

    # Execute
    store.sql(statement, id=row_id)
    check = crosscheck_records(store.sf)

    # Assert
    assert verify_ledger(store.sf).ok, "the ledger itself is untouched"
    assert not check.ok and check.problems == 1 and check.first_problem is not None
    problem = check.first_problem
    assert (problem.kind, problem.row_id, problem.seq) == (kind, row_id, seq)
    assert problem.reason.startswith(f"{kind} {row_id}: its row no longer matches the hash audit entry seq {seq}")
    if named is not None:
        assert f"({named} changed)" in problem.reason


def test_a_deleted_row_is_named_with_the_entry_that_recorded_it(store: Store) -> None:
    # Prepare
    row_id = store.ids["emr"]
    seq = store.seq_recording(RecordKind.OUTCOME, row_id)

    # Execute
    store.sql("DELETE FROM outcome WHERE id = :id", id=row_id)
    check = crosscheck_records(store.sf)

    # Assert
    assert not check.ok and check.first_problem is not None
    assert check.first_problem.reason == f"outcome {row_id}: audit entry seq {seq} recorded it, but the row is gone"


def test_a_row_inserted_behind_vigils_back_is_named(store: Store) -> None:
    # Prepare
    row_id = store.ids["adjudicated"]

    # Execute: a copy of a label under a fresh reference, with no audit entry
    store.sql(
        "INSERT INTO outcome (study_id, source, label, source_ref, detail, recorded_by, effective_at, created_at) "
        "SELECT study_id, source, NOT label, 'adjudication:forged', detail, recorded_by, effective_at, created_at "
        "FROM outcome WHERE id = :id",
        id=row_id,
    )
    check = crosscheck_records(store.sf)

    # Assert
    assert not check.ok and check.first_problem is not None
    assert check.first_problem.seq is None and check.first_problem.row_id > row_id
    assert "no audit entry records this row's hash" in check.first_problem.reason


def test_rows_audited_before_record_hashes_are_counted_not_verified(store: Store) -> None:
    # Prepare: a prediction and a ground-truth label as an older Vigil wrote them (entries without hashes)
    store.sql(
        "INSERT INTO model_version (version, card_json, weights_sha256, is_serving, created_at) "
        "SELECT 'legacy', card_json, weights_sha256, 0, created_at FROM model_version LIMIT 1"
    )
    store.sql(
        "INSERT INTO prediction (instance_id, model_version_id, input_sha256, score, label, threshold, latency_ms, "
        "device, peak_memory_bytes, fallback, created_at) SELECT p.instance_id, m.id, NULL, NULL, NULL, "
        "p.threshold, NULL, 'none', NULL, 'legacy', p.created_at FROM prediction p, model_version m "
        "WHERE p.id = :id AND m.version = 'legacy'",
        id=store.ids["prediction"],
    )
    store.sql(
        "INSERT INTO outcome (study_id, source, label, source_ref, detail, recorded_by, effective_at, created_at) "
        "SELECT study_id, 'ground_truth', label, 'manifest:legacy', detail, recorded_by, effective_at, created_at "
        "FROM outcome WHERE id = :id",
        id=store.ids["ground_truth"],
    )
    with store.engine.connect() as conn:
        legacy_prediction = conn.execute(text("SELECT max(id) FROM prediction")).scalar_one()
    with store.sf.begin() as session:
        for action, payload in (
            (AuditAction.PREDICTION_SKIPPED, {"prediction_id": legacy_prediction, "fallback": "legacy"}),
            (AuditAction.GROUND_TRUTH_LOADED, {"loaded": 1, "source": "ground_truth"}),
        ):
            audit_log.append(
                session, actor="t", action=action, subject="legacy", payload=payload, recorded_at=clock().isoformat()
            )

    # Execute
    check = crosscheck_records(store.sf)

    # Assert
    assert check.ok, check.first_problem
    assert (check.unverifiable["prediction"], check.unverifiable["outcome"]) == (1, 1)
    assert sum(check.unverifiable.values()) == 2


def test_a_bulk_entry_without_hashes_vouches_for_no_more_rows_than_it_counted(store: Store) -> None:
    # Prepare: an old ground-truth entry that counted one row, and two rows without hashes
    for ref in ("manifest:legacy-1", "manifest:legacy-2"):
        store.sql(
            "INSERT INTO outcome (study_id, source, label, source_ref, detail, recorded_by, effective_at, created_at) "
            "SELECT study_id, source, label, :ref, detail, recorded_by, effective_at, created_at "
            "FROM outcome WHERE id = :id",
            id=store.ids["ground_truth"],
            ref=ref,
        )
    with store.sf.begin() as session:
        audit_log.append(
            session,
            actor="t",
            action=AuditAction.GROUND_TRUTH_LOADED,
            subject="legacy",
            payload={"loaded": 1, "source": "ground_truth"},
            recorded_at=clock().isoformat(),
        )

    # Execute
    check = crosscheck_records(store.sf)

    # Assert
    assert not check.ok and check.unverifiable["outcome"] == 1 and check.problems == 1
    assert check.first_problem is not None and check.first_problem.seq is None


def test_vigil_audit_verify_exits_1_naming_an_edited_prediction_score(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    for name, value in store.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    row_id = store.ids["prediction"]
    seq = store.seq_recording(RecordKind.PREDICTION, row_id)
    intact_code = main(["audit", "verify", "--json"])
    intact = json.loads(capsys.readouterr().out)

    # Execute
    store.sql("UPDATE prediction SET score = 0.01 WHERE id = :id", id=row_id)
    code = main(["audit", "verify", "--json"])
    data = json.loads(capsys.readouterr().out)

    # Assert
    assert intact_code == 0 and intact["ok"] is True and intact["records_ok"] is True
    assert intact["records_checked"]["prediction"] > 0 and intact["records_unverifiable"]["prediction"] == 0
    assert code == 1 and data["ok"] is False and data["records_ok"] is False
    assert data["chain_ok"] is True and data["checkpoints_ok"] is True, "only the cross-check can see it"
    expected = f"prediction {row_id}: its row no longer matches the hash audit entry seq {seq} recorded (score changed)"
    assert data["record_problem"] == expected == data["reason"]
