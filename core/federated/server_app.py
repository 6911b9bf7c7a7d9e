"""The Flower ServerApp run at the coordinating centre: wiring only.

Flower's run config carries one value, ``run-dir``: the folder holding the run's plan and
starting weights (:mod:`core.federated.plan`). The app builds the named strategy, wraps it in the
verifying wrapper (or, for a plan with secure aggregation, runs Flower's SecAgg+ workflow:
:mod:`core.federated.secure_server`), runs the rounds, and writes its progress and the aggregated weights back into
that folder, where ``vigil fl run`` follows them and records the run in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from core.federated.plan import FINAL_WEIGHTS, INITIAL_WEIGHTS, RunPlan, read_plan, read_weights, write_weights
from core.federated.privacy import DpSettings, rounds_within_budget
from core.federated.prompt_grid import PromptGrid
from core.federated.protocol import RoundConfig
from core.federated.runlog import append_event
from core.federated.secure_server import run_secure
from core.federated.strategies import build_strategy, private_fedavg
from core.federated.task import integer_entries
from core.federated.verified import VerifiedStrategy
from core.types import JSONObject

__all__ = ["app", "dp_settings", "round_config"]

app = ServerApp()


def round_config(plan: RunPlan) -> RoundConfig:
    """The settings every site receives with each round."""
    local = plan.local
    return RoundConfig(
        run=plan.run,
        network=plan.network,
        preprocessing=plan.preprocessing,
        local_epochs=int(local["local_epochs"]),
        learning_rate=float(local["learning_rate"]),
        batch_size=int(local["batch_size"]),
        max_studies=int(local["max_studies"]),
        val_fraction=float(local["val_fraction"]),
        seed=int(local["seed"]),
    )


def dp_settings(plan: RunPlan) -> DpSettings | None:
    """The plan's differential-privacy settings, if any."""
    if plan.dp is None:
        return None
    return DpSettings(
        noise_multiplier=float(plan.dp["noise_multiplier"]),
        clipping_norm=float(plan.dp["clipping_norm"]),
        delta=float(plan.dp["delta"]),
        epsilon_budget=float(plan.dp["epsilon_budget"]),
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the plan's rounds; write ``final.npz`` and a ``finished`` event, or a ``failed`` event.

    Under differential privacy only the rounds the budget allows are run (the run halts before
    the round that would exceed it, and says so), and a ``privacy`` event reports the ε spent.
    """
    grid = PromptGrid(grid)  # replies collected as they arrive, not up to 3 s later
    run_dir = Path(str(context.run_config["run-dir"]))
    plan = read_plan(run_dir)
    append_event(run_dir, {"event": "started", "run": plan.run, "sites": list(plan.sites), "rounds": plan.rounds})
    if plan.secure is not None:
        _main_secure(grid, context, plan, run_dir)
        return
    try:
        dp = dp_settings(plan)
        rounds = plan.rounds if dp is None else rounds_within_budget(dp, plan.rounds)
        if rounds == 0:
            raise ValueError("the privacy budget does not allow a single round")
        inner = (
            build_strategy(plan.strategy, n_sites=len(plan.sites), robust=plan.robust)
            if dp is None
            else private_fedavg(dp, n_sites=len(plan.sites))
        )
        strategy = VerifiedStrategy(inner, plan=plan, log=_stamped(run_dir))
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(read_weights(run_dir / INITIAL_WEIGHTS)),
            num_rounds=rounds,
            train_config=round_config(plan).to_record(),
            evaluate_config=round_config(plan).to_record(),
        )
        write_weights(result.arrays.to_numpy_ndarrays(), run_dir / FINAL_WEIGHTS)
        if isinstance(inner, DifferentialPrivacyServerSideFixedClipping) and (spent := inner.privacy_spent()):
            append_event(
                run_dir,
                {
                    "event": "privacy",
                    "epsilon": spent.epsilon,
                    "delta": spent.delta,
                    "releases": spent.num_releases,
                    "optimal_order": spent.optimal_order,
                },
            )
    except Exception as exc:
        append_event(run_dir, {"event": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        raise
    halted = "" if rounds == plan.rounds else f"halted before round {rounds + 1}: it would exceed the privacy budget"
    append_event(run_dir, {"event": "finished", "run": plan.run, "rounds_run": rounds, "halted": halted})


def _stamped(run_dir: Path) -> Callable[[JSONObject], None]:
    """Append events stamped when logged: a reply's time is its node's heartbeat (core.services.federated_live)."""
    return lambda event: append_event(run_dir, {**event, "at": datetime.now(UTC).isoformat()})


def _main_secure(grid: Grid, context: Context, plan: RunPlan, run_dir: Path) -> None:
    """The SecAgg+ mode (:mod:`core.federated.secure_server`): FedAvg over masked updates, no DP."""
    try:
        config = dict(round_config(plan).to_record())
        final = run_secure(
            grid,
            context,
            plan=plan,
            config=config,
            initial=read_weights(run_dir / INITIAL_WEIGHTS),
            integer=integer_entries(plan.network),
            log=_stamped(run_dir),
        )
        write_weights(final, run_dir / FINAL_WEIGHTS)
    except Exception as exc:
        append_event(run_dir, {"event": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        raise
    append_event(run_dir, {"event": "finished", "run": plan.run, "rounds_run": plan.rounds, "halted": ""})
