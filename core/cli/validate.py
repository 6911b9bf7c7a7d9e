"""``vigil validate`` (the pilot-drift gate and labelling plan) and ``vigil calibrator`` (per-site recalibration).

Wired into the command tree by ``register_validate(sub, add)``, the same shape as the
``_register_*`` functions of :mod:`core.cli.commands`.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._args import bounded_int, positive_id, seed
from core.cli._output import Outcome
from core.config import load_settings

if TYPE_CHECKING:  # numpy, scipy and sqlalchemy: imported by the handlers, not by the parser
    from core.metrics.pilot_drift import DriftOptions
    from core.store.engine import SessionFactory

__all__ = ["AUTO_METHOD", "MAX_BOOTSTRAP", "MAX_CASES", "MAX_FOLDS", "register_validate"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: Upper bounds on the counts: far above any useful value, low enough that a typo cannot run for hours.
MAX_BOOTSTRAP = 100_000
MAX_CASES = 1_000_000
MAX_FOLDS = 100
#: ``core.services.calibration.AUTO`` (copied so that building the parser does not import numpy;
#: ``tests/test_cli_imports.py`` keeps the copies equal).
AUTO_METHOD = "auto"


def _store() -> SessionFactory:
    from core.services.store import open_store

    # The edge: the CLI reads the environment here and nowhere deeper.
    return open_store(load_settings(os.environ))


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_validate(sub: Any, add: AddParser) -> None:
    """Attach ``validate`` and ``calibrator`` to the subparsers ``sub``."""
    p = add(sub, "validate", "pilot drift: every site's AUC gap to the benchmark; exit 1 when a site exceeds --max-gap")
    p.add_argument("--max-gap", type=float, default=0.03, help="target: largest acceptable AUC gap (default 0.03)")
    p.add_argument("--ci-bound", action="store_true", help="judge the gap's upper confidence bound, not its estimate")
    p.add_argument("--site", action="append", default=[], help="report only this deployment site (repeatable)")
    p.add_argument("--model", default=None, help="model version (default: the serving one)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of every interval")
    p.add_argument(
        "--bootstrap",
        type=bounded_int(1, MAX_BOOTSTRAP),
        default=1000,
        help=f"bootstrap replicates per site, 1 to {MAX_BOOTSTRAP} (default 1000)",
    )
    p.add_argument("--seed", type=seed, default=0, help="bootstrap and plan seed (default 0)")
    p.add_argument(
        "--min-cases",
        type=bounded_int(1, MAX_CASES),
        default=20,
        help="labelled cases a site or stratum needs (default 20)",
    )
    p.add_argument(
        "--min-per-class", type=bounded_int(2, MAX_CASES), default=5, help="cases of each class it needs (default 5)"
    )
    p.add_argument("--strict", action="store_true", help="also fail when a site has not enough labelled cases")
    p.add_argument("--plan", action="store_true", help="list the studies to send for labelling instead of gating")
    p.set_defaults(handler=_validate)
    _register_calibrator(sub, add)


def _options(args: argparse.Namespace) -> DriftOptions:
    from core.metrics.pilot_drift import DriftOptions

    return DriftOptions(
        max_gap=args.max_gap,
        use_ci_bound=args.ci_bound,
        confidence_level=args.confidence,
        n_resamples=args.bootstrap,
        random_state=args.seed,
        min_cases=args.min_cases,
        min_per_class=args.min_per_class,
    )


def _validate(args: argparse.Namespace) -> Outcome:
    from core.services import validation
    from core.services.store import utc_now

    options = _options(args)  # bad values exit 2 before the database is touched
    sf = _store()
    if args.plan:
        plan = validation.plan_labelling(
            sf, model_version=args.model, sites=args.site, options=options, random_state=args.seed
        )
        lines = [
            f"{p.site}: {p.n_labelled} labelled, {p.n_required if p.n_required is not None else 'no plan'} needed; "
            f"send {p.n_to_label}{f' (still {p.shortfall} short)' if p.shortfall else ''}"
            for p in plan.plans
        ]
        data = plan.to_dict()
        data["sites"] = [p.to_dict() for p in plan.plans]
        return Outcome(data, "\n".join(lines) or "no deployment sites")
    report = validation.validate(
        sf, model_version=args.model, sites=args.site, options=options, actor=_actor(), now=utc_now
    )
    short = report.drift.insufficient_sites if args.strict else ()
    text = report.summary() + (f"\nFAIL (--strict): not enough labelled cases at {', '.join(short)}" if short else "")
    return Outcome(report.to_dict(), text, ok=report.passed and not short)


def _register_calibrator(sub: Any, add: AddParser) -> None:
    p = add(sub, "calibrator", "per-site recalibration: fit (proposed), approve, list")
    csub = p.add_subparsers(dest="calibrator_command", required=True, parser_class=type(p))
    f = add(csub, "fit", "fit a calibrator on a site's labelled cases (cross-validated); stored as proposed")
    f.add_argument("site")
    f.add_argument("--method", default=AUTO_METHOD, help="auto (default), platt or isotonic")
    f.add_argument("--model", default=None, help="model version (default: the serving one)")
    f.add_argument(
        "--folds",
        type=bounded_int(2, MAX_FOLDS),
        default=5,
        help=f"cross-validation folds, 2 to {MAX_FOLDS} (default 5)",
    )
    f.add_argument("--seed", type=seed, default=0, help="fold seed (default 0)")
    f.set_defaults(handler=_calibrator_fit)
    a = add(csub, "approve", "approve a proposed calibrator: it recalibrates the site's scores from now on")
    a.add_argument("id", type=positive_id, help="the calibrator's id (see `vigil calibrator list`)")
    a.set_defaults(handler=_calibrator_approve)
    ls = add(csub, "list", "list calibrators")
    ls.add_argument("--site", default=None)
    ls.add_argument("--model", default=None)
    ls.set_defaults(handler=_calibrator_list)


def _calibrator_fit(args: argparse.Namespace) -> Outcome:
    from core.services import calibration
    from core.services.store import utc_now

    fit = calibration.fit_site_calibrator(
        _store(),
        args.site,
        method=args.method,
        model_version=args.model,
        n_folds=args.folds,
        random_state=args.seed,
        actor=_actor(),
        now=utc_now,
    )
    c = fit.calibrator
    text = (
        f"calibrator {c.id} ({c.method}, revision {c.revision}) for {c.model_version} at {c.site}: "
        f"ECE {c.ece_before:.4f} -> {c.ece_after:.4f} out of fold; proposed, apply with "
        f"`vigil calibrator approve {c.id}`"
    )
    return Outcome(fit.to_dict(), text)


def _calibrator_approve(args: argparse.Namespace) -> Outcome:
    from core.services import calibration
    from core.services.store import utc_now

    c = calibration.approve_site_calibrator(_store(), args.id, actor=_actor(), now=utc_now)
    return Outcome(c.to_dict(), f"calibrator {c.id} approved for {c.model_version} at {c.site}")


def _calibrator_list(args: argparse.Namespace) -> Outcome:
    from core.services import calibration

    found = calibration.list_site_calibrators(_store(), site=args.site, model_version=args.model)
    text = "\n".join(
        f"{c.id:>4}  {c.site:<14} {c.model_version:<22} r{c.revision} {c.method:<9} {c.status:<9} "
        f"ECE {c.ece_before:.4f} -> {c.ece_after:.4f}"
        for c in found
    )
    return Outcome({"calibrators": [c.to_dict() for c in found]}, text or "no calibrators")
