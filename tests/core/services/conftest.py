"""A migrated file database with the random model registered and a small cohort on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import Settings
from core.models.card import ModelCard
from core.sampledata import MANIFEST_NAME, generate_cohort
from core.services import models, outcomes, setup, sites
from core.services.store import open_store
from core.store.engine import SessionFactory
from tests.conftest import NewDatabase
from tests.factories import write_random_model


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=7, studies_per_site=3)
    return out


@pytest.fixture(scope="session")
def initialized_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SessionFactory]:
    """``vigil init``'s use case on the committed cohort with the bundled model, shared by the evidence tests.

    Read-only for its users apart from what they add (monitoring alerts): ingesting and scoring the
    whole cohort once, not once per test module.
    """
    home = tmp_path_factory.mktemp("initialized-sample")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    setup.initialize(settings, actor="t", now=fixed_clock)
    sf = open_store(settings)
    # init loads the benchmark site's truth only; the evidence tests measure every site against it.
    outcomes.load_ground_truth(sf, settings.sample_data_dir / MANIFEST_NAME, actor="t", now=fixed_clock)
    return settings, sf


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    write_random_model(out)
    return out


def fixed_clock() -> datetime:
    return datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Env:
    settings: Settings
    sf: SessionFactory
    card: ModelCard
    now: Callable[[], datetime]

    @property
    def models_dir(self) -> Path:
        return self.settings.home / "models"

    @property
    def dicom_dir(self) -> Path:
        return self.settings.home / "dicom"


@pytest.fixture
def env(tmp_path: Path, random_model_dir: Path, backend: str, new_database: NewDatabase) -> Env:
    """A registered model and the benchmark site, in a store on each of the two backends."""
    from core.models.card import read_card

    home = tmp_path / "home"
    settings = Settings(home=home, database_url=new_database(backend, migrated=True))
    sf = open_store(settings)
    card = read_card(random_model_dir / "card.json")
    models.register_model(sf, card, source_dir=random_model_dir, models_dir=home / "models", actor="t", now=fixed_clock)
    sites.add_site(sf, "benchmark", benchmark=True, actor="t", now=fixed_clock)
    return Env(settings, sf, card, fixed_clock)
