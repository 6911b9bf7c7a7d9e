"""``vigil train --seed 0`` reproduces the bundled model's card: every metric within 0.01.

Runs the README's reproduction commands as a user would (fresh training and evaluation cohorts,
then ``vigil train`` in its own process with the default recipe) and compares the new card's
metrics with the committed card's. The bundled recipe trains in float64, so the figures should
agree to rounding on any machine; byte-identical weights are reported, not required (another
CPU's float64 kernels may round the last bits differently).

About 6 minutes on 2 CPU threads: the slowest test in the suite, and the only check of the
model card's reproducibility claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.models.card import read_card
from core.models.loading import BUNDLED_DIR, sha256_file
from core.sampledata import generate_cohort
from core.types import JSONValue

pytestmark = pytest.mark.slow

TOLERANCE = 0.01
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
    # Prepare: the README's cohorts
    generate_cohort(tmp_path / "cohort", seed=0)
    generate_cohort(tmp_path / "eval", seed=1, studies_per_site=300)
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
    assert _disagreements(bundled.metrics, card.metrics) == []
    assert abs(card.operating_threshold - bundled.operating_threshold) <= TOLERANCE
    hyper = {k: v for k, v in bundled.hyperparameters.items() if k not in {"wall_seconds"}}
    assert {k: card.hyperparameters.get(k) for k in hyper} == hyper
