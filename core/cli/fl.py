"""``vigil fl``: federated training on Flower, run on this machine over loopback.

- ``vigil fl keys SITE...``: generate and register each site's update-signing key (Ed25519; the
  private key under ``VIGIL_HOME/fl-keys``, mode 0600).
- ``vigil fl run --sites A,B --rounds R``: start a SuperLink and one SuperNode per site as
  subprocesses on free loopback ports, run the Flower app, stream each round, stop every process
  on exit, error or Ctrl-C, record the run with its audit entries, and register the aggregate as
  a challenger (``--version``). ``--secure-aggregation`` runs FedAvg under Flower's SecAgg+ instead
  (not with a robust strategy or differential privacy).
- ``vigil fl show RUN`` / ``vigil fl list``: what the store holds.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from core.cli._args import bounded_int, finite_float, input_file, output_file, version_name
from core.cli._output import Outcome
from core.cli._paths import check_input_file
from core.config import Settings, load_settings
from core.errors import BadInputError
from core.types import JSONObject

__all__ = ["register_fl"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]
#: ``--strategy`` names (``core.federated.plan.STRATEGIES``, copied so that ``vigil --help`` loads no Flower).
STRATEGY_CHOICES: Final = ("fedavg", "median", "trimmed-mean", "krum", "multikrum", "bulyan")


def register_fl(sub: Any, add: AddParser) -> None:
    """Attach ``fl keys``, ``fl run``, ``fl show`` and ``fl list``."""
    fl = sub.add_parser("fl", help="federated training across sites on Flower")
    fl_sub = fl.add_subparsers(dest="fl_command", required=True, parser_class=type(fl))
    keys = add(fl_sub, "keys", "generate and register each site's Ed25519 key for signing its updates")
    keys.add_argument("sites", nargs="+", metavar="SITE", help="registered sites")
    keys.add_argument(
        "--public-key",
        type=input_file,
        default=None,
        metavar="FILE.pem",
        help="register this Ed25519 public key (generated at the hospital) instead of generating one; one SITE",
    )
    keys.set_defaults(handler=_keys)
    data = add(fl_sub, "site-data", "write a site's study manifest for its SuperNode (labels of record, no hold-out)")
    data.add_argument("site", metavar="SITE")
    data.add_argument("--out", type=output_file(".json"), required=True, metavar="FILE.json")
    data.set_defaults(handler=_site_data)
    run = add(fl_sub, "run", "run federated training on this machine: a SuperLink and one SuperNode per site")
    _run_options(run)
    run.add_argument("--timeout", type=bounded_int(10, 86400), default=3600, help="seconds for the whole run")
    # Set by the Federated page, which made the launch row under this key and audits as its user.
    run.add_argument("--run-key", type=_run_key, default=None, help=argparse.SUPPRESS)
    run.add_argument("--actor", default=None, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)
    prepare = add(fl_sub, "prepare", "write a multi-hospital run's folder (plan, starting weights) for `flwr run`")
    _run_options(prepare)
    prepare.set_defaults(handler=_prepare_only)
    record = add(fl_sub, "record", "record a run prepared with `fl prepare` once `flwr run` has ended")
    record.add_argument("run", metavar="RUN")
    record.add_argument("--version", type=version_name, default=None, help="register the aggregate under this name")
    record.set_defaults(handler=_record)
    show = add(fl_sub, "show", "a federated run as stored: sites, rounds, per-site metrics, update hashes")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(handler=_show)
    listing = add(fl_sub, "list", "federated runs, newest first")
    listing.set_defaults(handler=_list)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sites", required=True, help="comma-separated registered sites, e.g. northfield,riverside")
    p.add_argument("--rounds", type=bounded_int(1, 1000), required=True, help="federated rounds")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default="fedavg", help="aggregation (default fedavg)")
    p.add_argument("--from", dest="parent", default=None, help="the registered version to start from (serving)")
    p.add_argument("--version", type=version_name, default=None, help="register the aggregate under this name")
    p.add_argument("--min-sites", type=bounded_int(1, 1000), default=None, help="quorum per round (all sites)")
    p.add_argument("--local-epochs", type=bounded_int(1, 100), default=1, help="local epochs per round (1)")
    p.add_argument("--learning-rate", type=finite_float(0.0, 1.0, above=True), default=3e-4, help="AdamW (3e-4)")
    p.add_argument("--batch-size", type=bounded_int(1, 1024), default=8, help="films per step (8)")
    p.add_argument("--max-studies", type=bounded_int(0, 10**6), default=0, help="per site, 0 = all (0)")
    p.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, help="seeds the sites' splits and training")
    dp = p.add_argument_group("client-level differential privacy (DP-FedAvg; fedavg only)")
    dp.add_argument("--dp-noise-multiplier", type=finite_float(0.0, above=True), default=None, help="z = sigma / C")
    dp.add_argument("--dp-clipping-norm", type=finite_float(0.0, above=True), default=None, help="C, update L2 bound")
    dp.add_argument("--dp-delta", type=finite_float(0.0, 1.0, above=True), default=1e-5, help="delta (1e-5)")
    dp.add_argument("--epsilon-budget", type=finite_float(0.0, above=True), default=None, help="per site, all runs")
    sa = p.add_argument_group("secure aggregation (Flower's SecAgg+; fedavg only, not with differential privacy)")
    sa.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="the server sees only the sum of the sites' masked updates, never one site's",
    )
    sa.add_argument(
        "--secagg-threshold",
        type=bounded_int(2, 1000),
        default=None,
        help="sites needed to unmask the sum and finish a round (the quorum, at least 2)",
    )
    sa.add_argument(
        "--secagg-clipping-range",
        type=finite_float(0.0, above=True),
        default=8.0,
        help="largest change of one parameter a site may send in a round (8)",
    )


def _settings() -> Settings:
    return load_settings(os.environ)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _keys(args: argparse.Namespace) -> Outcome:
    from core.services import federated
    from core.services.store import open_store, utc_now

    if args.public_key is not None and len(args.sites) != 1:
        raise BadInputError(f"--public-key registers one site's key, got {len(args.sites)} sites")
    public_pem = None
    if args.public_key is not None:
        check_input_file(args.public_key)
        public_pem = args.public_key.read_bytes()
    settings = _settings()
    sf = open_store(settings)
    registered = {
        site: federated.register_site_key(
            sf, site, keys_dir=settings.home / "fl-keys", actor=_actor(), now=utc_now, public_pem=public_pem
        )
        for site in args.sites
    }
    text = "\n".join(f"registered {site}'s signing key (public key SHA-256 {d})" for site, d in registered.items())
    return Outcome({"registered": registered}, text)


def _site_data(args: argparse.Namespace) -> Outcome:
    from core.services import federated
    from core.services.store import open_store

    n = federated.export_site_manifest(open_store(_settings()), args.site, args.out)
    return Outcome(
        {"site": args.site, "studies": n, "out": str(args.out)}, f"wrote {n} studies of {args.site} to {args.out}"
    )


def _sites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",")]
    if not all(names):
        raise BadInputError(f"--sites must be comma-separated site names, got {text!r}")
    return names


def _run_key(text: str) -> str:
    from core.services.federated_live import RUN_KEY

    if not RUN_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a run key looks like fl-20270101T120000-0a1b2c, got {text!r}")
    return text


def _run(args: argparse.Namespace) -> Outcome:
    from core.services import federated_live
    from core.services.store import open_store, utc_now

    _options(args)  # a bad combination of options is named before the store is opened
    settings = _settings()
    sf = open_store(settings)
    run = args.run_key or federated_live.new_run_key(utc_now())
    federated_live.refuse_if_running(sf, run, now=utc_now())
    try:
        outcome = _run_claimed(args, settings, sf, run)
    except BaseException as exc:
        federated_live.end_launch(sf, run, reason=f"{type(exc).__name__}: {exc}", now=utc_now)
        raise
    federated_live.end_launch(sf, run, reason="", now=utc_now)
    return outcome


def _run_claimed(args: argparse.Namespace, settings: Settings, sf: Any, run_key: str) -> Outcome:
    import core
    from core.federated.launcher import FederationFailedError, LocalFederation, stage_app
    from core.services import federated, federated_live
    from core.services.store import utc_now

    prepared = _prepare(args, settings, sf, on_this_machine=True, run=run_key)
    request: JSONObject = {"sites": args.sites, "rounds": args.rounds, "strategy": args.strategy, "from": "cli"}
    federated_live.claim_launch(
        sf, run_key, pid=os.getpid(), actor=args.actor or _actor(), request=request, now=utc_now()
    )
    run, sites = prepared.plan.run, list(prepared.plan.sites)
    app_dir = stage_app(Path(core.__file__).parent, prepared.run_dir / "app")
    say = _progress(enabled=not args.json)
    say({"event": "launching", "run": run, "sites": ",".join(sites)})
    events: list[JSONObject] = []
    seen: list[JSONObject] = []

    def on_event(event: JSONObject) -> None:
        say(event)
        seen.append(event)
        federated_live.note_progress(sf, run, seen, expected=prepared.plan.expected_node, now=utc_now())

    failure = None
    with _deferred_interrupt() as interrupted:
        try:
            with LocalFederation(work_dir=prepared.run_dir / "flower", sites=prepared.nodes, environ=os.environ) as fed:
                events = fed.run(
                    app_dir, prepared.run_dir, on_event=on_event, timeout=args.timeout, interrupted=interrupted
                )
        except FederationFailedError as exc:
            failure = str(exc)
        except KeyboardInterrupt:
            federated.record_run(sf, prepared, events or seen, version=None, models_dir=settings.home / "models",
                                 actor=args.actor or _actor(), now=utc_now, failure="interrupted (Ctrl-C)")  # fmt: skip
            raise
    return _recorded(prepared, events or seen, args.version, failure, actor=args.actor)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C into a flag the federation's poll loop checks, for the length of the block.

    A KeyboardInterrupt raised at an arbitrary bytecode could land inside a store write (the run's
    progress is written as events arrive) and leave its connection holding SQLite's write lock, so
    that recording the run as interrupted then waits on itself. The flag is checked between polls,
    where nothing is being written. Outside the main thread (no signal handlers there) the flag
    never rises and Ctrl-C acts as before.
    """
    raised = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield raised.is_set
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: raised.set())
    try:
        yield raised.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _recorded(
    prepared: Any, events: list[JSONObject], version: str | None, failure: str | None, *, actor: str | None = None
) -> Outcome:
    from core.services import federated
    from core.services.store import open_store, utc_now

    settings = _settings()
    record, registered = federated.record_run(
        open_store(settings),
        prepared,
        events,
        version=version,
        models_dir=settings.home / "models",
        actor=actor or _actor(),
        now=utc_now,
        failure=failure,
    )
    data = record.to_dict()
    data["model_registered"] = None if registered is None else registered.version
    text = f"federated run {record.run_key}: {record.status}" + (f" ({record.reason})" if record.reason else "")
    if registered is not None:
        text += f"\nregistered {registered.version} (parent {record.parent_version}); "
        text += "validate it with `vigil validate-change`"
    return Outcome(data, text, ok=record.status == "finished")


