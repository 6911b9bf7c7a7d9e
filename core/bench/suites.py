"""The benchmark suites ``vigil bench`` runs, and the environment recorded beside their figures."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from core.bench import alerts, audit, drift, fhir, gradcam, imaging, inference, metrics, shap, store, throughput, ui
from core.bench.harness import BenchResult
from core.errors import BadInputError, PathNotFoundError
from core.imaging.dicom import read_dicom
from core.models.card import read_card
from core.models.inference import pin_threads
from core.models.loading import BUNDLED_DIR, load_model
from core.sampledata import MANIFEST_NAME, read_manifest
from core.types import JSONObject

__all__ = ["SUITES", "SuiteRun", "run_suite", "environment", "record"]


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """One suite's results and the machine they were measured on."""

    suite: str
    results: list[BenchResult]
    environment: JSONObject
    measured_at: str

    @property
    def passed(self) -> bool:
        """Every ratio within target with its guard holding."""
        return all(r.passed for r in self.results)

    def to_dict(self) -> JSONObject:
        """JSON-ready record (what ``--json`` prints and ``--record`` stores)."""
        return {
            "suite": self.suite,
            "passed": self.passed,
            "measured_at": self.measured_at,
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
        }


def _sample_files(sample_dir: Path) -> list[Path]:
    manifest = sample_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise PathNotFoundError(manifest)
    return [sample_dir / r.path for r in read_manifest(manifest)]


def _foundation(sample_dir: Path, rounds: int) -> list[BenchResult]:
    """Issue 2: DICOM loading, inference wrapper, end-to-end scoring, Grad-CAM."""
    files = _sample_files(sample_dir)
    model = load_model(read_card(BUNDLED_DIR / "card.json"), BUNDLED_DIR)
    return [
        *imaging.run(files, rounds=rounds),
        *inference.run(model, files, rounds=rounds),
        *gradcam.run(model, [read_dicom(p) for p in files[:16]], rounds=rounds),
    ]


def _explanations(sample_dir: Path, rounds: int) -> list[BenchResult]:
    """Issue 4: GradientShap and KernelShap on one benchmark positive with benchmark negatives as baselines."""
    rows = read_manifest(sample_dir / MANIFEST_NAME)
    bench = [r for r in rows if r.is_benchmark]
    positive = next((r for r in bench if r.label == 1), None)
    negatives = [r for r in bench if r.label == 0][:32]
    if positive is None or not negatives:
        raise BadInputError(f"{sample_dir} needs a benchmark positive and benchmark negatives for this suite")
    model = load_model(read_card(BUNDLED_DIR / "card.json"), BUNDLED_DIR)
    images = [read_dicom(sample_dir / r.path) for r in (positive, *negatives)]
    return shap.run(model, images, rounds=rounds)


SUITES: dict[str, Callable[[Path, int], list[BenchResult]]] = {
    "foundation": _foundation,
    "metrics": lambda _sample_dir, rounds: metrics.run(rounds=rounds),
    "drift": lambda _sample_dir, rounds: drift.run(rounds=rounds),
    "ui": ui.run,
    "explanations": _explanations,
    # Cohorts and seeds are the benchmark's own (never tuned); --rounds does not apply.
    "alerts": lambda _sample_dir, _rounds: alerts.run(),
    # Issue 13: a 10,000-resource Bundle built from the sample manifest's deployment studies.
    "fhir": lambda sample_dir, rounds: fhir.run(sample_dir, rounds=rounds),
    # Issue 15: the audit ledger's append, verify, scaling and `vigil audit verify`, on SYNTHETIC entries.
    "audit": lambda _sample_dir, rounds: audit.run(rounds=rounds),
    # Issue 19: files → stored scores through the streaming pipeline against the decode floor, on a
    # generated cohort (default size; `run_suite(..., throughput=...)` sets studies and workers).
    "throughput": lambda _sample_dir, rounds: throughput.run(throughput.ThroughputConfig(), rounds=rounds),
    # Issue 19, item 5: worklist page, validate and drift on SYNTHETIC stores of two sizes (default
    # 10k and 100k rows; `run_suite(..., store_config=...)` sets the large one, 1,000,000 for the issue).
    "store": lambda _sample_dir, rounds: store.run(store.StoreConfig(), rounds=rounds),
}


def environment() -> JSONObject:
    """CPU, threads, device and library versions: the context every absolute figure needs."""
    packages = ("torch", "monai", "captum", "pydicom", "numpy", "sqlalchemy", "streamlit")
    versions: JSONObject = {p: _version(p) for p in packages}
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": versions,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_suite(
    name: str,
    *,
    sample_dir: Path,
    rounds: int,
    threads: int = 2,
    throughput_config: throughput.ThroughputConfig | None = None,
    store_config: store.StoreConfig | None = None,
) -> SuiteRun:
    """Run one suite with pinned threads (BENCHMARKING.md, protocol step 1).

    ``throughput_config`` sizes the ``throughput`` suite (studies, workers, batch) and
    ``store_config`` the ``store`` suite (rows); each is refused for any other suite.
    """
    if name not in SUITES:
        raise BadInputError(f"unknown benchmark suite {name!r} (choose one of {', '.join(SUITES)})")
    if rounds < 1:
        raise BadInputError(f"rounds must be at least 1, got {rounds}")
    if throughput_config is not None and name != "throughput":
        raise BadInputError(f"studies, workers and batch size size the throughput suite, not {name!r}")
    if store_config is not None and name != "store":
        raise BadInputError(f"--rows sizes the store suite, not {name!r}")
    pin_threads(threads)
    if throughput_config is not None:
        results = throughput.run(throughput_config, rounds=rounds)
    elif store_config is not None:
        results = store.run(store_config, rounds=rounds)
    else:
        results = SUITES[name](sample_dir, rounds)
    return SuiteRun(name, results, environment(), datetime.now(UTC).isoformat(timespec="seconds"))


def record(run: SuiteRun, directory: Path, *, command: str | None = None) -> Path:
    """Write ``<directory>/<suite>.json`` (the figures BENCHMARKS.md quotes) and the ``command`` that measured them."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run.suite}.json"
    data = run.to_dict() | ({"command": command} if command else {})
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
