"""The per-version explanation report: computed on the cohort, stored, audited, read back as sentences."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from core.cli.explain_report import register_explain_report
from core.errors import BadInputError
from core.explain.faithfulness import FaithfulnessOptions
from core.explain.gradient_shap import GradientShapOptions
from core.explain.kernel_shap import KernelShapOptions
from core.explain.result import ExplainMethod
from core.services import explain_report, models
from core.store import audit_log
from tests.core.services.conftest import Env
from tests.factories import write_random_model

torch.set_num_threads(2)

TINY = explain_report.ReportOptions(
    max_cases=2,
    n_baselines=2,
    include_train=True,
    faithfulness=FaithfulnessOptions(steps=4),
    gradient_shap=GradientShapOptions(n_samples=2, batch_size=2),
    kernel_shap=KernelShapOptions(n_samples=4, batch_size=4, n_segments=8),
)


def _create(env: Env, cohort: Path, version: str | None = None) -> explain_report.StoredReport:
    return explain_report.create_report(
        env.sf,
        version or env.card.version,
        models_dir=env.models_dir,
        cohort_dir=cohort,
        options=TINY,
        actor="t",
        now=env.now,
    )


def test_report_is_stored_audited_and_read_back(env: Env, small_cohort: Path) -> None:
    # Prepare / Execute
    stored = _create(env, small_cohort)

    # Assert: every method, the cohort's positives, the audit entry carries the report's hash.
    report = stored.report
    assert [m.method for m in report.methods] == list(ExplainMethod)
    assert all(m.n_cases == len(report.params["cases"]) > 0 for m in report.methods)  # type: ignore[arg-type]
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.action == "explain_report_created" and last.subject == env.card.version
    assert last.payload["report_sha256"] == stored.sha256
    again = explain_report.latest_report(env.sf, env.card.version)
    assert again is not None and again.id == stored.id and again.report.to_dict() == report.to_dict()
    sentences = explain_report.trust_sentences(env.sf, env.card.version)
    assert set(sentences) == set(ExplainMethod) and all(env.card.version in s for s in sentences.values())


def test_without_a_report_the_sentence_says_so(env: Env) -> None:
    # Prepare / Execute
    sentences = explain_report.trust_sentences(env.sf, env.card.version)

    # Assert
    assert all(s.startswith("No faithfulness report exists for model") for s in sentences.values())


def test_a_version_whose_target_layer_is_gone_writes_nothing(env: Env, small_cohort: Path, tmp_path: Path) -> None:
    # Prepare: a registered version whose card names a layer the network does not have.
    card = write_random_model(tmp_path / "bad", version="test-broken-0.0.1", seed=2)
    card_path = tmp_path / "bad" / "card.json"
    data = json.loads(card_path.read_text())
    data["target_layer"] = "layer9"
    card_path.write_text(json.dumps(data))
    from core.models.card import read_card

    models.register_model(
        env.sf, read_card(card_path), source_dir=tmp_path / "bad", models_dir=env.models_dir, actor="t", now=env.now
    )
    with env.sf() as s:
        before = audit_log.count_entries(s)

    # Execute / Assert
    with pytest.raises(BadInputError, match="'test-broken-0.0.1'.*'layer9' does not exist"):
        _create(env, small_cohort, version=card.version)
    with env.sf() as s:
        assert audit_log.count_entries(s) == before
    assert explain_report.latest_report(env.sf, card.version) is None


def test_cli_shows_the_stored_report_and_refuses_when_none(
    env: Env, small_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the command as the lead wires it.
    monkeypatch.setenv("VIGIL_HOME", str(env.settings.home))
    monkeypatch.setenv("VIGIL_DATABASE_URL", env.settings.database_url)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")

    def add(s: Any, name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = s.add_parser(name, help=help_)
        p.add_argument("--json", action="store_true")
        return p

    register_explain_report(sub, add)
    args = parser.parse_args(["explain-report", env.card.version, "--latest", "--json"])

    # Execute / Assert
    with pytest.raises(BadInputError, match="no stored explanation report"):
        args.handler(args)
    stored = _create(env, small_cohort)
    outcome = args.handler(args)
    assert outcome.data["report_sha256"] == stored.sha256 and len(outcome.data["methods"]) == 3
    assert "Grad-CAM" in outcome.text