def _prepare_only(args: argparse.Namespace) -> Outcome:
    from core.services.store import open_store

    settings = _settings()
    prepared = _prepare(args, settings, open_store(settings), on_this_machine=False)
    command = f"flwr run . coordinating --stream --run-config 'run-dir=\"{prepared.run_dir}\"'"
    data: JSONObject = {"run": prepared.plan.run, "run_dir": str(prepared.run_dir), "command": command}
    return Outcome(data, f"prepared {prepared.plan.run} in {prepared.run_dir}\nstart it with: {command}")


def _record(args: argparse.Namespace) -> Outcome:
    from core.federated.runlog import read_events
    from core.services import federated

    run_dir = _settings().home / "fl-runs" / args.run
    prepared = federated.reopen_run(run_dir)
    return _recorded(prepared, read_events(run_dir), args.version, None)


def _prepare(
    args: argparse.Namespace, settings: Settings, sf: Any, *, on_this_machine: bool, run: str | None = None
) -> Any:
    from core.services import federated, models
    from core.services.store import utc_now

    sites, dp, secure = _options(args)
    parent = args.parent or _serving(models.list_models(sf))
    run = run or f"fl-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return federated.prepare_run(
        sf,
        run=run,
        sites_=sites,
        parent=parent,
        rounds=args.rounds,
        strategy=args.strategy,
        min_sites=args.min_sites or len(sites),
        local=federated.LocalSettings(
            local_epochs=args.local_epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            max_studies=args.max_studies,
            seed=args.seed,
        ),
        models_dir=settings.home / "models",
        run_dir=settings.home / "fl-runs" / run,
        keys_dir=settings.home / "fl-keys",
        now=utc_now,
        actor=getattr(args, "actor", None) or _actor(),
        dp=dp,
        version=args.version,
        on_this_machine=on_this_machine,
        secure=secure,
    )


