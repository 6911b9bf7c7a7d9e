"""Contract tests for core.store.predictions and core.store.explanations, on every database flavour."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from core.store import explanations, predictions
from core.store.engine import SessionFactory
from core.store.explanations import ExplanationIn
from core.store.predictions import PredictionIn
from core.types import JSONObject

BIG = 80 * 2**30  # 80 GiB: peak GPU memory overflows a 32-bit INTEGER


def _scored(instance_id: int, model_version_id: int, score: float = 0.8) -> PredictionIn:
    return PredictionIn(
        instance_id=instance_id,
        model_version_id=model_version_id,
        input_sha256="d" * 64,
        score=score,
        label=score >= 0.5,
        threshold=0.5,
        latency_ms=3.5,
        device="cuda:0",
        peak_memory_bytes=BIG,
    )


def _skipped(instance_id: int, model_version_id: int) -> PredictionIn:
    return PredictionIn(
        instance_id=instance_id,
        model_version_id=model_version_id,
        input_sha256=None,
        score=None,
        label=None,
        threshold=0.5,
        latency_ms=None,
        device="cpu",
        fallback="outside intended use: modality CT not in ('DX', 'CR')",
    )


def test_add_and_find_predictions(session_factory: SessionFactory, now: datetime, seeded: Any) -> None:
    # Prepare
    ids, mv = seeded.instance_ids, seeded.model_version_id

    # Execute
    with session_factory.begin() as session:
        scored = predictions.add_prediction(session, _scored(ids[0], mv), now=now)
        skipped = predictions.add_prediction(session, _skipped(ids[1], mv), now=now)
    with session_factory() as session:
        found = predictions.prediction_for(session, ids[0], mv)
        found_skipped = predictions.prediction_for(session, ids[1], mv)
        missing = predictions.prediction_for(session, ids[2], mv)

    # Assert
    assert found == scored and found_skipped == skipped
    assert missing is None
    assert {k: v for k, v in asdict(scored).items() if k not in ("id", "created_at")} == asdict(_scored(ids[0], mv))
    assert scored.peak_memory_bytes == BIG
    assert scored.created_at == now
    assert scored.scored and not skipped.scored
    assert skipped.fallback is not None and "intended use" in skipped.fallback


def test_count_and_list_predictions(session_factory: SessionFactory, now: datetime, seeded: Any) -> None:
    # Prepare: v1 scores 0 and 2 and skips 1; v2 scores 0
    ids, mv1, mv2 = seeded.instance_ids, seeded.model_version_id, seeded.other_model_version_id
    with session_factory.begin() as session:
        for p in (_scored(ids[0], mv1), _skipped(ids[1], mv1), _scored(ids[2], mv1, 0.1), _scored(ids[0], mv2)):
            predictions.add_prediction(session, p, now=now)

    # Execute
    with session_factory() as session:
        counts = (
            predictions.count_predictions(session),
            predictions.count_predictions(session, model_version_id=mv1),
            predictions.count_predictions(session, model_version_id=mv1, scored_only=True),
        )
        v1_north = predictions.list_predictions(session, model_version_id=mv1, site_id=seeded.north_id)
        page = predictions.list_predictions(session, limit=2, offset=2)

    # Assert
    assert counts == (4, 3, 2)
    assert [p.instance_id for p in v1_north] == [ids[0], ids[1]]
    assert [(p.instance_id, p.model_version_id) for p in page] == [(ids[2], mv1), (ids[0], mv2)]


def test_second_prediction_for_the_same_pair_is_rejected(
    session_factory: SessionFactory, now: datetime, seeded: Any
) -> None:
    # Prepare
    ids, mv = seeded.instance_ids, seeded.model_version_id
    with session_factory.begin() as session:
        predictions.add_prediction(session, _scored(ids[0], mv), now=now)

    # Execute / Assert
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        predictions.add_prediction(session, _scored(ids[0], mv, 0.2), now=now)


@pytest.mark.parametrize("score", [math.nan, -0.1, 1.5])
def test_undefined_or_impossible_scores_are_refused(
    session_factory: SessionFactory, now: datetime, seeded: Any, score: float
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="score"), session_factory.begin() as session:
        predictions.add_prediction(session, _scored(seeded.instance_ids[0], seeded.model_version_id, score), now=now)


def test_a_batch_is_stored_in_order_and_found_by_instance(
    session_factory: SessionFactory, now: datetime, seeded: Any
) -> None:
    # Prepare
    ids, mv = seeded.instance_ids, seeded.model_version_id
    later = now.replace(microsecond=7)

    # Execute
    with session_factory.begin() as session:
        added = predictions.add_predictions(session, [(_skipped(ids[1], mv), now), (_scored(ids[0], mv), later)])
    with session_factory() as session:
        found = predictions.predicted_instances(session, [ids[0], ids[1], ids[2], 9999], mv)
        other = predictions.predicted_instances(session, ids, mv + 1)

    # Assert: each record as its row, with its own time; only predicted instances of this version are found
    assert [(r.instance_id, r.created_at, r.scored) for r in added] == [(ids[1], now, False), (ids[0], later, True)]
    assert added[0].id < added[1].id
    assert found == {ids[0], ids[1]} and other == set()


def test_a_batch_with_one_impossible_score_stages_nothing(
    session_factory: SessionFactory, now: datetime, seeded: Any
) -> None:
    # Prepare
    ids, mv = seeded.instance_ids, seeded.model_version_id

    # Execute
    with session_factory() as session:
        with pytest.raises(ValueError, match="score"):
            predictions.add_predictions(session, [(_scored(ids[0], mv), now), (_scored(ids[1], mv, 1.5), now)])
        # Assert
        assert predictions.predicted_instances(session, ids, mv) == set()


def test_prediction_for_a_missing_instance_is_rejected(
    session_factory: SessionFactory, now: datetime, seeded: Any
) -> None:
    # Execute / Assert
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        predictions.add_prediction(session, _scored(9999, seeded.model_version_id), now=now)


def test_add_and_list_explanations(session_factory: SessionFactory, now: datetime, seeded: Any) -> None:
    # Prepare
    with session_factory.begin() as session:
        prediction = predictions.add_prediction(
            session, _scored(seeded.instance_ids[0], seeded.model_version_id), now=now
        )
    params: JSONObject = {"target_layer": "layer3", "target": 1, "n_samples": 20, "stdevs": 0.1}

    # Execute
    with session_factory.begin() as session:
        first = explanations.add_explanation(
            session, ExplanationIn(prediction.id, "gradcam", params, "e" * 64, "/artifacts/ee.npy"), now=now
        )
        second = explanations.add_explanation(
            session, ExplanationIn(prediction.id, "gradientshap", {}, "f" * 64, "/artifacts/ff.npy"), now=now
        )
    with session_factory() as session:
        listed = explanations.list_explanations(session, prediction.id)

    # Assert
    assert listed == [first, second]
    assert first.params == params
    assert first.params_json == '{"n_samples":20,"stdevs":0.1,"target":1,"target_layer":"layer3"}'
    assert (first.method, first.artifact_sha256, first.artifact_path, first.created_at) == (
        "gradcam",
        "e" * 64,
        "/artifacts/ee.npy",
        now,
    )


def test_explanation_of_a_missing_prediction_is_rejected(session_factory: SessionFactory, now: datetime) -> None:
    # Execute / Assert
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        explanations.add_explanation(session, ExplanationIn(9999, "gradcam", {}, "e" * 64, "/x.npy"), now=now)


def test_explanation_params_with_nan_are_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="NaN"), session_factory.begin() as session:
        explanations.add_explanation(session, ExplanationIn(1, "gradcam", {"x": math.nan}, "e" * 64, "/x"), now=now)
