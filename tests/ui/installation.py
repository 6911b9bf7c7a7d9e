"""A small, complete Vigil installation for UI, service and browser tests.

``vigil init`` runs for real (``core.services.setup.initialize``) on a generated SYNTHETIC cohort
of a few studies per site, with one change: the bundled model is swapped for a randomly
initialised network with a card built the same way, so the tests never depend on the trained
demonstration weights and stay fast (a 64-pixel input).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import torch

import core.services.models as model_service
from core.config import Settings
from core.models.card import IntendedUse, ModelCard, write_card
from core.models.loading import sha256_file
from core.models.networks import DEFAULT_NETWORK, build_network
from core.sampledata import generate_cohort
from core.services import auth, setup
from core.services.store import open_store
from core.store.engine import SessionFactory

TEST_MODEL_VERSION = "test-random-0.1"
DEMO_PASSWORDS = {d.username: d.password for d in auth.DEMO_USERS}


@dataclass(frozen=True)
class Installation:
    """Where a test installation lives and how to reach it."""

    home: Path
    database_url: str
    cohort_dir: Path

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home, database_url=self.database_url, sample_data_dir=self.cohort_dir)

    @property
    def env(self) -> dict[str, str]:
        return {"VIGIL_HOME": str(self.home), "VIGIL_DATABASE_URL": self.database_url}

    def session_factory(self) -> SessionFactory:
        return open_store(self.settings)


def clock() -> datetime:
    return datetime.now(UTC)


def write_random_model(out_dir: Path, *, size: int = 64, seed: int = 0) -> Path:
    """Weights and a card for a randomly initialised demonstration network (SYNTHETIC, for tests)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(build_network(DEFAULT_NETWORK).state_dict(), out_dir / "weights.pt")
    card = ModelCard(
        version=TEST_MODEL_VERSION,
        network=dict(DEFAULT_NETWORK),
        weights={"path": "weights.pt", "sha256": sha256_file(out_dir / "weights.pt")},
        target_layer="layer3",
        input={"shape": [1, size, size], "channels": 1, "spacing": f"resampled to {size} x {size}"},
        preprocessing={"size": size, "low_percentile": 0.5, "high_percentile": 99.5},
        data_schema={},
        labels=["nodule"],
        operating_threshold=0.5,
        hyperparameters={},
        training_data={"synthetic": True, "description": "none: random initialisation, for tests only"},
        code_version="test",
        environment={},
        metrics={},
        created_at="2024-01-01T00:00:00+00:00",
        parent_version=None,
        intended_use=IntendedUse(
            ("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "TEST MODEL (random weights): not for any use."
        ),
    )
    write_card(card, out_dir / "card.json")
    return out_dir


def build_installation(root: Path, *, studies_per_site: int = 2, seed: int = 0) -> Installation:
    """Generate a cohort, run ``initialize`` with the random model, and seed the demo users."""
    cohort = root / "cohort"
    generate_cohort(cohort, seed=seed, studies_per_site=studies_per_site)
    model_dir = write_random_model(root / "model")
    inst = Installation(home=root / "home", database_url=f"sqlite:///{root / 'home' / 'vigil.db'}", cohort_dir=cohort)
    inst.home.mkdir(parents=True, exist_ok=True)
    with mock.patch.object(model_service, "BUNDLED_DIR", model_dir):
        setup.initialize(inst.settings, actor="system", now=clock)
    # initialize() will seed them itself once the lead wires seed_demo_users in; both are idempotent.
    auth.seed_demo_users(inst.session_factory(), now=clock)
    return inst


def copy_installation(template: Installation, root: Path) -> Installation:
    """A private copy of ``template``'s home and database (the cohort and DICOM files are shared)."""
    shutil.copytree(template.home, root / "home")
    return Installation(
        home=root / "home", database_url=f"sqlite:///{root / 'home' / 'vigil.db'}", cohort_dir=template.cohort_dir
    )


_TEMPLATES: dict[Path, Installation] = {}


def shared_template(base: Path) -> Installation:
    """One installation per test session under ``base``, built on first use, copied by each test."""
    if base not in _TEMPLATES:
        _TEMPLATES[base] = build_installation(base / "vigil-template")
    return _TEMPLATES[base]