def _options(args: argparse.Namespace) -> tuple[list[str], Any, Any]:
    """The sites, privacy and secure-aggregation settings the options give; checks need no store."""
    sites = _sites(args.sites)
    return sites, _dp(args), _secure(args, quorum=args.min_sites or len(sites))


def _dp(args: argparse.Namespace) -> Any:
    given = (args.dp_noise_multiplier, args.dp_clipping_norm, args.epsilon_budget)
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise BadInputError("differential privacy needs --dp-noise-multiplier, --dp-clipping-norm and --epsilon-budget")
    from core.federated.privacy import DpSettings

    return DpSettings(
        noise_multiplier=args.dp_noise_multiplier,
        clipping_norm=args.dp_clipping_norm,
        delta=args.dp_delta,
        epsilon_budget=args.epsilon_budget,
    )


def _secure(args: argparse.Namespace, *, quorum: int) -> Any:
    if not args.secure_aggregation:
        if args.secagg_threshold is not None:
            raise BadInputError("--secagg-threshold needs --secure-aggregation")
        return None
    from core.federated.secure import SecAggSettings, default_threshold

    return SecAggSettings(
        reconstruction_threshold=args.secagg_threshold or default_threshold(quorum),
        clipping_range=args.secagg_clipping_range,
    )


