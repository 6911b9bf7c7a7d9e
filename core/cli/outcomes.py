"""``vigil outcomes``: load a ground-truth manifest as a labelled source, and summarise labels by source.

Wired into the command tree by ``register_outcomes(sub, add)``.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._args import input_file
from core.cli._output import Outcome
from core.cli._paths import check_input_file
from core.config import load_settings

if TYPE_CHECKING:  # sqlalchemy and the services: imported by the handlers, not by the parser
    from core.store.engine import SessionFactory

__all__ = ["register_outcomes"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]


def _store() -> SessionFactory:
    from core.services.store import open_store

    return open_store(load_settings(os.environ))


def register_outcomes(sub: Any, add: AddParser) -> None:
    """Attach ``outcomes load-ground-truth`` and ``outcomes summary`` to the subparsers ``sub``."""
    p = add(sub, "outcomes", "the outcome store: labels by source")
    osub = p.add_subparsers(dest="outcomes_command", required=True, parser_class=type(p))
    g = add(osub, "load-ground-truth", "store a ground-truth manifest's labels, marked as source ground_truth")
    g.add_argument("manifest", type=input_file, help="manifest.csv of a cohort (e.g. sample_data/manifest.csv)")
    g.set_defaults(handler=_load_ground_truth)
    add(osub, "summary", "labelled and unlabelled studies per site and source").set_defaults(handler=_summary)


def _load_ground_truth(args: argparse.Namespace) -> Outcome:
    check_input_file(args.manifest)  # a device or FIFO would never end or never start
    from core.services import outcomes
    from core.services.store import utc_now

    result = outcomes.load_ground_truth(_store(), args.manifest, actor=f"cli:{getpass.getuser()}", now=utc_now)
    text = (
        f"{result.loaded} ground-truth labels loaded from {result.manifest} ({result.already_loaded} already "
        f"present, {result.not_in_store} studies not in the store, {result.different_image} whose stored image is "
        "not the manifest's file)"
    )
    return Outcome(result.to_dict(), text)


def _summary(args: argparse.Namespace) -> Outcome:
    from core.services import outcomes

    summary = outcomes.label_summary(_store())
    lines = [f"{summary.n_labelled} of {summary.n_studies} studies labelled; {summary.n_unlabelled} unknown"]
    lines += [
        f"  {site:<14} {c['n_labelled']:>5} labelled / {c['n_studies']:<5} "
        + ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k not in ("n_studies", "n_labelled", "n_unlabelled"))
        for site, c in summary.per_site.items()
    ]
    return Outcome(summary.to_dict(), "\n".join(lines))
