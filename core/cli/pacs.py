"""``vigil pacs``: pull new studies from each site's PACS over DICOMweb, watch it, push results back.

Wired into the command tree by ``register_pacs(sub, add)``. Each site's endpoint comes from its
``[pacs.SITE]`` table in ``vigil.toml``; its secret is read here, at the edge, from the
environment variable that table names. Services (and through them requests, pydicom and torch)
are imported inside the handlers, so building the parser stays cheap.

SIGTERM or SIGINT stops a pull or a watch after the instance in hand, or at once during a pause
between retries (the clients wait on the same event): what was ingested stays, marked, and the
next run resumes after it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from core.cli._args import bounded_int
from core.cli._output import Outcome, one_line
from core.cli._signals import stop_on_signals
from core.config import PacsEndpoint, Settings, load_settings
from core.errors import PacsConfigError

if TYPE_CHECKING:
    from core.imaging.dicomweb import DicomwebClient
    from core.services.pacs import Predictor, PullReport
    from core.store.engine import SessionFactory

__all__ = ["MAX_INTERVAL_S", "register_pacs"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: The longest pause between two polls of ``vigil pacs watch`` (one day).
MAX_INTERVAL_S: Final = 86_400
#: How many days back ``vigil pacs watch`` searches when ``--since`` is not given.
MAX_LOOKBACK_DAYS: Final = 3650


def _settings() -> Settings:
    return load_settings(os.environ)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_pacs(sub: Any, add: AddParser) -> None:
    """Attach ``pacs pull``, ``pacs watch``, ``pacs push`` and ``pacs check`` to the subparsers ``sub``."""
    p = add(sub, "pacs", "DICOMweb: pull new studies from each site's PACS, watch it, push results back")
    psub = p.add_subparsers(dest="pacs_command", required=True, parser_class=type(p))
    g = add(psub, "pull", "retrieve new studies dated SINCE or later through the ingest gate, and predict them")
    g.add_argument("--since", type=_day, required=True, metavar="DATE", help="first study date (YYYY-MM-DD)")
    _site_and_predict(g)
    g.set_defaults(handler=_pull)
    g = add(psub, "watch", "pull every INTERVAL seconds until stopped (SIGTERM); for a service manager")
    g.add_argument(
        "--interval",
        type=bounded_int(1, MAX_INTERVAL_S),
        default=60,
        metavar="S",
        help=f"seconds between polls, 1 to {MAX_INTERVAL_S} (default 60)",
    )
    g.add_argument("--since", type=_day, default=None, metavar="DATE", help="first study date (default: see --days)")
    g.add_argument(
        "--days",
        type=bounded_int(0, MAX_LOOKBACK_DAYS),
        default=1,
        metavar="N",
        help="without --since: search studies of the last N days before today, re-evaluated each poll (default 1)",
    )
    _site_and_predict(g)
    g.set_defaults(handler=_watch)
    g = add(psub, "push", "send a study's result (SR) and Grad-CAM objects back to its site's PACS (STOW-RS)")
    g.add_argument("study_uid", metavar="STUDY_UID")
    g.set_defaults(handler=_push)
    g = add(psub, "check", "test the connection and credentials of each site's PACS")
    g.add_argument("--site", default=None, help="only this site (default: every site with a PACS)")
    g.set_defaults(handler=_check)


def _site_and_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", default=None, help="only this site (default: every site with a PACS)")
    parser.add_argument("--no-predict", action="store_true", help="store the studies without scoring them")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD, got {text!r}") from None


def _configured_sites(settings: Settings, site: str | None) -> list[str]:
    """The sites to pull, each with a PACS configured.

    Raises
    ------
    PacsConfigError
        None is configured, or ``site`` has no PACS.
    """
    if site is not None:
        settings.pacs_endpoint(site)
        return [site]
    if not settings.pacs:
        raise PacsConfigError("(any)", "no [pacs.SITE] table in the configuration (README: Connecting to the PACS)")
    return [e.site for e in settings.pacs]


def _clients(settings: Settings, stop: threading.Event | None = None) -> Callable[[PacsEndpoint], DicomwebClient]:
    """What builds each site's client: answers capped at ``max_file_mb``, retry pauses ended by ``stop``."""
    from core.services.pacs import client_for

    def make(endpoint: PacsEndpoint) -> DicomwebClient:
        secret = endpoint.secret(os.environ)  # the edge: the secret's only read
        return client_for(endpoint, secret, stop=stop, max_response_bytes=settings.max_file_bytes)

    return make


def _client(endpoint: PacsEndpoint) -> DicomwebClient:
    """One site's client, for a connection test (no stop event: a test is one short request)."""
    return _clients(_settings())(endpoint)