def _serving(registered: list[Any]) -> str:
    serving = next((m.version for m in registered if m.serving), None)
    if serving is None:
        raise BadInputError("no model version is serving: give --from VERSION")
    return str(serving)


def _progress(*, enabled: bool) -> Callable[[JSONObject], None]:
    def say(event: JSONObject) -> None:
        if not enabled:
            return
        kind = event.get("event")
        if kind == "round":
            updates = event.get("updates")
            rows = updates if isinstance(updates, list) else []
            parts = [
                f"{u.get('site')}: {'accepted' if u.get('accepted') else 'REFUSED (' + str(u.get('reason')) + ')'}"
                for u in rows
                if isinstance(u, dict)
            ]
            sys.stderr.write(f"round {event.get('round')}: {'; '.join(parts)}\n")
        elif kind == "evaluate":
            site_metrics = event.get("sites")
            for site, m in site_metrics.items() if isinstance(site_metrics, dict) else []:
                auc = m.get("val-auc") if isinstance(m, dict) else None
                sys.stderr.write(f"  {site}: validation AUC {auc}\n")
        else:
            sys.stderr.write(f"{kind}\n")
        sys.stderr.flush()

    return say


def _show(args: argparse.Namespace) -> Outcome:
    from core.services import federated
    from core.services.store import open_store

    record = federated.get_run(open_store(_settings()), args.run)
    return Outcome(record.to_dict(), f"{record.run_key}: {record.status}, {len(record.updates)} site updates")


def _list(args: argparse.Namespace) -> Outcome:
    from core.services import federated
    from core.services.store import open_store

    runs = federated.list_runs(open_store(_settings()))
    lines = [f"{r.run_key}  {r.status}  {r.strategy}  {','.join(r.sites)}  -> {r.model_version}" for r in runs]
    return Outcome({"runs": [r.to_dict() for r in runs]}, "\n".join(lines) or "no federated runs")
