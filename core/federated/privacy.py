"""Rényi-DP accounting for the (Poisson-subsampled) Gaussian mechanism, and a per-site budget.

Flower 1.42 ships an RDP accountant, but it needs the ``dp-accounting`` package, which is not
installed here; this module implements the same accountant (Mironov, Talwar and Zhang 2019, the
integer-order formula; the conversion to (ε, δ) of Balle et al. 2020, Proposition 12, as
``dp_accounting`` does) and satisfies Flower's ``PrivacyAccountant`` protocol, so Flower's
``DifferentialPrivacyServerSideFixedClipping`` uses it unchanged. Only integer orders are
evaluated (:data:`ORDERS`); the fractional orders below 2 matter only for very little noise
(noise multiplier under ~0.5), where the ε is large anyway and this bound is the looser one.

Client-level DP-FedAvg with every site in every round is the unsampled case (q = 1): each round is
one Gaussian release with noise multiplier z = σ / C, RDP α / (2 z²) per round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    PrivacySpent,
    SamplingMethod,
)

from core.errors import BadInputError

__all__ = [
    "ORDERS",
    "DpSettings",
    "RdpAccountant",
    "epsilon",
    "epsilon_from_rdp",
    "rdp_sampled_gaussian",
    "rounds_within_budget",
]

#: Integer Rényi orders evaluated.
ORDERS: Final = (*range(2, 64), 128, 256, 512)


@dataclass(frozen=True, slots=True)
class DpSettings:
    """Client-level differential privacy for a run.

    Attributes
    ----------
    noise_multiplier : float
        z: the Gaussian noise's standard deviation divided by ``clipping_norm``.
    clipping_norm : float
        C: each site's update (its L2 distance from the global model) is clipped to this.
    delta : float
        The δ at which ε is reported.
    epsilon_budget : float
        Each site's budget for this run: no round starts that would take ε above it.
    """

    noise_multiplier: float
    clipping_norm: float
    delta: float
    epsilon_budget: float

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "clipping_norm", "epsilon_budget"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise BadInputError(f"{name.replace('_', ' ')} must be a finite number > 0, got {value!r}")
        if not 0 < self.delta < 1:
            raise BadInputError(f"delta must be between 0 and 1 (exclusive), got {self.delta!r}")


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def rdp_sampled_gaussian(q: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer ``order`` of one Poisson-subsampled Gaussian release (sampling rate ``q``).

    ``log A_α / (α - 1)`` with ``A_α = Σ_k C(α, k) (1 - q)^(α - k) q^k exp((k² - k) / (2 z²))``;
    for ``q = 1``, ``α / (2 z²)``.
    """
    if q == 1.0:
        return order / (2 * noise_multiplier**2)
    log_a = -math.inf
    for k in range(order + 1):
        log_coef = math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
        log_coef += k * math.log(q) + (order - k) * math.log1p(-q)
        log_a = _log_add(log_a, log_coef + (k * k - k) / (2 * noise_multiplier**2))
    return log_a / (order - 1)


