"""A model serves at the precision its card was validated at, never a blanket autocast."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest
import torch

from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.models.card import ModelCard, read_card
from core.models.inference import pick_device, predict_images
from core.models.loading import BUNDLED_DIR, load_model
from core.models.precision import autocast_dtype, card_precision
from core.sampledata import MANIFEST_NAME, read_manifest

SAMPLE: Final = Path(__file__).resolve().parents[3] / "sample_data"


@pytest.fixture(scope="module")
def bundled() -> ModelCard:
    return read_card(BUNDLED_DIR / "card.json")


def _with(card: ModelCard, precision: str, *, validated: bool) -> ModelCard:
    metrics = {**card.metrics, "by_precision": {precision: {"overall_auc": 0.9}}} if validated else card.metrics
    return replace(card, input={**card.input, "precision": precision}, metrics=metrics)


def test_bundled_card_serves_in_float32_on_every_device(bundled: ModelCard) -> None:
    # Its metrics and threshold were validated in float32, and it names no other precision.
    assert card_precision(bundled) == "float32"
    assert autocast_dtype(bundled, torch.device("cpu")) is None
    assert autocast_dtype(bundled, torch.device("cuda")) is None


def test_reduced_precision_without_validated_figures_is_refused(bundled: ModelCard) -> None:
    card = _with(bundled, "float16", validated=False)

    with pytest.raises(BadInputError, match=r"'float16'.*metrics\.by_precision\.float16"):
        card_precision(card)
    with pytest.raises(BadInputError, match="'float16'"):
        load_model(card, BUNDLED_DIR)


def test_unknown_precision_is_named(bundled: ModelCard) -> None:
    with pytest.raises(BadInputError, match="unknown inference precision 'int8'"):
        card_precision(replace(bundled, input={**bundled.input, "precision": "int8"}))


def test_validated_reduced_precision_applies_on_cuda_only(bundled: ModelCard) -> None:
    card = _with(bundled, "float16", validated=True)

    assert card_precision(card) == "float16"
    assert autocast_dtype(card, torch.device("cuda")) is torch.float16
    assert autocast_dtype(card, torch.device("cpu")) is None


def test_serving_precision_gives_the_cpu_float32_call_on_the_committed_cohort(bundled: ModelCard) -> None:
    # On a GPU this compares the serving path with CPU float32; on the CPU both are float32 and
    # the check still pins that the default path adds no autocast.
    rows = read_manifest(SAMPLE / MANIFEST_NAME)
    images = [read_dicom(SAMPLE / r.path) for r in rows]
    serving = predict_images(load_model(bundled, BUNDLED_DIR, device=pick_device()), images, batch_size=64)
    reference = predict_images(load_model(bundled, BUNDLED_DIR, device=torch.device("cpu")), images, batch_size=64)

    assert len(serving) == len(rows) > 200
    assert [p.label for p in serving] == [p.label for p in reference]
    assert not any(p.amp for p in serving)