def _predictor(settings: Settings, sf: SessionFactory, no_predict: bool) -> Predictor | None:
    from core.services.pacs import make_predictor
    from core.services.store import utc_now

    if no_predict:
        return None
    return make_predictor(
        sf,
        models_dir=settings.home / "models",
        batch_size=settings.batch_size,
        actor=_actor(),
        now=utc_now,
        maps_dir=settings.artifacts_dir,
    )


def _run_pull(  # noqa: PLR0913 - keyword-only; one poll's inputs, built once by the command
    settings: Settings,
    sf: SessionFactory,
    *,
    sites: list[str],
    since: date,
    predict: Predictor | None,
    stop: threading.Event,
) -> PullReport:
    from core.services.pacs import pull_sites
    from core.services.store import utc_now

    clients = _clients(settings, stop)
    return pull_sites(
        settings, sf, clients, sites_=sites, since=since, actor=_actor(), now=utc_now, predict=predict, stop=stop
    )


def _pull(args: argparse.Namespace) -> Outcome:
    from core.services.store import open_store

    settings = _settings()
    sites = _configured_sites(settings, args.site)
    sf = open_store(settings)
    with stop_on_signals() as stop:
        report = _run_pull(
            settings,
            sf,
            sites=sites,
            since=args.since,
            predict=_predictor(settings, sf, args.no_predict),
            stop=stop,
        )
    if args.site is not None and report.failures:  # the one site asked for: its error is the command's
        raise report.failures[0].error
    return Outcome(report.to_dict(), report.summary(), ok=not report.failures)


def _watch(args: argparse.Namespace) -> Outcome:
    from core.services.pacs import watch
    from core.services.store import open_store

    settings = _settings()
    sites = _configured_sites(settings, args.site)
    for site in sites:  # a missing PACS or secret stops here, not in the loop
        settings.pacs_endpoint(site).secret(os.environ)
    sf = open_store(settings)
    # Built once: the predictor keeps the loaded model across polls (it reloads only after a switch).
    predict = _predictor(settings, sf, args.no_predict)
    totals = {"cycles": 0, "stored": 0, "retrieved": 0, "rejected": 0, "failures": 0}

    def cycle_since() -> date:
        return args.since if args.since is not None else datetime.now(UTC).date() - timedelta(days=args.days)

    def on_cycle(report: PullReport) -> None:
        totals["stored"] += sum(s.stored for s in report.sites)
        totals["retrieved"] += sum(s.retrieved for s in report.sites)
        totals["rejected"] += sum(len(s.rejected) for s in report.sites)
        totals["failures"] += len(report.failures)
        if not args.json:
            sys.stderr.write(one_line(report.summary().replace("\n", " | ")) + "\n")

    with stop_on_signals() as stop:
        totals["cycles"] = watch(
            lambda: _run_pull(settings, sf, sites=sites, since=cycle_since(), predict=predict, stop=stop),
            interval_s=args.interval,
            stop=stop,
            on_cycle=on_cycle,
        )
    text = (
        f"stopped after {totals['cycles']} polls: {totals['retrieved']} instances retrieved, "
        f"{totals['stored']} stored, {totals['rejected']} rejected, {totals['failures']} failed polls of a site"
    )
    return Outcome(dict(totals), text)


def _push(args: argparse.Namespace) -> Outcome:
    from core.services import pacs
    from core.services.pacs_auto_push import push_study, refuse_deidentified
    from core.services.store import open_store, utc_now

    settings = _settings()
    sf = open_store(settings)
    site = pacs.study_site(sf, args.study_uid)  # an unknown study stops before anything is made
    refuse_deidentified(settings, site)
    with _clients(settings)(settings.pacs_endpoint(site)) as client:
        report = push_study(sf, settings, client, args.study_uid, actor=_actor(), now=utc_now)
    lines = [f"pushed {len(report.stored)} objects of {report.study_uid} to {report.endpoint}"]
    lines += [f"  refused {uid}: {reason}" for uid, reason in report.failed]
    return Outcome({**report.to_dict(), "site": site}, "\n".join(lines), ok=not report.failed)


def _check(args: argparse.Namespace) -> Outcome:
    from core.services.pacs_status import check_endpoint
    from core.services.store import open_store, utc_now

    settings = _settings()
    endpoints = [settings.pacs_endpoint(args.site)] if args.site is not None else list(settings.pacs)
    if not endpoints:
        return Outcome({"sites": []}, "no site has a PACS configured")
    sf = open_store(settings)  # each test is audited, and is the status the PACS page shows
    rows = [check_endpoint(sf, endpoint, _client, actor=_actor(), now=utc_now) for endpoint in endpoints]
    text = "\n".join(
        f"{r.site}: {'OK' if r.ok else 'FAILED ' + r.error} ({r.url}"
        + (f", {r.latency_ms:.0f} ms)" if r.latency_ms is not None else ")")
        for r in rows
    )
    return Outcome({"sites": [r.to_dict() for r in rows]}, text, ok=all(r.ok for r in rows))
