"""The ServerApp's SecAgg+ mode: Flower's legacy ``DefaultWorkflow`` with ``SecAggPlusWorkflow`` and FedAvg.

In the installed Flower, SecAgg+ runs only through the legacy workflow API, which drives a legacy
strategy: the message-API strategies (the robust ones) and the differential-privacy wrapper with
its accountant do not join it, so this mode is plain FedAvg and is offered apart from them.

What the server can check is what it sees. It never sees a site's update, so no update can be
hashed, signed-checked, shape-checked or refused before aggregation, and a refused site cannot be
taken out of a sum it is already masked into. What it does see, and checks:

- each taking part site's signed participation (its Ed25519 signature over run, round, node
  profile: :func:`core.federated.signing.update_digest` of no arrays), and its node's
  compatibility; any failure, or fewer sites than the quorum, fails the round closed;
- the unmasked mean, hashed into the round's log with the sites it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, cast

import numpy as np
from flwr.app import Context
from flwr.common import (
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import ClientManager, LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from core.errors import BadInputError
from core.federated.compatibility import NodeProfile
from core.federated.integrity import UpdateVerdict, check_update
from core.federated.plan import RunPlan
from core.federated.secure import SecAggSettings, apply_mean_change
from core.federated.signing import arrays_sha256
from core.federated.task import update_norm
from core.federated.verified import QuorumLostError
from core.types import JSONObject, JSONValue

__all__ = ["CLIPPING_KEY", "PROFILE_KEYS", "SecureFedAvg", "run_secure"]

#: Fit-config key carrying the clipping range to the sites' ClientApp (the mod keeps its own copy).
CLIPPING_KEY = "secagg-clipping-range"
#: The node-profile keys a site's legacy metrics carry (as :meth:`NodeProfile.to_dict` names them).
PROFILE_KEYS = ("vigil-version", "flwr-version", "arch-sha256", "preprocessing-sha256")
_NOT_SEEN = "masked (SecAgg+): the server never sees one site's update"


class SecureFedAvg(FedAvg):
    """Flower's legacy FedAvg over SecAgg+'s unmasked mean change, with participation checked and logged.

    Parameters
    ----------
    plan : RunPlan
        Sites, keys, quorum, expected node profile.
    config : mapping
        The round settings every site receives (:meth:`core.federated.protocol.RoundConfig.to_record`).
    initial : sequence of ndarray
        The global model's starting weights.
    integer : sequence of bool
        Which arrays are integer buffers (kept, not averaged).
    log : callable
        Receives one JSON object per round (``round``, ``evaluate``).
    """

    def __init__(  # noqa: PLR0913 - keyword-only; one argument per input of the strategy
        self,
        *,
        plan: RunPlan,
        settings: SecAggSettings,
        config: dict[str, Scalar],
        initial: list[np.ndarray],
        integer: tuple[bool, ...],
        log: Callable[[JSONObject], None],
    ) -> None:
        n = len(plan.sites)
        fit_config = {**config, CLIPPING_KEY: settings.clipping_range}
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=n,
            min_evaluate_clients=n,
            min_available_clients=n,
            on_fit_config_fn=lambda r: {**fit_config, "server-round": r},
            on_evaluate_config_fn=lambda r: {**config, "server-round": r},
            initial_parameters=ndarrays_to_parameters(initial),
            accept_failures=True,
        )
        self.plan = plan
        self.integer = integer
        self.log = log
        self.aggregated: set[int] = set()
        self._global: list[np.ndarray] = list(initial)
        self._keys = {site: pem.encode() for site, pem in plan.public_keys.items()}
        self._expected = NodeProfile.from_dict(plan.expected_node) if plan.expected_node else None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Remember the global model the mean change is added to; ask every site."""
        self._global = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Check every taking part site's signed participation, then add the unmasked mean change.

        Every result's parameters are the same unmasked mean (SecAgg+ puts it there); the sites'
        own updates are not in ``results``.

        Raises
        ------
        QuorumLostError
            A participation that does not verify (it cannot be taken out of the sum), or fewer
            sites than the plan's quorum (logged first).
        """
        verdicts = [self._participation(server_round, res.metrics) for _, res in results]
        entries: list[JSONValue] = [self._entry(v, res.metrics) for v, (_, res) in zip(verdicts, results, strict=True)]
        refused = [v for v in verdicts if not v.accepted]
        if refused:
            self.fail(server_round, f"site {refused[0].site!r} is masked into the sum but {refused[0].reason}", entries)
        if twice := sorted({v.site for v in verdicts if sum(w.site == v.site for w in verdicts) > 1}):
            # Two nodes with one site's key (a copied key) would count it twice in a sum nobody can split.
            self.fail(server_round, f"site {twice[0]!r} took part more than once", entries)
        if len({v.site for v in verdicts}) < self.plan.min_sites:
            self.fail(
                server_round,
                f"{len(verdicts)} sites took part ({len(failures)} failed), the quorum is {self.plan.min_sites}",
                entries,
            )
        mean_change = parameters_to_ndarrays(results[0][1].parameters)
        new = apply_mean_change(self._global, mean_change, integer=self.integer)
        self.log(
            {
                "event": "round",
                "round": server_round,
                "secure": True,
                "updates": entries,
                "aggregate_sha256": arrays_sha256(new),
                "aggregate_update_norm": update_norm(new, self._global),
            }
        )
        self.aggregated.add(server_round)
        return ndarrays_to_parameters(new), {}

    def fail(self, server_round: int, reason: str, entries: list[JSONValue] | None = None) -> NoReturn:
        """Log the round as failed, with no aggregate, and fail it closed."""
        self.log(
            {
                "event": "round",
                "round": server_round,
                "secure": True,
                "updates": entries or [],
                "aggregate_sha256": None,
                "failed": reason,
            }
        )
        raise QuorumLostError(f"round {server_round} failed closed: {reason}")

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Log each site's validation aggregates and node profile, as the verified strategy does."""
        per_site: JSONObject = {}
        nodes: JSONObject = {}
        for _, res in results:
            site = str(res.metrics.get("site", ""))
            per_site[site] = {
                k: float(v)
                for k, v in res.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in PROFILE_KEYS
            }
            if (profile := _profile(res.metrics)) is not None:
                nodes[site] = profile.to_dict()
        self.log({"event": "evaluate", "round": server_round, "sites": per_site, "nodes": nodes})
        return super().aggregate_evaluate(server_round, results, failures)

    def _participation(self, server_round: int, metrics: dict[str, Scalar]) -> UpdateVerdict:
        signature = metrics.get("signature", b"")
        # No arrays: the signature binds the site, run, round and node profile (its participation).
        verdict = check_update(
            [],
            site=str(metrics.get("site", "")),
            signature=signature if isinstance(signature, bytes) else b"",
            arch_sha256=str(metrics.get("arch-sha256", "")),
            run=self.plan.run,
            server_round=server_round,
            expected_arch=self.plan.arch_sha256,
            expected_shapes=(),
            public_keys=self._keys,
            node=_profile(metrics),
            expected_node=self._expected,
        )
        return UpdateVerdict(verdict.site, verdict.accepted, verdict.reason, "")

    def _entry(self, verdict: UpdateVerdict, metrics: dict[str, Scalar]) -> JSONObject:
        entry = verdict.to_dict()
        entry["update"] = _NOT_SEEN
        if (profile := _profile(metrics)) is not None:
            entry["node"] = profile.to_dict()
        if verdict.accepted:
            entry["n_examples"] = int(cast(int, metrics.get("n-examples", 0)))
            entry["train_loss"] = float(cast(float, metrics.get("train-loss", float("nan"))))
        return entry

    def checked(self, secagg: SecAggPlusWorkflow) -> Callable[[Grid, Context], None]:
        """``secagg`` as a fit workflow that fails the round closed when SecAgg+ halts.

        Flower's SecAgg+ logs a halt (too few sites left for the threshold) and returns, and the
        default workflow would go on to the next round with the old model: here the run stops.
        """

        def fit(grid: Grid, context: Context) -> None:
            server_round = int(cast(int, context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND]))
            secagg(grid, context)
            if server_round not in self.aggregated:
                self.fail(
                    server_round,
                    "SecAgg+ halted: fewer sites than the reconstruction threshold stayed in the round",
                )

        return fit


