"""A migrated SQLite store with the random model serving, a small cohort, and a store snapshot to compare runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import examples

from core.config import Settings
from core.models.card import read_card
from core.sampledata import generate_cohort
from core.services import models, sites
from core.services.store import open_store
from core.store import audit_log, explanations, predictions, studies
from core.store.engine import SessionFactory
from tests.factories import write_random_model

#: Payload values that differ between two correct runs: row keys, timings, memory, row hashes.
#: A map's bytes too: a batch of another composition may move a float16 cell by one step (compared apart).
VOLATILE = frozenset(
    {
        "instance_id",
        "prediction_id",
        "explanation_id",
        "artifact_sha256",
        "latency_ms",
        "peak_memory_bytes",
        "record_sha256",
    }
)


def fixed_clock() -> datetime:
    return datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Store:
    settings: Settings
    sf: SessionFactory
    now: Callable[[], datetime]

    @property
    def dicom_dir(self) -> Path:
        return self.settings.home / "dicom"

    @property
    def models_dir(self) -> Path:
        return self.settings.home / "models"


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=11, studies_per_site=3)
    return out


@pytest.fixture(scope="session")
def inputs(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The cohort's files plus one the gate refuses and one outside the intended use (an MR slice)."""
    extra = tmp_path_factory.mktemp("extra")
    good = Path(examples.get_path("ct"))
    (extra / "truncated.dcm").write_bytes(good.read_bytes()[:2000])
    (extra / "notes.txt").write_text("not DICOM", encoding="utf-8")
    (extra / "mr.dcm").write_bytes(Path(examples.get_path("mr")).read_bytes())
    return [cohort / "dicom", extra]


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    write_random_model(out)
    return out


def make_store(home: Path, model_dir: Path) -> Store:
    """A new SQLite file store under ``home`` with the random model serving and the benchmark site."""
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    home.mkdir(parents=True, exist_ok=True)
    sf = open_store(settings)
    card = read_card(model_dir / "card.json")
    models.register_model(sf, card, source_dir=model_dir, models_dir=home / "models", actor="t", now=fixed_clock)
    sites.add_site(sf, "benchmark", benchmark=True, actor="t", now=fixed_clock)
    return Store(settings, sf, fixed_clock)


@pytest.fixture
def store(tmp_path: Path, random_model_dir: Path) -> Store:
    return make_store(tmp_path / "home", random_model_dir)


def snapshot(store: Store) -> dict[str, object]:
    """What two runs over the same files must agree on: studies, instances, predictions, maps, audit, stored files.

    Audit entries are compared as a multiset of (action, subject, payload without row keys and
    timings): the pipeline interleaves ingest and predict entries batch by batch, the serial
    path writes all ingests first. Scores are rounded to 1e-6 (a different batch composition may
    move the last float32 bit); maps are compared by their parameters (which hold the model
    input's SHA-256), their cells apart (:func:`map_cells`).
    """
    with store.sf() as s:
        instances = {
            i.id: i for st in studies.list_studies(s, limit=None) for i in studies.list_instances(s, st.study_uid)
        }
        preds = sorted(
            (
                instances[p.instance_id].sop_instance_uid,
                p.input_sha256,
                None if p.score is None else round(p.score, 6),
                p.label,
                p.fallback,
                p.device,
            )
            for p in predictions.list_predictions(s)
        )
        entries = Counter(
            (e.action, e.subject, repr(sorted((k, _rounded(v)) for k, v in e.payload.items() if k not in VOLATILE)))
            for e in audit_log.iter_entries(s)
        )
        maps = sorted(
            (instances[p.instance_id].sop_instance_uid, e.method, e.params_json)
            for p in predictions.list_predictions(s)
            for e in explanations.list_explanations(s, p.id)
        )
    rows = sorted((i.study_uid, i.sop_instance_uid, i.sha256, Path(i.path).name) for i in instances.values())
    files = sorted(p.name for p in store.dicom_dir.rglob("*.dcm"))
    return {"instances": rows, "predictions": preds, "audit": entries, "files": files, "maps": maps}


def map_cells(store: Store) -> dict[str, np.ndarray]:
    """Each stored map's cells as float32, by SOP Instance UID."""
    with store.sf() as s:
        uid_of = {
            i.id: i.sop_instance_uid
            for st in studies.list_studies(s, limit=None)
            for i in studies.list_instances(s, st.study_uid)
        }
        rows = [
            (uid_of[p.instance_id], e)
            for p in predictions.list_predictions(s)
            for e in explanations.list_explanations(s, p.id)
        ]
    out = {}
    for uid, e in rows:
        with np.load(e.artifact_path) as npz:
            out[uid] = npz["heatmap"].astype(np.float32)
    return out


def _rounded(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value
