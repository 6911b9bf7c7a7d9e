"""``vigil explain-report VERSION``: the faithfulness and sanity report of a model version's explanations.

Wired into the command tree by ``register_explain_report(sub, add)``, the same shape as the
``_register_*`` functions of :mod:`core.cli.commands`.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._args import bounded_int, input_dir, seed
from core.cli._output import Outcome, progress_bar
from core.cli._paths import check_input_dir
from core.config import load_settings
from core.errors import BadInputError

if TYPE_CHECKING:  # captum, torch, numpy and sqlalchemy: imported by the handler, not by the parser
    from core.explain.report import MethodFigures
    from core.services.explain_report import ReportOptions

__all__ = ["register_explain_report"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: Upper bounds: far above the defaults, low enough that a typo cannot run for days or exhaust memory.
MAX_REPORT_CASES = 1000
MAX_STEPS = 1000
MAX_SHAP_SAMPLES = 10_000


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_explain_report(sub: Any, add: AddParser) -> None:
    """Attach ``explain-report`` to the subparsers ``sub``."""
    p = add(
        sub,
        "explain-report",
        "faithfulness and sanity report of every explanation method for a model version (computed, stored, audited)",
    )
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--cohort", type=input_dir, default=None, help="cohort folder with manifest.csv and masks.npz")
    p.add_argument("--latest", action="store_true", help="show the stored report instead of computing one")
    p.add_argument(
        "--max-cases",
        type=bounded_int(1, MAX_REPORT_CASES),
        default=16,
        help=f"positive cases explained, 1 to {MAX_REPORT_CASES} (default 16)",
    )
    p.add_argument("--include-train", action="store_true", help="also use the benchmark training split's positives")
    p.add_argument(
        "--steps",
        type=bounded_int(1, MAX_STEPS),
        default=20,
        help=f"points per deletion/insertion curve, 1 to {MAX_STEPS} (default 20)",
    )
    p.add_argument(
        "--gradientshap-samples",
        type=bounded_int(1, MAX_SHAP_SAMPLES),
        default=32,
        help=f"GradientShap samples per map, 1 to {MAX_SHAP_SAMPLES} (default 32)",
    )
    p.add_argument(
        "--kernelshap-samples",
        type=bounded_int(2, MAX_SHAP_SAMPLES),
        default=128,
        help=f"KernelShap samples per map, 2 to {MAX_SHAP_SAMPLES} (default 128)",
    )
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.set_defaults(handler=_explain_report)


def _options(args: argparse.Namespace) -> ReportOptions:
    from core.explain.faithfulness import FaithfulnessOptions
    from core.explain.gradient_shap import GradientShapOptions
    from core.explain.kernel_shap import KernelShapOptions
    from core.services import explain_report

    if args.max_cases < 1 or args.steps < 1:
        raise BadInputError(f"--max-cases and --steps must be >= 1, got {args.max_cases}, {args.steps}")
    return explain_report.ReportOptions(
        max_cases=args.max_cases,
        include_train=args.include_train,
        faithfulness=FaithfulnessOptions(steps=args.steps, seed=args.seed),
        gradient_shap=GradientShapOptions(n_samples=args.gradientshap_samples, seed=args.seed),
        kernel_shap=KernelShapOptions(n_samples=args.kernelshap_samples, seed=args.seed),
    )


def _fmt(v: float, spec: str = ".2f") -> str:
    return "n/a" if math.isnan(v) else format(v, spec)


def _row(m: MethodFigures) -> str:
    from core.explain.report import trust_level

    return (
        f"{m.method.label:<13} {m.n_hits:>3}/{m.n_cases:<3} (chance {_fmt(m.pointing_chance, '.1%')})  "
        f"del {_fmt(m.deletion_auc)} vs {_fmt(m.deletion_auc_random)}  "
        f"ins {_fmt(m.insertion_auc)} vs {_fmt(m.insertion_auc_random)}  "
        f"rand rho {_fmt(m.randomization_spearman)} (erased {m.n_random_flat})  {trust_level(m)}"
    )


def _explain_report(args: argparse.Namespace) -> Outcome:
    from core.services import explain_report
    from core.services.store import open_store, utc_now

    if args.cohort is not None:
        check_input_dir(args.cohort)
    settings = load_settings(os.environ)  # the edge: configuration is read here
    sf = open_store(settings)
    if args.latest:
        stored = explain_report.latest_report(sf, args.version)
        if stored is None:
            raise BadInputError(
                f"no stored explanation report for {args.version!r}: run `vigil explain-report {args.version}`"
            )
    else:
        options = _options(args)
        with progress_bar(len(options.methods), "methods", enabled=not args.json) as advance:
            stored = explain_report.create_report(
                sf,
                args.version,
                models_dir=settings.home / "models",
                cohort_dir=args.cohort or settings.sample_data_dir,
                options=options,
                actor=_actor(),
                now=utc_now,
                progress=lambda _label: advance(1),
            )
    report = stored.report
    data = {"report_id": stored.id, "report_sha256": stored.sha256, "created_at": stored.created_at, **report.to_dict()}
    header = "method        pointing             deletion AUC     insertion AUC    randomization"
    lines = [f"explanation report {stored.id} for {report.model_version} ({stored.sha256[:12]})", header]
    lines += [_row(m) for m in report.methods]
    lines += [f"- {report.sentence(m.method)}" for m in report.methods]
    return Outcome(data, "\n".join(lines))
