"""``--strategy`` names to Flower's own strategies (the installed version's message API).

Robust aggregation addresses sites whose updates are visible to the server but may be wrong or
hostile (a poisoned site): the coordinate-wise median, the trimmed mean and Krum/multi-Krum
bound what a minority of updates can do to the aggregate. FedAvg bounds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from core.errors import BadInputError
from core.federated.plan import STRATEGIES
from core.federated.privacy import DpSettings, RdpAccountant
from core.federated.protocol import UNIT_WEIGHT

__all__ = ["build_strategy", "private_fedavg"]


def build_strategy(name: str, *, n_sites: int, robust: Mapping[str, Any]) -> Strategy:
    """The Flower strategy ``name`` (one of :data:`core.federated.plan.STRATEGIES`) for ``n_sites`` sites.

    Every site is asked to train and to evaluate each round, and a round waits for all of them
    to be connected; quorum after verification is checked by
    :class:`core.federated.verified.VerifiedStrategy`, not here.

    Parameters
    ----------
    robust : mapping
        ``trim_beta`` (trimmed mean: share cut at each end, default 0.2) and ``num_malicious``
        (Krum, multi-Krum, Bulyan: sites assumed hostile, default 1 when at least 3 sites, else 0).

    Raises
    ------
    BadInputError
        An unknown name.
    """
    common: dict[str, Any] = {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0,
        "min_train_nodes": n_sites,
        "min_evaluate_nodes": n_sites,
        "min_available_nodes": n_sites,
    }
    malicious = int(robust.get("num_malicious", 1 if n_sites >= 3 else 0))
    if name == "fedavg":
        return FedAvg(**common)
    if name == "median":
        return FedMedian(**common)
    if name == "trimmed-mean":
        return FedTrimmedAvg(**common, beta=float(robust.get("trim_beta", 0.2)))
    if name == "krum":
        return Krum(**common, num_malicious_nodes=malicious)
    if name == "multikrum":
        return MultiKrum(**common, num_malicious_nodes=malicious, num_nodes_to_select=max(1, n_sites - malicious))
    if name == "bulyan":
        return Bulyan(**common, num_malicious_nodes=malicious)
    raise BadInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def private_fedavg(dp: DpSettings, *, n_sites: int) -> DifferentialPrivacyServerSideFixedClipping:
    """Client-level DP-FedAvg: Flower's server-side fixed clipping and Gaussian noise around FedAvg.

    The server clips each site's update to ``dp.clipping_norm`` and adds noise of standard
    deviation ``noise_multiplier * clipping_norm / n_sites`` to the mean; sites weigh equally
    (:data:`~core.federated.protocol.UNIT_WEIGHT`), as the accounting assumes. The accountant
    (:class:`core.federated.privacy.RdpAccountant`) refuses a round that would exceed the budget.
    The threat model: a trusted server; what the released model reveals about any one site is
    bounded by (ε, δ).
    """
    inner = FedAvg(
        min_train_nodes=n_sites,
        min_evaluate_nodes=n_sites,
        min_available_nodes=n_sites,
        weighted_by_key=UNIT_WEIGHT,
    )
    accountant = RdpAccountant.for_sites(n_sites=n_sites, delta=dp.delta, max_epsilon=dp.epsilon_budget)
    return DifferentialPrivacyServerSideFixedClipping(
        inner,
        noise_multiplier=dp.noise_multiplier,
        clipping_norm=dp.clipping_norm,
        num_sampled_clients=n_sites,
        accountant=accountant,
    )