def _profile(metrics: dict[str, Scalar]) -> NodeProfile | None:
    if "vigil-version" not in metrics:
        return None
    return NodeProfile.from_dict({k: str(metrics.get(k, "")) for k in PROFILE_KEYS})


def run_secure(  # noqa: PLR0913 - keyword-only; one argument per input of the run
    grid: Grid,
    context: Context,
    *,
    plan: RunPlan,
    config: dict[str, Any],
    initial: list[np.ndarray],
    integer: tuple[bool, ...],
    log: Callable[[JSONObject], None],
) -> list[np.ndarray]:
    """Run the plan's rounds under SecAgg+; return the final global weights.

    Raises
    ------
    QuorumLostError
        A round failed closed (:meth:`SecureFedAvg.aggregate_fit`, :meth:`SecureFedAvg.checked`).
    """
    if plan.secure is None:
        raise BadInputError(f"run {plan.run!r} was not planned with secure aggregation")
    settings = SecAggSettings.from_json(plan.secure)
    strategy = SecureFedAvg(plan=plan, settings=settings, config=config, initial=initial, integer=integer, log=log)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=plan.rounds), strategy=strategy)
    secagg = SecAggPlusWorkflow(
        # 1.0: every taking part site holds a share of every other's keys (the whole federation is one
        # neighbourhood at hospital scale).
        num_shares=1.0,
        reconstruction_threshold=settings.reconstruction_threshold,
        # Every site sends weight 1 (core.federated.secure): max_weight 1 keeps full precision.
        max_weight=1.0,
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        timeout=settings.timeout_s,
    )
    DefaultWorkflow(fit_workflow=strategy.checked(secagg))(grid, legacy)
    return legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