def epsilon_from_rdp(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """The smallest ε at ``delta`` over ``orders``, and the order giving it.

    ε(α) = RDP(α) + log(1 - 1/α) - log(δ α) / (α - 1) (Balle et al. 2020, Proposition 12); 0 when
    δ² + expm1(-RDP) > 0 (the KL bound already gives δ).
    """
    best, best_order = math.inf, float(orders[0])
    for order, r in zip(orders, rdp, strict=True):
        if delta**2 + math.expm1(-r) > 0:
            eps = 0.0
        else:
            eps = r + math.log1p(-1 / order) - math.log(delta * order) / (order - 1)
        if eps < best:
            best, best_order = eps, float(order)
    return max(0.0, best), best_order


def epsilon(*, q: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """ε at ``delta`` after ``steps`` releases (sampling rate ``q``, noise multiplier ``noise_multiplier``)."""
    if steps == 0:
        return 0.0
    rdp = [steps * rdp_sampled_gaussian(q, noise_multiplier, a) for a in ORDERS]
    return epsilon_from_rdp(ORDERS, rdp, delta)[0]


def rounds_within_budget(settings: DpSettings, rounds: int) -> int:
    """How many of ``rounds`` rounds (every site each round) keep ε within the budget (0 to ``rounds``)."""
    allowed = 0
    for k in range(1, rounds + 1):
        if epsilon(q=1.0, noise_multiplier=settings.noise_multiplier, steps=k, delta=settings.delta) > (
            settings.epsilon_budget
        ):
            break
        allowed = k
    return allowed


class RdpAccountant:
    """Flower's ``PrivacyAccountant`` protocol over :func:`rdp_sampled_gaussian`.

    Parameters
    ----------
    config : PrivacyConfig
        Flower's accounting settings (``target_delta``, ``population_size``, ``max_epsilon``).
    """

    def __init__(self, config: PrivacyConfig) -> None:
        self._config = config
        self._rdp = [0.0] * len(ORDERS)
        self._releases = 0

    @classmethod
    def for_sites(cls, *, n_sites: int, delta: float, max_epsilon: float) -> RdpAccountant:
        """Every site in every round (no sampling amplification), add-or-remove-one-site neighbours."""
        return cls(
            PrivacyConfig(
                target_delta=delta,
                population_size=n_sites,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
                max_epsilon=max_epsilon,
            )
        )

    @property
    def config(self) -> PrivacyConfig:
        """The accounting settings."""
        return self._config

    @property
    def num_releases(self) -> int:
        """Releases composed so far."""
        return self._releases

    def _event_rdp(self, event: GaussianPrivacyEvent) -> list[float]:
        q = (
            1.0
            if self._config.sampling_method is SamplingMethod.NO_AMPLIFICATION
            else (event.sample_size / event.population_size)
        )
        return [rdp_sampled_gaussian(q, event.noise_multiplier, a) for a in ORDERS]

    def compose(self, event: GaussianPrivacyEvent, count: int = 1) -> None:
        """Add ``count`` releases of ``event``."""
        self._rdp = [r + count * e for r, e in zip(self._rdp, self._event_rdp(event), strict=True)]
        self._releases += count

    def get_epsilon(self, delta: float) -> float:
        """ε so far at ``delta``."""
        return epsilon_from_rdp(ORDERS, self._rdp, delta)[0]

    def get_delta(self, epsilon: float) -> float:
        """The smallest δ so far at ``epsilon`` (the conversion above, solved for δ)."""
        best = 1.0
        for order, r in zip(ORDERS, self._rdp, strict=True):
            log_delta = (order - 1) * (r + math.log1p(-1 / order) - epsilon) - math.log(order)
            best = min(best, math.exp(min(log_delta, 0.0)))
        return best

    def get_privacy_spent(self, delta: float | None = None) -> PrivacySpent:
        """ε at ``delta`` (the configured δ by default), with the releases and the optimal order."""
        d = self._config.target_delta if delta is None else delta
        eps, order = epsilon_from_rdp(ORDERS, self._rdp, d)
        return PrivacySpent(eps, d, self._releases, "RDP (Vigil, integer orders)", order)

    def state_dict(self) -> dict[str, object]:
        """The RDP per order and the release count (what :meth:`load_state_dict` restores)."""
        return {"orders": list(ORDERS), "rdp": list(self._rdp), "releases": self._releases}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`'s output (same orders only)."""
        if state.get("orders") != list(ORDERS):
            raise ValueError("accountant state was computed over other RDP orders")
        rdp, releases = state["rdp"], state["releases"]
        if not isinstance(rdp, list) or not isinstance(releases, int):
            raise ValueError("accountant state is malformed")
        self._rdp = [float(r) for r in rdp]
        self._releases = releases

    def would_exceed(self, event: GaussianPrivacyEvent, max_epsilon: float | None = None, count: int = 1) -> bool:
        """Whether ``count`` more releases of ``event`` would take ε above ``max_epsilon`` (the configured one)."""
        limit = self._config.max_epsilon if max_epsilon is None else max_epsilon
        if limit is None:
            return False
        after = [r + count * e for r, e in zip(self._rdp, self._event_rdp(event), strict=True)]
        return epsilon_from_rdp(ORDERS, after, self._config.target_delta)[0] > limit
