"""``vigil validate-change``: the change-control gate of a challenger against the serving version."""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import Any

from core.cli._args import input_file, output_file
from core.cli._output import Outcome
from core.cli._paths import check_input_file
from core.config import load_settings

__all__ = ["register_change"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]


def register_change(sub: Any, add: AddParser) -> None:
    """Attach ``validate-change``."""
    p = add(
        sub,
        "validate-change",
        "evaluate CHALLENGER against the serving version on the locked hold-out by the change-control plan; "
        "store and audit the report; exit 1 when the gate fails",
    )
    p.add_argument("challenger", metavar="CHALLENGER")
    p.add_argument(
        "--plan",
        type=input_file,
        default=None,
        metavar="FILE",
        help="the plan (TOML; default: the change_control_plan setting, else the bundled plan)",
    )
    p.add_argument("--report", type=output_file(".html"), default=None, metavar="FILE.html", help="write the report")
    p.add_argument(
        "--site",
        default=None,
        metavar="SITE",
        help="gate against the version serving SITE (default: the fleet-wide serving version)",
    )
    p.add_argument(
        "--scope",
        action="append",
        default=None,
        metavar="SITE",
        help="judge for this registered site only (repeat for several): its hold-out studies, against the version "
        "serving it; a passing scoped gate clears `deploy promote --site` there, never a fleet-wide promotion",
    )
    p.set_defaults(handler=_validate_change)


def _validate_change(args: argparse.Namespace) -> Outcome:
    from core.registry.html import render_gate_html
    from core.registry.plan import read_plan

    settings = load_settings(os.environ)
    if args.plan is not None:
        check_input_file(args.plan)
    from core.services import change_control
    from core.services.store import open_store, utc_now

    plan = read_plan(args.plan or change_control.plan_path(settings))  # refused before any model loads
    result = change_control.validate_change(
        open_store(settings),
        args.challenger,
        plan=plan,
        models_dir=settings.home / "models",
        actor=f"cli:{getpass.getuser()}",
        now=utc_now,
        batch_size=settings.batch_size,
        site=args.site,
        scope=args.scope,
    )
    data = result.to_dict()
    if args.report is not None:
        html = render_gate_html(
            data,
            validation_id=result.record.id,
            created_at=result.record.created_at.isoformat(),
            report_sha256=result.record.report_sha256,
        )
        args.report.write_text(html, encoding="utf-8")
        data["report_file"] = str(args.report)
    verdict = "PASSED" if result.report.passed else "FAILED: " + "; ".join(result.report.failed)
    scope = "" if args.scope is None else f", scope {', '.join(result.record.scope or ())}"
    lines = [f"gate {verdict} (validation {result.record.id}, {result.challenger} vs {result.champion}{scope})"]
    lines += [
        f"  {'ok  ' if c.passed else 'skip' if c.passed is None else 'FAIL'} {c.name}: {c.detail}"
        for c in result.report.criteria
    ]
    if (earlier := result.record.report.get("holdout_earlier_uses")) and isinstance(earlier, int):
        lines.append(
            f"  note: this hold-out was used by {earlier} earlier gate run(s); repeated looks judge too kindly"
        )
    if result.report.significant_change:
        lines.append("  a significant change: it needs a new regulatory submission")
    return Outcome(data, "\n".join(lines), ok=result.report.passed)
