"""BENCHMARKS.md is rendered from recorded JSON: an explanation report becomes its own table."""

from __future__ import annotations

import json
from pathlib import Path

from core.bench.report import render_markdown


def _report(spearman: float) -> dict[str, object]:
    method = {
        "method": "gradcam",
        "n_hits": 3,
        "n_cases": 4,
        "pointing_chance": 0.0125,
        "deletion_auc": 0.2,
        "deletion_auc_random": 0.5,
        "insertion_auc": 0.8,
        "insertion_auc_random": 0.5,
        "randomization_spearman": spearman,
        "trust": "supported",
    }
    params = {
        "cohort_manifest_sha256": "ab" * 32,
        "cases": ["1", "2", "3", "4"],
        "target_layer": "layer2",
        "randomized_layers": ["layer4", "fc"],
    }
    return {
        "model_version": "m-1",
        "report_sha256": "cd" * 32,
        "created_at": "2026-12-03",
        "params": params,
        "methods": [method],
    }


def test_an_explanation_report_renders_as_a_table_beside_the_suites(tmp_path: Path) -> None:
    # Prepare: one report whose randomization test was undefined (NaN in the stored JSON)
    (tmp_path / "explain-report.json").write_text(json.dumps(_report(float("nan"))), encoding="utf-8")

    # Execute
    text = render_markdown(tmp_path, notes="notes")

    # Assert
    assert "## Explanation report `m-1`" in text and "Report `cdcdcdcdcdcd…`" in text
    assert "| Grad-CAM | 3 / 4 (1.25 %) | 0.200 / 0.500 | 0.800 / 0.500 | undefined | supported |" in text
    assert text.endswith("notes")
