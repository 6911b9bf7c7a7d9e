"""Builders the service and CLI tests share: a tiny synthetic cohort and a random-init model.

The model is the bundled architecture with seeded random weights: real code paths, no
training time. Its scores mean nothing, which these tests never rely on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from core.models.card import IntendedUse, ModelCard, write_card
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams

RANDOM_VERSION = "test-random-0.0.1"

#: A change-control plan whose margins any challenger meets: a test hold-out of a few studies
#: per site cannot show non-inferiority, and these tests exercise the loop, not the statistics.
LENIENT_PLAN_TOML = """
[plan]
id = "test-lenient"
version = "1"
allowed_modifications = ["retrain", "threshold"]

[acceptance]
site_auc_margin = 0.45
overall_auc_margin = 0.45
sensitivity_margin = 0.9
specificity_margin = 0.9
max_ece = 1.0
min_site_positives = 2
min_site_negatives = 2
insufficient_site = "skip"
require_explanation = ""
"""


def write_random_model(out_dir: Path, *, version: str = RANDOM_VERSION, seed: int = 0) -> ModelCard:
    """Write ``<version>.pt`` (seeded random weights) and ``card.json`` into ``out_dir``."""
    torch.manual_seed(seed)
    net = build_network(DEFAULT_NETWORK)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{version}.pt"
    torch.save(net.state_dict(), weights)
    card = ModelCard(
        version=version,
        network=dict(DEFAULT_NETWORK),
        weights={"path": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
        target_layer="layer3",
        input={"shape": [1, 224, 224], "channels": 1, "spacing": "resampled"},
        preprocessing=PreprocessParams().to_dict(),
        data_schema={"dicom_attributes": ["Modality"], "store_revision": "0001"},
        labels=["nodule absent", "nodule present"],
        operating_threshold=0.5,
        hyperparameters={"note": "random initialisation for tests"},
        training_data={"manifest_sha256": None, "sites": []},
        code_version="test",
        environment={"torch": torch.__version__},
        metrics={},
        created_at="2026-01-01T00:00:00+00:00",
        parent_version=None,
        intended_use=IntendedUse(
            modalities=("DX", "CR"),
            body_parts=("CHEST",),
            views=("PA", "AP"),
            image_kinds=("ORIGINAL",),
            description="test model",
        ),
    )
    write_card(card, out_dir / "card.json")
    return card
