"""UI benchmarks (issue 3): rerun cost of the case review page, and the counters that explain it.

Targets, each measured side by side in one run (BENCHMARKING.md):

* a warm rerun of the case review page after a widget change, over a warm rerun of an empty
  page in the same process, on a 10k-study database: at most 15;
* the same rerun on a 100k-study database over the 10k one: at most 3;
* Grad-CAM computations, model forward calls and DICOM reads during those warm reruns: zero
  (a counter, guarded by the cold open having computed Grad-CAM exactly once);
* elements on any page, over the budget of 200: at most 1.

The databases are SYNTHETIC: one real study ingested from the sample cohort, then ``n - 1``
studies bulk-inserted by :func:`core.store.reviews.insert_synthetic_worklist`, all pointing at
that study's DICOM file. ``core`` may not import Streamlit, so the app is driven by
``python -m ui.bench`` in a fresh process and this module turns its figures into results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import torch

from core.bench.harness import BenchResult
from core.config import REPO_ROOT, Settings
from core.errors import BadInputError
from core.models.card import IntendedUse, ModelCard, read_card, write_card
from core.models.loading import BUNDLED_DIR, sha256_file
from core.models.networks import DEFAULT_NETWORK, build_network
from core.sampledata import MANIFEST_NAME, generate_cohort, read_manifest
from core.services import auth, ingestion, prediction
from core.services import models as model_service
from core.services import sites as site_service
from core.services.store import open_store
from core.store import model_versions, reviews, sites, studies
from core.types import JSONObject

__all__ = [
    "ELEMENT_BUDGET",
    "LARGE",
    "RERUN_TARGET",
    "SCALE_TARGET",
    "SMALL",
    "BenchDatabase",
    "build_database",
    "results_from",
    "run",
]

SMALL: Final = 10_000
LARGE: Final = 100_000
RERUN_TARGET: Final = 15.0
SCALE_TARGET: Final = 3.0
ELEMENT_BUDGET: Final = 200
#: Wall-clock limit for the measuring process (two cold opens, the interleaved rounds, every page).
PROBE_TIMEOUT_S: Final = 1800
_ACTOR: Final = "bench"


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    """A SYNTHETIC installation for UI benchmarks: where it is and the one real study in it."""

    home: Path
    database_url: str
    study_uid: str
    n_studies: int

    @property
    def env(self) -> dict[str, str]:
        """The variables ``ui.resources`` reads to open it."""
        return {"VIGIL_HOME": str(self.home), "VIGIL_DATABASE_URL": self.database_url}


def _now() -> datetime:
    return datetime.now(UTC)


def build_database(root: Path, *, n_studies: int, sample_dir: Path, seed: int = 0) -> BenchDatabase:
    """Create a SYNTHETIC ``n_studies``-study installation under ``root`` in seconds.

    One study of ``sample_dir`` (a cohort; a one-study-per-site cohort is generated under
    ``root`` when it has no manifest) is ingested and scored the ordinary way; the other
    ``n_studies - 1`` are bulk-inserted with random scores from the serving model. The demo
    users are seeded so every role's pages can be opened.

    Raises
    ------
    BadInputError
        ``n_studies`` is below 1.
    """
    if n_studies < 1:
        raise BadInputError(f"a benchmark database needs at least 1 study, got {n_studies}")
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=root, database_url=f"sqlite:///{(root / 'vigil.db').resolve()}")
    sf = open_store(settings)
    _register_model(sf, root)
    dicom, site, is_benchmark = _first_study(sample_dir, root)
    site_service.add_site(sf, site, benchmark=is_benchmark, actor=_ACTOR, now=_now)
    report = ingestion.ingest_paths(sf, [dicom], site=site, dicom_dir=root / "dicom", actor=_ACTOR, now=_now)
    if not report.ingested:
        raise BadInputError(f"{dicom} was not ingested: {report.rejected}")
    model = model_service.load_serving(sf, models_dir=root / "models")
    prediction.predict_pending(sf, model, site=None, batch_size=1, actor=_ACTOR, now=_now)
    auth.seed_demo_users(sf, now=_now)
    with sf.begin() as session:
        serving = model_versions.serving(session)
        study = studies.list_studies(session, limit=1)[0]
        path = studies.list_instances(session, study.study_uid)[0].path
        if serving is None:  # pragma: no cover - _register_model made one serving
            raise BadInputError("no serving model after registration")
        reviews.insert_synthetic_worklist(
            session,
            n_studies=n_studies - 1,
            site_ids=[s.id for s in sites.list_sites(session)],
            model_version_id=serving.id,
            image_path=path,
            threshold=model.card.operating_threshold,
            seed=seed,
            now=_now(),
        )
    return BenchDatabase(settings.home, settings.database_url, study.study_uid, n_studies)


def _register_model(sf: Any, root: Path) -> None:
    """The bundled demonstration model when it is there, else a SYNTHETIC random-init network."""
    if (BUNDLED_DIR / "card.json").is_file():
        model_service.register_bundled(sf, models_dir=root / "models", actor=_ACTOR, now=_now)
        return
    source = root / "synthetic-model"
    source.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_network(DEFAULT_NETWORK).state_dict(), source / "weights.pt")
    write_card(_synthetic_card(source / "weights.pt"), source / "card.json")
    card = read_card(source / "card.json")
    model_service.register_model(sf, card, source_dir=source, models_dir=root / "models", actor=_ACTOR, now=_now)


def _synthetic_card(weights: Path) -> ModelCard:
    return ModelCard(
        version="bench-synthetic-random-0",
        network=dict(DEFAULT_NETWORK),
        weights={"path": weights.name, "sha256": sha256_file(weights)},
        target_layer="layer3",
        input={"shape": [1, 224, 224], "channels": 1, "spacing": "resampled to 224 x 224"},
        preprocessing={"size": 224, "low_percentile": 0.5, "high_percentile": 99.5},
        data_schema={},
        labels=["nodule"],
        operating_threshold=0.5,
        hyperparameters={},
        training_data={"synthetic": True, "description": "none: random initialisation, for UI benchmarks only"},
        code_version="bench",
        environment={},
        metrics={},
        created_at=_now().isoformat(timespec="seconds"),
        parent_version=None,
        intended_use=IntendedUse(("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "UI BENCHMARK ONLY."),
    )


def _first_study(sample_dir: Path, root: Path) -> tuple[Path, str, bool]:
    """A DICOM file of the cohort with its site; generates a tiny cohort when there is none."""
    manifest = sample_dir / MANIFEST_NAME
    if not manifest.is_file():
        sample_dir = root / "cohort"
        generate_cohort(sample_dir, seed=0, studies_per_site=1)
        manifest = sample_dir / MANIFEST_NAME
    row = read_manifest(manifest)[0]
    return sample_dir / row.path, row.site, row.is_benchmark


def run(sample_dir: Path, rounds: int, *, sizes: Sequence[int] = (SMALL, LARGE)) -> list[BenchResult]:
    """Build both databases, measure in a fresh process, and return the four results.

    Parameters
    ----------
    sample_dir : Path
        A cohort (``sample_data/``); one of its studies becomes the real study of each database.
    rounds : int
        Interleaved timing rounds (each runs both review reruns and the empty page once).
    sizes : (int, int)
        Studies in the small and the large database (the targets are stated for 10k and 100k).
    """
    small_n, large_n = sizes
    with tempfile.TemporaryDirectory(prefix="vigil-bench-ui-") as tmp:
        small = build_database(Path(tmp) / "small", n_studies=small_n, sample_dir=sample_dir)
        large = build_database(Path(tmp) / "large", n_studies=large_n, sample_dir=sample_dir)
        spec: JSONObject = {
            "rounds": rounds,
            "threads": 2,
            "small": {"env": dict(small.env), "study_uid": small.study_uid},
            "large": {"env": dict(large.env), "study_uid": large.study_uid},
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        figures = _probe(spec_path)
    return results_from(figures, small_n=small_n, large_n=large_n)


def _probe(spec_path: Path) -> dict[str, Any]:
    # The child inherits this process's environment; ui.bench points each run at its database
    # itself and pins torch to two threads.
    done = subprocess.run(
        [sys.executable, "-m", "ui.bench", str(spec_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ui.bench failed ({done.returncode}): {done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def results_from(figures: dict[str, Any], *, small_n: int, large_n: int) -> list[BenchResult]:
    """Turn ``ui.bench``'s figures into the four benchmark results."""
    medians = figures["medians_s"]
    warm, cold = figures["warm_counters"], figures["cold_counters"]
    quiet = all(v == 0 for v in warm.values()) and not figures["exceptions"]
    elements: dict[str, int] = figures["elements"]
    absolutes: JSONObject = {"median_s": medians, "studies": {"small": small_n, "large": large_n}}
    return [
        BenchResult(
            f"case page warm rerun after a widget change / empty page rerun ({small_n} studies)",
            medians["review_small"] / medians["empty"],
            RERUN_TARGET,
            "no Grad-CAM, model forward or DICOM read during the warm reruns; no page exception",
            quiet,
            absolutes,
        ),
        BenchResult(
            f"case page warm rerun, {large_n} studies / {small_n} studies",
            medians["review_large"] / medians["review_small"],
            SCALE_TARGET,
            "no Grad-CAM, model forward or DICOM read during the warm reruns; no page exception",
            quiet,
            absolutes,
        ),
        BenchResult(
            "Grad-CAM calls + model forwards + DICOM reads during warm reruns (counter)",
            float(sum(warm.values())),
            0.0,
            "the two cold opens computed Grad-CAM exactly once each (the counters count)",
            cold["gradcam_calls"] == 2 and cold["model_forwards"] > 0,
            {"warm": warm, "cold": cold},
        ),
        BenchResult(
            f"elements on the fullest page / budget of {ELEMENT_BUDGET}",
            max(elements.values()) / ELEMENT_BUDGET,
            1.0,
            "the worklist showed a full page of 25 studies when counted",
            figures["worklist_rows"] == 25,
            {"elements": elements},  # type: ignore[dict-item]
        ),
    ]
