"""The record hash: a fixed field list per kind, canonical JSON, SHA-256; every field counts."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.audit.records import RECORD_FIELDS, RecordKind, changed_fields, record_sha256

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

#: One plausible row per kind, as the store returns it.
ROWS: dict[RecordKind, dict[str, object]] = {
    RecordKind.PREDICTION: {
        "id": 12,
        "instance_id": 3,
        "model_version_id": 1,
        "input_sha256": "a" * 64,
        "score": 0.8125,
        "label": True,
        "threshold": 0.5,
        "latency_ms": 4.25,
        "device": "cpu",
        "peak_memory_bytes": 1 << 20,
        "fallback": None,
        "created_at": AT,
    },
    RecordKind.EXPLANATION: {
        "id": 4,
        "prediction_id": 12,
        "method": "gradcam",
        "params_json": '{"target_layer":"layer3"}',
        "artifact_sha256": "b" * 64,
        "artifact_path": "/home/artifacts/explanations/b.npz",
        "created_at": AT,
    },
    RecordKind.FEEDBACK: {
        "id": 7,
        "study_id": 2,
        "prediction_id": 12,
        "user_id": 5,
        "reader_role": "radiologist",
        "agrees": False,
        "finding": "present",
        "confidence": 4,
        "explanation_rating": "focused",
        "comment": "small nodule",
        "time_on_case_ms": 42250,
        "supersedes_id": None,
        "idempotency_key": "k" * 32,
        "created_at": AT,
    },
    RecordKind.OUTCOME: {
        "id": 9,
        "study_id": 2,
        "source": "adjudicated",
        "label": True,
        "source_ref": "adjudication:abc",
        "detail": "CT confirmed",
        "recorded_by": "champion",
        "effective_at": AT,
        "created_at": AT,
    },
}

#: A value different from ROWS' for every field (of the right type).
OTHER: dict[str, object] = {
    "id": 99,
    "instance_id": 98,
    "model_version_id": 97,
    "input_sha256": "c" * 64,
    "score": 0.8126,
    "label": False,
    "threshold": 0.6,
    "latency_ms": 4.5,
    "device": "cuda:0",
    "peak_memory_bytes": 2 << 20,
    "fallback": "amp off",
    "created_at": AT + timedelta(microseconds=1),
    "prediction_id": 13,
    "method": "gradientshap",
    "params_json": '{"target_layer":"layer4"}',
    "artifact_sha256": "d" * 64,
    "artifact_path": "/elsewhere.npz",
    "study_id": 96,
    "user_id": 95,
    "reader_role": "champion",
    "agrees": True,
    "finding": "absent",
    "confidence": 3,
    "explanation_rating": None,
    "comment": "small nodule.",
    "time_on_case_ms": 42251,
    "supersedes_id": 6,
    "idempotency_key": "j" * 32,
    "source": "emr",
    "source_ref": "adjudication:abd",
    "detail": "",
    "recorded_by": "t",
    "effective_at": None,
}


def test_the_hash_is_pinned() -> None:
    # Prepare
    fields = ROWS[RecordKind.OUTCOME]
    body = {**{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()}, "kind": "outcome"}
    by_hand = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    ).hexdigest()

    # Execute
    digest = record_sha256(RecordKind.OUTCOME, fields)

    # Assert: a change here breaks every hash already in a ledger
    assert digest == by_hand
    assert digest == "f02cab391216d6f80fcd5ee344b09c99ba78523eff0086d60b4a1c439b46b125"


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind in RecordKind for name in RECORD_FIELDS[kind]], ids=str
)
def test_every_field_changes_the_hash(kind: RecordKind, name: str) -> None:
    # Prepare
    fields = ROWS[kind]
    edited = {**fields, name: OTHER[name]}

    # Execute
    before, after = record_sha256(kind, fields), record_sha256(kind, edited)

    # Assert
    assert before != after


def test_the_kind_is_hashed_too() -> None:
    # Prepare: the same values under two kinds' field lists cannot collide, but the kind is in the body anyway
    fields = ROWS[RecordKind.OUTCOME]

    # Execute
    digest = record_sha256("outcome", fields)

    # Assert
    assert digest == record_sha256(RecordKind.OUTCOME, dict(fields))
    with pytest.raises(ValueError, match="'nonsense'"):
        record_sha256("nonsense", fields)


def test_a_datetime_is_hashed_as_utc_text_whatever_its_zone() -> None:
    # Prepare
    fields = ROWS[RecordKind.OUTCOME]
    shifted = {**fields, "created_at": AT.astimezone(timezone(timedelta(hours=2)))}

    # Execute
    same = record_sha256(RecordKind.OUTCOME, shifted) == record_sha256(RecordKind.OUTCOME, fields)

    # Assert
    assert same
    with pytest.raises(ValueError, match="naive"):
        record_sha256(RecordKind.OUTCOME, {**fields, "created_at": AT.replace(tzinfo=None)})


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_the_field_list_is_fixed(change: str) -> None:
    # Prepare
    fields = dict(ROWS[RecordKind.PREDICTION])
    if change == "missing":
        del fields["score"]
    else:
        fields["note"] = "x"

    # Execute / Assert
    with pytest.raises(ValueError, match="differ from the fixed list"):
        record_sha256(RecordKind.PREDICTION, fields)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        record_sha256(RecordKind.PREDICTION, {**ROWS[RecordKind.PREDICTION], "latency_ms": float("nan")})


def test_changed_fields_names_what_the_payload_also_recorded() -> None:
    # Prepare
    row = {**ROWS[RecordKind.PREDICTION], "score": 0.01, "label": False, "device": "cuda:0"}
    payload = {"prediction_id": 12, "score": 0.8125, "label": True, "model_version": "v1"}

    # Execute
    named = changed_fields(RecordKind.PREDICTION, row, payload)

    # Assert: device changed too, but the payload did not record it
    assert named == ("score", "label")
