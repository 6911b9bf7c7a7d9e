"""Federated training use cases: register site keys, prepare a run, record it, register its model.

A run starts from a registered version (the parent). Each site trains on its own labels of record
outside the locked hold-out (:func:`core.services.holdout.training_pool`, split by site into one
manifest per site; each site also refuses the hold-out itself). The ServerApp verifies every
update before aggregating and logs each round; :func:`record_run` stores that log, with one audit
entry per round (the SHA-256 of each accepted update and of the aggregate) and one per refused
update, in one transaction. A finished run's aggregate is registered as a challenger with its
lineage, and goes through ``vigil validate-change`` like any other.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from core.audit.events import AuditAction
from core.errors import BadInputError, UnknownModelVersionError, VigilError
from core.federated.compatibility import local_profile
from core.federated.launcher import SiteNode
from core.federated.plan import (
    FINAL_WEIGHTS,
    INITIAL_WEIGHTS,
    STRATEGIES,
    RunPlan,
    read_plan,
    read_weights,
    write_plan,
    write_weights,
)
from core.federated.privacy import DpSettings, epsilon, rounds_within_budget
from core.federated.secure import SecAggSettings
from core.federated.signing import generate_site_key, load_private_key, load_public_key, public_key_pem
from core.federated.task import (
    SiteManifest,
    architecture_sha256,
    network_arrays,
    read_site_manifest,
    split_site,
    write_site_manifest,
)
from core.models.card import ModelCard, check_version_name, write_card
from core.models.finetune import TrainingExample, challenger_card, training_manifest
from core.models.loading import load_model
from core.models.networks import build_network
from core.models.training import PROVENANCE_PACKAGES
from core.services.federated_live import nodes_from_events
from core.services.holdout import training_pool
from core.services.models import RegisteredModel, get_card, register_model
from core.store import audit_log, federated_runs, sites
from core.store.engine import SessionFactory, head_revision
from core.store.federated_runs import FlRunRecord, FlUpdateRecord
from core.types import JSONObject, JSONValue

__all__ = [
    "LocalSettings",
    "PreparedRun",
    "epsilon_spent",
    "export_site_manifest",
    "get_run",
    "key_path",
    "list_runs",
    "reopen_run",
    "prepare_run",
    "record_run",
    "register_site_key",
    "updates_from_events",
]


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """What every site does per round (sent in the round's config)."""

    local_epochs: int = 1
    learning_rate: float = 3e-4
    batch_size: int = 8
    max_studies: int = 0
    val_fraction: float = 0.25
    seed: int = 0

    def to_json(self) -> JSONObject:
        """JSON-ready."""
        return {
            "local_epochs": self.local_epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_studies": self.max_studies,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run ready to launch: its plan (written), and one SuperNode per site."""

    plan: RunPlan
    run_dir: Path
    nodes: tuple[SiteNode, ...]
    started_at: datetime


#: In the run folder: when the run was prepared (what :func:`reopen_run` reads back).
_PREPARED = "prepared.json"


def reopen_run(run_dir: Path) -> PreparedRun:
    """A run prepared earlier (``vigil fl prepare``), read back from its folder to be recorded.

    Raises
    ------
    BadInputError
        The folder holds no prepared run.
    """
    plan = read_plan(run_dir)
    try:
        started = datetime.fromisoformat(json.loads((run_dir / _PREPARED).read_text(encoding="utf-8"))["started_at"])
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{str(run_dir)!r} holds no prepared run: {exc}") from exc
    nodes = tuple(
        SiteNode(site, run_dir / "sites" / f"{site}.json", Path())
        for site in plan.sites
        if (run_dir / "sites" / f"{site}.json").is_file()
    )
    return PreparedRun(plan, run_dir, nodes, started)


def key_path(keys_dir: Path, site: str) -> Path:
    """Where ``site``'s private signing key lives on this machine."""
    return keys_dir / f"{site}.ed25519.pem"


def register_site_key(  # noqa: PLR0913 - keyword-only; one argument per input of the registration
    session_factory: SessionFactory,
    site: str,
    *,
    keys_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    public_pem: bytes | None = None,
) -> str:
    """Register ``site``'s signing key, audit it; return the public key's SHA-256.

    Without ``public_pem`` the key pair is generated here: the private key is written first
    (mode 0600) and removed again if the registration fails, so a refused call leaves no key
    behind. With it (a hospital that generated its key itself), only the public key is stored.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        The site already has a registered key, a key file exists at its path, or
        ``public_pem`` is not an Ed25519 public key.
    """
    with session_factory() as session:
        sites.get_site(session, site)
        if site in federated_runs.site_keys(session):
            raise BadInputError(f"site {site!r} already has a registered signing key")
    if public_pem is not None:
        try:
            load_public_key(public_pem)
        except ValueError as exc:
            raise BadInputError(f"the public key given for site {site!r} is not an Ed25519 PEM key: {exc}") from exc
    path = key_path(keys_dir, site)
    pem = generate_site_key(path) if public_pem is None else public_pem
    digest = hashlib.sha256(pem).hexdigest()
    try:
        with session_factory.begin() as session:
            record = sites.get_site(session, site)
            federated_runs.register_key(
                session, site_id=record.id, public_key_pem=pem.decode(), key_sha256=digest, now=now()
            )
            audit_log.append(
                session,
                actor=actor,
                action=AuditAction.FL_SITE_KEY_REGISTERED,
                subject=site,
                payload={"public_key_sha256": digest, "algorithm": "Ed25519"},
                recorded_at=now().isoformat(),
            )
    except BaseException:
        if public_pem is None:
            path.unlink(missing_ok=True)
        raise
    return digest


def _check_request(sites_: Sequence[str], rounds: int, strategy: str, min_sites: int) -> None:
    if len(sites_) < 2:
        raise BadInputError(
            f"a federated run needs at least 2 sites, got {len(sites_)}: {', '.join(sites_) or '(none)'}"
        )
    if twice := [s for s, n in Counter(sites_).items() if n > 1]:
        raise BadInputError(f"site {twice[0]!r} is named more than once")
    if rounds < 1:
        raise BadInputError(f"a run needs at least 1 round, got {rounds}")
    if strategy not in STRATEGIES:
        raise BadInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not 1 <= min_sites <= len(sites_):
        raise BadInputError(f"quorum must be between 1 and {len(sites_)} sites, got {min_sites}")


def prepare_run(  # noqa: PLR0913 - keyword-only; one argument per input of the run
    session_factory: SessionFactory,
    *,
    run: str,
    sites_: Sequence[str],
    parent: str,
    rounds: int,
    strategy: str,
    min_sites: int,
    local: LocalSettings,
    models_dir: Path,
    run_dir: Path,
    keys_dir: Path,
    now: Callable[[], datetime],
    actor: str,
    dp: DpSettings | None = None,
    version: str | None = None,
    on_this_machine: bool = True,
    secure: SecAggSettings | None = None,
) -> PreparedRun:
    """Check the request, write each site's manifest and the plan, audit the start.

    Every check comes before anything is written: unknown parent or site, a site without a
    registered key or without its private key here, a site without labelled studies outside
    the hold-out, differential privacy with another strategy than FedAvg, secure aggregation
    (``secure``, SecAgg+) with another strategy than FedAvg, with differential privacy or with a
    reconstruction threshold above the number of sites, a site whose
    privacy budget (``dp.epsilon_budget`` less the ε its earlier runs spent, composed by
    addition) does not allow one round, or a ``version`` name (for the aggregate) that is
    malformed or taken.

    ``on_this_machine=False`` prepares a multi-hospital run: the sites' private keys and studies
    are at the hospitals (each writes its manifest with :func:`export_site_manifest`), so neither
    is checked or written here, and the run has no local SuperNodes.

    Raises
    ------
    BadInputError
        Any of the above, named.
    """
    _check_request(sites_, rounds, strategy, min_sites)
    _check_modes(strategy, dp=dp, secure=secure, n_sites=len(sites_))
    parent_card = get_card(session_factory, parent)
    if version is not None:
        _refuse_taken(session_factory, version)
    with session_factory() as session:
        for site in sites_:
            sites.get_site(session, site)
        keys = federated_runs.site_keys(session)
    for site in sites_:
        if site not in keys:
            raise BadInputError(f"site {site!r} has no registered signing key: run `vigil fl keys {site}` first")
        if on_this_machine and public_key_pem(load_private_key(key_path(keys_dir, site))).decode() != keys[site]:
            raise BadInputError(
                f"the private key at {str(key_path(keys_dir, site))!r} is not site {site!r}'s registered key"
            )
    cases, holdout_uids = training_pool(session_factory)
    per_site: dict[str, list[TrainingExample]] = defaultdict(list)
    for case in cases:
        per_site[case.site].append(case.example())
    if on_this_machine and (empty := [s for s in sites_ if not per_site[s]]):
        raise BadInputError(f"site {empty[0]!r} has no labelled study outside the hold-out to train on")
    loaded = load_model(parent_card, models_dir / parent, device=torch.device("cpu"))
    arch = architecture_sha256(parent_card.network)
    # What every node must report: this machine's releases and the parent's preprocessing as run here.
    expected = local_profile(arch_sha256=arch, preprocessing=parent_card.preprocessing)
    plan = RunPlan(
        run=run,
        parent_version=parent,
        sites=tuple(sites_),
        public_keys={s: keys[s] for s in sites_},
        network=copy.deepcopy(dict(parent_card.network)),
        preprocessing=copy.deepcopy(dict(parent_card.preprocessing)),
        arch_sha256=arch,
        rounds=rounds,
        strategy=strategy,
        min_sites=min_sites,
        local=local.to_json(),
        dp=None if dp is None else _dp_plan(session_factory, dp, sites_, rounds),
        expected_node={k: str(v) for k, v in expected.to_dict().items()},
        secure=None if secure is None else secure.to_json(),
    )
    (run_dir / "sites").mkdir(parents=True, exist_ok=True)
    nodes = []
    for site in sites_ if on_this_machine else ():
        manifest = run_dir / "sites" / f"{site}.json"
        write_site_manifest(SiteManifest(site, tuple(per_site[site]), holdout_uids), manifest)
        nodes.append(SiteNode(site, manifest, key_path(keys_dir, site)))
    write_plan(plan, run_dir)
    write_weights(network_arrays(loaded.network), run_dir / INITIAL_WEIGHTS)
    started = now()
    (run_dir / _PREPARED).write_text(json.dumps({"started_at": started.isoformat()}), encoding="utf-8")
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.FL_RUN_STARTED,
            subject=run,
            payload=_public_plan(plan),
            recorded_at=started.isoformat(),
        )
    return PreparedRun(plan, run_dir, tuple(nodes), started)


def _check_modes(strategy: str, *, dp: DpSettings | None, secure: SecAggSettings | None, n_sites: int) -> None:
    """Refuse modes that do not combine: DP or SecAgg+ with another strategy than FedAvg, SecAgg+ with DP.

    In the installed Flower, SecAgg+ runs through its legacy workflow, which neither the
    message-API strategies nor the privacy accountant join.
    """
    if dp is not None and strategy != "fedavg":
        raise BadInputError(
            f"differential privacy runs with the fedavg strategy only (Flower's accounting), got {strategy!r}"
        )
    if secure is None:
        return
    if strategy != "fedavg":
        raise BadInputError(
            f"secure aggregation (SecAgg+) runs with the fedavg strategy only, got {strategy!r}: a robust strategy "
            "needs to see each update, which SecAgg+ hides; choose one or the other"
        )
    if dp is not None:
        raise BadInputError(
            "secure aggregation (SecAgg+) and differential privacy cannot be combined here: Flower runs SecAgg+ "
            "through its legacy workflow, which its privacy accountant does not join; choose one or the other"
        )
    if secure.reconstruction_threshold > n_sites:
        raise BadInputError(
            f"the SecAgg+ reconstruction threshold is {secure.reconstruction_threshold} sites, "
            f"but the run has {n_sites}"
        )


def epsilon_spent(session_factory: SessionFactory) -> dict[str, float]:
    """ε each site has spent over its stored runs (added up: basic composition, an upper bound)."""
    spent: dict[str, float] = defaultdict(float)
    with session_factory() as session:
        for run in federated_runs.list_runs(session):
            dp = run.config.get("dp")
            eps = dp.get("epsilon_spent") if isinstance(dp, dict) else None
            if isinstance(eps, (int, float)):
                for site in run.sites:
                    spent[site] += float(eps)
    return dict(spent)


def _dp_plan(session_factory: SessionFactory, dp: DpSettings, sites_: Sequence[str], rounds: int) -> JSONObject:
    """The run's DP settings with the budget left to its most spent site; refused if no round fits."""
    spent = epsilon_spent(session_factory)
    most = max(sites_, key=lambda s: spent.get(s, 0.0))
    left = dp.epsilon_budget - spent.get(most, 0.0)
    if left <= 0 or rounds_within_budget(dataclasses.replace(dp, epsilon_budget=left), rounds) == 0:
        raise BadInputError(
            f"site {most!r} has spent ε = {spent.get(most, 0.0):.3f} of its budget {dp.epsilon_budget:g}: "
            f"one more round at noise multiplier {dp.noise_multiplier:g} would exceed it"
        )
    return {
        "noise_multiplier": dp.noise_multiplier,
        "clipping_norm": dp.clipping_norm,
        "delta": dp.delta,
        "epsilon_budget": left,
        "site_budget": dp.epsilon_budget,
        "spent_before": {s: round(spent.get(s, 0.0), 6) for s in sites_},
        "accountant": "RDP, Gaussian mechanism, every site every round (no sampling amplification)",
    }


def _public_plan(plan: RunPlan) -> JSONObject:
    """The plan without keys and without the network spec (the parent card has it)."""
    doc = plan.to_json()
    for key in ("public_keys", "network", "preprocessing"):
        doc.pop(key)
    return doc


def updates_from_events(events: Sequence[Mapping[str, Any]]) -> list[FlUpdateRecord]:
    """Each site's update per round in a run's log, with its aggregates and its validation figures."""
    evaluation: dict[tuple[int, str], JSONObject] = {}
    for e in events:
        if e.get("event") == "evaluate":
            for site, reported in dict(e["sites"]).items():
                evaluation[(int(e["round"]), str(site))] = {k: _finite(v) for k, v in dict(reported).items()}
    out = []
    for e in events:
        if e.get("event") != "round":
            continue
        r = int(e["round"])
        for u in e["updates"]:
            metrics: JSONObject = {k: _finite(u[k]) for k in ("n_examples", "train_loss", "update_norm") if k in u}
            metrics.update(evaluation.get((r, str(u["site"])), {}))
            out.append(
                FlUpdateRecord(
                    r, str(u["site"]), bool(u["accepted"]), str(u["reason"]), str(u["update_sha256"]),
                    e.get("aggregate_sha256"), metrics,
                )
            )  # fmt: skip
    return out


def _finite(value: object) -> JSONValue:
    # The audit's canonical JSON has no NaN: an undefined AUC (one class at a site) is stored as null.
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def _outcome(events: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    last = next((e for e in reversed(events) if e.get("event") in ("finished", "failed")), None)
    if last is None:
        return "failed", "the run ended without finishing"
    return str(last["event"]), str(last.get("reason") or last.get("halted") or "")


def _privacy(plan: RunPlan, events: Sequence[Mapping[str, Any]]) -> JSONObject | None:
    """The run's DP settings with the ε it spent: recomputed from the settings and the rounds aggregated.

    Every aggregated round released one noised mean, so ε follows from the noise multiplier, δ
    and that count alone; the ServerApp's own accountant report is kept beside it.
    """
    if plan.dp is None:
        return None
    released = sum(1 for e in events if e.get("event") == "round" and e.get("aggregate_sha256"))
    reported = next((e for e in events if e.get("event") == "privacy"), {})
    return {
        **dict(plan.dp),
        "rounds_released": released,
        "epsilon_spent": epsilon(
            q=1.0, noise_multiplier=float(plan.dp["noise_multiplier"]), steps=released, delta=float(plan.dp["delta"])
        ),
        "epsilon_reported_by_server": reported.get("epsilon"),
    }


def record_run(  # noqa: PLR0913 - keyword-only; one argument per input of the record
    session_factory: SessionFactory,
    prepared: PreparedRun,
    events: Sequence[Mapping[str, Any]],
    *,
    version: str | None,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    failure: str | None = None,
) -> tuple[FlRunRecord, RegisteredModel | None]:
    """Store the run and its audit entries in one transaction, then register its model if it finished.

    ``failure`` (a launcher error) marks the run failed whatever its log says. ``version`` names
    the aggregate's model version; None records the run without registering a model. A model
    that cannot be registered (the reason is kept) does not stop the run being recorded.

    Raises
    ------
    BadInputError
        The run is already recorded (checked first).
    """
    with session_factory() as session:
        if federated_runs.get_run(session, prepared.plan.run) is not None:
            raise BadInputError(f"federated run {prepared.plan.run!r} is already recorded")
    status, reason = _outcome(events)
    if failure is not None:
        status, reason = "failed", failure
    registered = None
    if status == "finished" and version is not None:
        try:
            registered = _register_aggregate(session_factory, prepared, events, version, models_dir, actor, now)
        except VigilError as exc:
            # The run happened and is recorded whatever became of its model.
            reason = f"{reason + '; ' if reason else ''}the aggregate was not registered: {exc}"
    plan = prepared.plan
    record = FlRunRecord(
        run_key=plan.run,
        parent_version=plan.parent_version,
        model_version=None if registered is None else registered.version,
        sites=plan.sites,
        rounds=plan.rounds,
        strategy=plan.strategy,
        status=status,
        reason=reason,
        config={**_public_plan(plan), "dp": _privacy(plan, events)},
        started_at=prepared.started_at,
        ended_at=now(),
        updates=tuple(updates_from_events(events)),
    )
    with session_factory.begin() as session:
        federated_runs.add_run(session, record)
        # Every reply was a node check-in: keep each site's last profile, verdict and time seen.
        for node in nodes_from_events(events, run_key=plan.run, expected=plan.expected_node, seen_at=now()):
            federated_runs.save_node(session, node)
        _audit_rounds(session, record, events, actor, now)
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.FL_RUN_ENDED,
            subject=plan.run,
            payload={
                "status": status,
                "reason": reason,
                "model_version": record.model_version,
                "dp": record.config.get("dp"),
            },
            recorded_at=now().isoformat(),
        )
    return record, registered


def _audit_rounds(
    session: Any, record: FlRunRecord, events: Sequence[Mapping[str, Any]], actor: str, now: Callable[[], datetime]
) -> None:
    for e in events:
        if e.get("event") != "round":
            continue
        r = int(e["round"])
        for u in e["updates"]:
            if not u["accepted"]:
                audit_log.append(
                    session,
                    actor=actor,
                    action=AuditAction.FL_UPDATE_REJECTED,
                    subject=record.run_key,
                    payload={"round": r, "site": u["site"], "reason": u["reason"], "update_sha256": u["update_sha256"]},
                    recorded_at=now().isoformat(),
                )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.FL_ROUND_AGGREGATED,
            subject=record.run_key,
            payload=_round_payload(e, record.strategy),
            recorded_at=now().isoformat(),
        )


