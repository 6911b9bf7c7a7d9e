"""``vigil validate``, ``vigil calibrator`` and ``vigil outcomes``: one JSON object, exit 0 / 1 / 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.cli import _add, _Parser
from core.cli._output import emit, exit_code_for
from core.cli.outcomes import register_outcomes
from core.cli.validate import register_validate
from core.errors import VigilError
from core.store.engine import make_engine, make_session_factory, migrate
from tests.core.services.test_validation import seed_pilot_cohort

Run = Callable[..., tuple[int, dict[str, object] | None, str]]


def _main(argv: list[str]) -> int:
    parser = _Parser(prog="vigil")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register_validate(sub, _add)
    register_outcomes(sub, _add)
    args = parser.parse_args(argv)
    try:
        outcome = args.handler(args)
    except VigilError as exc:
        sys.stderr.write(f"vigil: error: {exc}\n")  # as core.cli.main does
        return exit_code_for(exc)
    return emit(outcome, as_json=args.json)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli")
    engine = make_engine(f"sqlite:///{home / 'vigil.db'}")
    migrate(engine)
    seed_pilot_cohort(make_session_factory(engine))
    engine.dispose()
    return home


@pytest.fixture
def run(database: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("VIGIL_HOME", str(database))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{database / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)

    def call(*argv: str) -> tuple[int, dict[str, object] | None, str]:
        code = _main([*argv, "--json"])
        captured = capsys.readouterr()
        return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err

    return call


def test_gate_fails_when_a_site_is_outside_the_target(run: Run) -> None:
    # Execute
    code, data, _ = run("validate", "--max-gap", "0.03", "--bootstrap", "50")

    # Assert
    assert code == 1 and data is not None
    assert isinstance(data["sites"], list) and data["failing_sites"] == ["riverside"]


def test_gate_passes_for_a_site_within_the_target(run: Run) -> None:
    # Execute
    code, data, _ = run("validate", "--site", "northfield", "--bootstrap", "50")

    # Assert
    assert code == 0 and data is not None and data["passed"] is True


def test_strict_fails_when_a_site_lacks_labels(run: Run) -> None:
    # Execute: northfield passes on its own; harbor has 12 labelled cases
    lenient, data, _ = run("validate", "--site", "northfield", "--site", "harbor", "--bootstrap", "50")
    strict, _, _ = run("validate", "--site", "northfield", "--site", "harbor", "--bootstrap", "50", "--strict")

    # Assert
    assert (lenient, strict) == (0, 1)
    assert data is not None and data["insufficient_sites"] == ["harbor"]


def test_ci_bound_judges_the_interval(run: Run) -> None:
    # Execute: northfield's point estimate is within 0.03, its upper bound is not
    code, data, _ = run("validate", "--site", "northfield", "--ci-bound", "--bootstrap", "50")

    # Assert
    assert code == 1 and data is not None and data["gap_judged_on"] == "upper confidence bound"


@pytest.mark.parametrize(("argv", "needle"), [(["--site", "nowhere"], "nowhere"), (["--max-gap", "0.7"], "max_gap")])
def test_bad_input_exits_2(run: Run, argv: list[str], needle: str) -> None:
    # Execute
    code, data, err = run("validate", *argv)

    # Assert
    assert code == 2 and data is None and needle in err


def test_plan_lists_studies_to_label(run: Run) -> None:
    # Execute
    code, data, _ = run("validate", "--plan", "--bootstrap", "20")

    # Assert
    assert code == 0 and data is not None
    plans = {p["site"]: p for p in data["plans"]}  # type: ignore[union-attr]
    assert plans["harbor"]["n_to_label"] == 10 and len(plans["harbor"]["selected"]) == 10


def test_calibrator_fit_list_approve(run: Run) -> None:
    # Execute
    fit_code, fitted, _ = run("calibrator", "fit", "riverside", "--method", "platt")
    cal_id = fitted["calibrator"]["id"]  # type: ignore[index]
    approve_code, approved, _ = run("calibrator", "approve", str(cal_id))
    again_code, _, _ = run("calibrator", "approve", str(cal_id))
    list_code, listed, _ = run("calibrator", "list", "--site", "riverside")

    # Assert
    assert (fit_code, approve_code, again_code, list_code) == (0, 0, 2, 0)
    assert approved is not None and approved["status"] == "approved"
    assert listed is not None and [c["id"] for c in listed["calibrators"]] == [cal_id]  # type: ignore[union-attr]


def test_outcomes_summary_and_missing_manifest(run: Run, tmp_path: Path) -> None:
    # Execute
    code, data, _ = run("outcomes", "summary")
    missing_code, _, _ = run("outcomes", "load-ground-truth", str(tmp_path / "none.csv"))

    # Assert
    assert code == 0 and data is not None and data["by_source"] == {"ground_truth": 1202}
    assert missing_code == 2
