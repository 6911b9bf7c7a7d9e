"""A Flower strategy wrapper that verifies every site update before the inner strategy aggregates it.

Refused updates (bad signature, an incompatible node: another Vigil or Flower release, architecture
or preprocessing; wrong shapes, NaNs, a malformed reply or a node error) are left out and logged
with their reason; the round goes on while the accepted
updates reach the quorum, and fails closed (raises) below it, so no aggregate is made from too
few sites. Each round's log entry names the hash of every accepted update and of the aggregate,
and every reply's node profile (what the store keeps as the node's health and last check-in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NoReturn

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from core.federated.compatibility import NodeProfile
from core.federated.integrity import UpdateVerdict, check_update, quorum
from core.federated.plan import RunPlan
from core.federated.protocol import ARRAYS, INTEGRITY, METRICS, NUM_EXAMPLES
from core.federated.signing import arrays_sha256
from core.federated.task import update_norm
from core.types import JSONObject, JSONValue

__all__ = ["QuorumLostError", "VerifiedStrategy"]


class QuorumLostError(RuntimeError):
    """Too few updates passed verification for the round to be aggregated; the run stops here."""


class VerifiedStrategy(Strategy):
    """Verify, log, then delegate to ``inner``.

    Parameters
    ----------
    inner : Strategy
        The Flower strategy that samples sites and aggregates (FedAvg, a robust one, a DP wrapper).
    plan : RunPlan
        Keys, architecture hash and quorum.
    log : callable
        Receives one JSON object per round (``event`` ``round`` or ``evaluate``).
    """

    def __init__(self, inner: Strategy, *, plan: RunPlan, log: Callable[[JSONObject], None]) -> None:
        self.inner = inner
        self.plan = plan
        self.log = log
        self._global: list[np.ndarray] = []
        self._keys = {site: pem.encode() for site, pem in plan.public_keys.items()}
        self._expected = NodeProfile.from_dict(plan.expected_node) if plan.expected_node else None

    def summary(self) -> None:
        """Log the inner strategy's summary."""
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global model the updates are measured against; let ``inner`` sample sites."""
        self.expect(arrays)
        return self.inner.configure_train(server_round, arrays, config, grid)

    def expect(self, arrays: ArrayRecord) -> None:
        """Set the global model this round's updates must match in shapes (and are measured from)."""
        self._global = arrays.to_numpy_ndarrays()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Verify each reply, aggregate the accepted ones with ``inner``, and log the round.

        Raises
        ------
        QuorumLostError
            Fewer accepted updates than the plan's ``min_sites``, or, under differential privacy,
            fewer than every site's (logged first).
        """
        replies = list(replies)
        verdicts = _once_per_site([self._verdict(server_round, msg) for msg in replies])
        accepted = [msg for msg, v in zip(replies, verdicts, strict=True) if v.accepted]
        updates: list[JSONValue] = [self._entry(msg, v) for msg, v in zip(replies, verdicts, strict=True)]
        if not quorum(len(accepted), minimum=self.plan.min_sites):
            reason = f"{len(accepted)} of {len(replies)} updates accepted, the quorum is {self.plan.min_sites}"
            self._fail(server_round, updates, reason)
        if self.plan.dp is not None and len(accepted) < len(self.plan.sites):
            # The noise is calibrated to the mean of every site's clipped update; a mean of fewer
            # gets relatively less noise, and the round would spend more privacy than accounted.
            reason = (
                f"{len(accepted)} of {len(self.plan.sites)} sites' updates accepted: under differential "
                f"privacy the noise is calibrated to all {len(self.plan.sites)}, so a round with fewer "
                "would spend more privacy than the accountant records"
            )
            self._fail(server_round, updates, reason)
        arrays, metrics = self.inner.aggregate_train(server_round, accepted)
        aggregate = None if arrays is None else arrays_sha256(arrays.to_numpy_ndarrays())
        self.log({"event": "round", "round": server_round, "updates": updates, "aggregate_sha256": aggregate})
        if arrays is None:
            raise QuorumLostError(f"round {server_round} failed closed: the strategy returned no aggregate")
        return arrays, metrics

    def _fail(self, server_round: int, updates: list[JSONValue], reason: str) -> NoReturn:
        """Log the round as failed, with every verdict and no aggregate, and fail it closed."""
        self.log(
            {"event": "round", "round": server_round, "updates": updates, "aggregate_sha256": None, "failed": reason}
        )
        raise QuorumLostError(f"round {server_round} failed closed: {reason}")

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Let ``inner`` sample the sites that evaluate the new global model."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Log each site's validation aggregates; ``inner`` combines them."""
        replies = list(replies)
        per_site: JSONObject = {}
        nodes: JSONObject = {}
        for msg in replies:
            if msg.has_error() or METRICS not in msg.content.metric_records:
                continue
            site = _site_of(msg)
            per_site[site] = {k: float(v) for k, v in msg.content.metric_records[METRICS].items()}  # type: ignore[arg-type]
            if (profile := _reported_profile(msg)) is not None:
                nodes[site] = profile.to_dict()
        self.log({"event": "evaluate", "round": server_round, "sites": per_site, "nodes": nodes})
        ok = [m for m in replies if not m.has_error()]
        return self.inner.aggregate_evaluate(server_round, ok)

    def _verdict(self, server_round: int, msg: Message) -> UpdateVerdict:
        if msg.has_error():
            return UpdateVerdict(_site_of(msg), False, f"the site replied with an error: {msg.error.reason}", "")
        content = msg.content
        if ARRAYS not in content.array_records or INTEGRITY not in content.config_records:
            return UpdateVerdict(_site_of(msg), False, "malformed reply: arrays or integrity record missing", "")
        integrity = content.config_records[INTEGRITY]
        signature = integrity.get("signature", b"")
        node = _reported_profile(msg)
        return check_update(
            content.array_records[ARRAYS].to_numpy_ndarrays(),
            site=str(integrity.get("site", "")),
            signature=signature if isinstance(signature, bytes) else b"",
            arch_sha256=str(integrity.get("arch-sha256", "")),
            run=self.plan.run,
            server_round=server_round,
            expected_arch=self.plan.arch_sha256,
            expected_shapes=[a.shape for a in self._global],
            public_keys=self._keys,
            node=node,
            expected_node=self._expected,
        )

    def _entry(self, msg: Message, verdict: UpdateVerdict) -> JSONObject:
        entry = verdict.to_dict()
        if (profile := _reported_profile(msg)) is not None:
            entry["node"] = profile.to_dict()
        if verdict.accepted:
            metrics = msg.content.metric_records[METRICS]
            entry["n_examples"] = int(metrics[NUM_EXAMPLES])  # type: ignore[arg-type]
            entry["train_loss"] = float(metrics.get("train-loss", float("nan")))  # type: ignore[arg-type]
            entry["update_norm"] = update_norm(msg.content.array_records[ARRAYS].to_numpy_ndarrays(), self._global)
        return entry


def _once_per_site(verdicts: list[UpdateVerdict]) -> list[UpdateVerdict]:
    """Refuse every accepted update after a site's first in the round.

    Two nodes speaking for one site (a copied key) must not count it twice.
    """
    seen: set[str] = set()
    out = []
    for v in verdicts:
        if v.accepted and v.site in seen:
            v = UpdateVerdict(v.site, False, f"site {v.site!r} already sent an update this round", v.update_sha256)
        elif v.accepted:
            seen.add(v.site)
        out.append(v)
    return out


def _reported_profile(msg: Message) -> NodeProfile | None:
    """The node profile a reply reports, or None (an error reply, or a node that reports none)."""
    if msg.has_error() or INTEGRITY not in msg.content.config_records:
        return None
    integrity = msg.content.config_records[INTEGRITY]
    if "vigil-version" not in integrity:
        return None
    return NodeProfile.from_dict(dict(integrity))


def _site_of(msg: Message) -> str:
    """The site a reply claims to come from, else its node id."""
    if not msg.has_error() and INTEGRITY in msg.content.config_records:
        return str(msg.content.config_records[INTEGRITY].get("site", ""))
    return f"node {msg.metadata.src_node_id}"