def _round_payload(event: Mapping[str, Any], strategy: str) -> JSONObject:
    """A round's audit entry: each accepted update's hash and the aggregate's; under SecAgg+ the sites instead.

    A SecAgg+ server never sees one update, so there is no per-update hash to record: the entry
    names the sites whose masked updates (and signed participation) made the aggregate.
    """
    accepted = [u for u in event["updates"] if u["accepted"]]
    payload: JSONObject = {"round": int(event["round"]), "strategy": strategy}
    if event.get("secure"):
        payload["secure_aggregation"] = "SecAgg+"
        payload["participating_sites"] = [str(site) for site in sorted(str(u["site"]) for u in accepted)]
        payload["individual_updates"] = "masked: never seen by the server, so not hashed"
    else:
        payload["accepted_updates_sha256"] = {str(u["site"]): str(u["update_sha256"]) for u in accepted}
    payload["aggregate_sha256"] = event.get("aggregate_sha256")
    payload["failed"] = event.get("failed")
    return payload


def _refuse_taken(session_factory: SessionFactory, version: str) -> None:
    check_version_name(version)
    try:
        get_card(session_factory, version)
    except UnknownModelVersionError:
        return
    raise BadInputError(f"model version {version!r} is already registered")


def _register_aggregate(  # noqa: PLR0913 - the run's parts the card is built from
    session_factory: SessionFactory,
    prepared: PreparedRun,
    events: Sequence[Mapping[str, Any]],
    version: str,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> RegisteredModel:
    _refuse_taken(session_factory, version)
    plan = prepared.plan
    parent = get_card(session_factory, plan.parent_version)
    network = build_network(dict(parent.network))
    state = network.state_dict()
    arrays = read_weights(prepared.run_dir / FINAL_WEIGHTS)
    network.load_state_dict(
        {name: torch.from_numpy(a).to(t.dtype) for (name, t), a in zip(state.items(), arrays, strict=True)}
    )
    out_dir = prepared.run_dir / "model"
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{version}.pt"
    torch.save(network.state_dict(), weights)
    card = _card(parent, plan, version, weights, _used_examples(prepared), events, now().isoformat(timespec="seconds"))
    write_card(card, out_dir / "card.json")
    return register_model(session_factory, card, source_dir=out_dir, models_dir=models_dir, actor=actor, now=now)


def _used_examples(prepared: PreparedRun) -> tuple[list[TrainingExample], list[TrainingExample], int]:
    """The studies each site trained and validated on: the same deterministic split the sites make."""
    local = prepared.plan.local
    train: list[TrainingExample] = []
    val: list[TrainingExample] = []
    holdout = 0
    for node in prepared.nodes:
        manifest = read_site_manifest(node.manifest)
        t, v = split_site(
            manifest.examples,
            max_studies=int(local["max_studies"]),
            val_fraction=float(local["val_fraction"]),
            seed=int(local["seed"]),
        )
        train += t
        val += v
        holdout = len(manifest.holdout_uids)
    return train, val, holdout


_AGGREGATION = "Flower (flwr) message-API strategy over verified, Ed25519-signed site updates"
_AGGREGATION_SECURE = (
    "Flower (flwr) SecAgg+ secure aggregation (legacy DefaultWorkflow with SecAggPlusWorkflow, secaggplus_mod "
    "at each site), FedAvg of equally weighted site changes; the server saw only their masked sum; each "
    "site's participation Ed25519-signed"
)


def _card(  # noqa: PLR0913 - every card field has one source
    parent: ModelCard,
    plan: RunPlan,
    version: str,
    weights: Path,
    used: tuple[list[TrainingExample], list[TrainingExample], int],
    events: Sequence[Mapping[str, Any]],
    created_at: str,
) -> ModelCard:
    train, val, holdout = used
    training_data = training_manifest(train, val, holdout_excluded=holdout)
    training_data["federated"] = {"run": plan.run, "sites": list(plan.sites), "rounds": plan.rounds}
    if not train and not val:
        # A multi-hospital run: the study lists stayed at the sites, each of which refused the hold-out itself.
        training_data["studies_listed"] = "at the sites only (each site's own manifest)"
    last_eval: Mapping[str, Any] = next((e for e in reversed(events) if e.get("event") == "evaluate"), {})
    site_metrics: JSONObject = {
        str(s): {k: _finite(v) for k, v in dict(m).items()} for s, m in dict(last_eval.get("sites", {})).items()
    }
    hyper: JSONObject = {
        "recipe": "federated",
        "run": plan.run,
        "strategy": plan.strategy,
        "rounds": plan.rounds,
        "sites": list(plan.sites),
        "min_sites": plan.min_sites,
        **plan.local,
        "robust": dict(plan.robust),
        "dp": _privacy(plan, events),
        "secure_aggregation": None if plan.secure is None else dict(plan.secure),
        "parent_weights_sha256": parent.weights["sha256"],
        "aggregation": _AGGREGATION_SECURE if plan.secure is not None else _AGGREGATION,
    }
    # No pooled validation set exists centrally: the parent's threshold is kept, and the gate judges it.
    return challenger_card(
        parent,
        version=version,
        weights=weights,
        threshold=parent.operating_threshold,
        hyperparameters=hyper,
        metrics={
            "federated_validation": {"last_round": last_eval.get("round"), "sites": site_metrics},
            "note": "per-site validation aggregates reported by the sites; held-out figures come from the "
            "change-control gate on the locked hold-out",
        },
        training_data=training_data,
        store_revision=head_revision(),
        packages=(*PROVENANCE_PACKAGES, "flwr"),
        created_at=created_at,
    )


def get_run(session_factory: SessionFactory, run: str) -> FlRunRecord:
    """The stored run ``run`` with its per-round, per-site updates.

    Raises
    ------
    BadInputError
        No such run.
    """
    with session_factory() as session:
        record = federated_runs.get_run(session, run)
    if record is None:
        raise BadInputError(f"no federated run {run!r}")
    return record


def list_runs(session_factory: SessionFactory) -> list[FlRunRecord]:
    """Every stored run, newest first (without updates)."""
    with session_factory() as session:
        return federated_runs.list_runs(session)


def export_site_manifest(session_factory: SessionFactory, site: str, out: Path) -> int:
    """Write ``site``'s manifest for its SuperNode (``data-manifest``): its labels of record outside the hold-out.

    What a hospital runs against its own Vigil before starting its SuperNode; the file names its
    images by path and stays at the site. Returns the number of studies written.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        The site has no labelled study outside the hold-out.
    """
    with session_factory() as session:
        sites.get_site(session, site)
    cases, holdout_uids = training_pool(session_factory)
    examples = tuple(c.example() for c in cases if c.site == site)
    if not examples:
        raise BadInputError(f"site {site!r} has no labelled study outside the hold-out to train on")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_site_manifest(SiteManifest(site, examples, holdout_uids), out)
    return len(examples)
