"""``vigil train --seed 0`` reproduces the bundled model's card: every metric within 0.01.

Runs the README's reproduction commands as a user would (fresh training and evaluation cohorts,
then ``vigil train`` in its own process with the default recipe) and compares the new card's
metrics with the committed card's. The bundled recipe trains in float64, so on a CPU with the
kernel level the card records (``environment.cpu_capability``, AVX512) the figures agree to
rounding and the weights come out byte-identical (reported, not required).

On another kernel level numpy and torch run other floating-point kernels: the cohort generator
writes a few files with other bytes (5 of the 258 committed sample files, regenerated on an AVX2
machine) and training amplifies such differences into another network: measured on that AVX2
machine (2026-12-04), the recipe gave
benchmark AUC 0.931 against the card's 0.944 and threshold 0.448 against 0.480, and the code of
the commit that trained the card gave the same kind of difference there. There the test checks
what the README promises for such machines: the same recipe, the same card layout, and a network
of the same quality within :data:`CROSS_KERNEL_AUC` and :data:`CROSS_KERNEL_THRESHOLD`.

About 5 minutes on 2 CPU threads (the two cohorts are generated side by side): the slowest test
in the suite, and the only check of the model card's reproducibility claim.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from core.models.card import read_card
from core.models.loading import BUNDLED_DIR, sha256_file
from core.sampledata import generate_cohort
from core.types import JSONValue

pytestmark = pytest.mark.slow

TOLERANCE = 0.01
#: Agreement required on another CPU kernel level (see the module docstring for the measurement).
CROSS_KERNEL_AUC = 0.03
CROSS_KERNEL_THRESHOLD = 0.06
_VIGIL = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"


def _leaves(value: JSONValue, path: str = "") -> dict[str, JSONValue]:
    """Flatten nested JSON into ``{"a.b.c": leaf}``."""
    if isinstance(value, dict):
        return {k: v for key, child in value.items() for k, v in _leaves(child, f"{path}.{key}".strip(".")).items()}
    return {path: value}


def _close(a: JSONValue, b: JSONValue) -> bool:
    """Real numbers within :data:`TOLERANCE`; counts, text and missing values exactly."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        return abs(float(a) - float(b)) <= TOLERANCE  # type: ignore[arg-type]
    return a == b


def _disagreements(expected: JSONValue, actual: JSONValue) -> list[str]:
    """The leaves on which two cards' metrics disagree, one line each."""
    want, got = _leaves(expected), _leaves(actual)
    bad = [f"{key}: missing from one card" for key in sorted(set(want) ^ set(got))]
    bad += [
        f"{k}: card {want[k]!r}, reproduction {got[k]!r}"
        for k in sorted(set(want) & set(got))
        if not _close(want[k], got[k])
    ]
    return bad


def test_disagreements_compare_numbers_within_the_tolerance_and_the_rest_exactly() -> None:
    card: JSONValue = {"auc": 0.90, "n": 300, "site": {"gap": 0.10, "source": "x"}}
    assert _disagreements(card, {"auc": 0.909, "n": 300, "site": {"gap": 0.10, "source": "x"}}) == []
    assert _disagreements(card, {"auc": 0.911, "n": 301, "site": {"gap": 0.10, "source": "y"}}) == [
        "auc: card 0.9, reproduction 0.911",
        "n: card 300, reproduction 301",
        "site.source: card 'x', reproduction 'y'",
    ]
    assert _disagreements(card, {"auc": 0.90, "n": 300}) == [
        "site.gap: missing from one card",
        "site.source: missing from one card",
    ]


def test_vigil_train_seed_0_reproduces_the_bundled_card(tmp_path: Path) -> None:
    # Prepare: the README's cohorts, one per core (each is a minute of one core's work; spawned,
    # since a forked child of a process holding torch's thread pool can hang)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        evaluation = pool.submit(generate_cohort, tmp_path / "eval", seed=1, studies_per_site=300)
        generate_cohort(tmp_path / "cohort", seed=0)
        evaluation.result()
    bundled = read_card(BUNDLED_DIR / "card.json")
    # Execute: the README's command, in its own process as a user runs it
    subprocess.run(
        [sys.executable, "-c", _VIGIL, "train", "--cohort", str(tmp_path / "cohort"), "--eval-cohort",
         str(tmp_path / "eval"), "--out", str(tmp_path / "out"), "--seed", "0", "--json"],
        check=True, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    card = read_card(tmp_path / "out" / "card.json")
    # Assert
    same_bytes = sha256_file(tmp_path / "out" / f"{card.version}.pt") == bundled.weights["sha256"]
    print(f"\nreproduced card metrics within {TOLERANCE}; weights byte-identical: {same_bytes}")
    print(json.dumps({"benchmark_auc": card.metrics["benchmark_auc"], "threshold": card.operating_threshold}))
    assert card.version == bundled.version
    hyper = {k: v for k, v in bundled.hyperparameters.items() if k not in {"wall_seconds"}}
    assert {k: card.hyperparameters.get(k) for k in hyper} == hyper
    if _kernel_level() == bundled.environment.get("cpu_capability"):
        assert _disagreements(bundled.metrics, card.metrics) == []
        assert abs(card.operating_threshold - bundled.operating_threshold) <= TOLERANCE
        return
    print(f"other CPU kernel level ({_kernel_level()}): {_disagreements(bundled.metrics, card.metrics)}")
    assert set(_leaves(card.metrics)) == set(_leaves(bundled.metrics))
    auc, want = card.metrics["benchmark_auc"], bundled.metrics["benchmark_auc"]
    assert isinstance(auc, float) and isinstance(want, float) and abs(auc - want) <= CROSS_KERNEL_AUC
    assert abs(card.operating_threshold - bundled.operating_threshold) <= CROSS_KERNEL_THRESHOLD


def _kernel_level() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())
