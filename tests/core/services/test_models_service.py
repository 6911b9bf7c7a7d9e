from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UnknownModelVersionError, WeightsIntegrityError
from core.models.card import read_card
from core.services import models
from core.store import audit_log
from tests.core.services.conftest import Env
from tests.factories import write_random_model


def test_registered_model_is_listed_serving_and_shown(env: Env) -> None:
    (only,) = models.list_models(env.sf)
    assert only.version == env.card.version and only.serving
    assert models.get_card(env.sf, env.card.version) == env.card


def test_unknown_version(env: Env) -> None:
    with pytest.raises(UnknownModelVersionError, match="v-does-not-exist"):
        models.get_card(env.sf, "v-does-not-exist")


def test_corrupt_weights_are_refused_and_nothing_is_written(env: Env, tmp_path: Path) -> None:
    # Prepare: a second version whose weights file was altered after its card was written
    src = tmp_path / "v2"
    card = write_random_model(src, version="test-random-0.0.2", seed=1)
    weights = src / str(card.weights["path"])
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with env.sf() as s:
        before = audit_log.count_entries(s)
    # Execute / Assert
    with pytest.raises(WeightsIntegrityError, match="SHA-256"):
        models.register_model(env.sf, card, source_dir=src, models_dir=env.models_dir, actor="t", now=env.now)
    assert [m.version for m in models.list_models(env.sf)] == [env.card.version]
    assert not (env.models_dir / card.version).exists()
    with env.sf() as s:
        assert audit_log.count_entries(s) == before


def test_serving_weights_tampered_on_disk_are_refused_at_load(env: Env) -> None:
    weights = env.models_dir / env.card.version / str(env.card.weights["path"])
    weights.write_bytes(b"not a state dict")
    with pytest.raises(WeightsIntegrityError, match=str(weights.name)):
        models.load_serving(env.sf, models_dir=env.models_dir)


def test_registered_card_round_trips(env: Env, random_model_dir: Path) -> None:
    assert read_card(env.models_dir / env.card.version / "card.json") == read_card(random_model_dir / "card.json")
