"""The RDP accountant against published reference values, and the budget that halts a run before it is exceeded."""

from __future__ import annotations

import math

import pytest
from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

from core.errors import BadInputError
from core.federated.privacy import (
    ORDERS,
    DpSettings,
    RdpAccountant,
    epsilon,
    epsilon_from_rdp,
    rdp_sampled_gaussian,
    rounds_within_budget,
)

# TensorFlow Privacy, tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py: DP-SGD on
# n examples, batch size b (Poisson rate b / n), noise multiplier z, E epochs, at delta -> (eps, order).
PUBLISHED = [
    (60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0),
    (100000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13.0),
]


@pytest.mark.parametrize(("n", "batch", "z", "epochs", "delta", "eps", "order"), PUBLISHED)
def test_epsilon_matches_tensorflow_privacy_for_dp_sgd(  # noqa: PLR0913 - one argument per published column
    n: int, batch: int, z: float, epochs: int, delta: float, eps: float, order: float
) -> None:
    # Prepare
    q, steps = batch / n, math.ceil(epochs * n / batch)

    # Execute
    rdp = [steps * rdp_sampled_gaussian(q, z, a) for a in ORDERS]
    got, got_order = epsilon_from_rdp(ORDERS, rdp, delta)

    # Assert
    assert got == pytest.approx(eps, abs=1e-9)
    assert got_order == order


def test_the_conversion_matches_dp_accountings_constant_rdp_case() -> None:
    # dp_accounting's rdp test: RDP 1.1 at every order 2..32, delta 1e-5 -> the largest order, eps 1.32783806176
    orders = list(range(2, 33))

    eps, order = epsilon_from_rdp(orders, [1.1] * len(orders), 1e-5)

    assert order == 32
    assert eps == pytest.approx(1.32783806176, abs=1e-10)


def test_unsampled_gaussian_rdp_is_alpha_over_two_z_squared() -> None:
    assert rdp_sampled_gaussian(1.0, 2.0, 8) == pytest.approx(8 / 8)
    # The binomial sum at q = 1 reduces to the same value (a check of the general formula).
    assert rdp_sampled_gaussian(1.0 - 1e-12, 2.0, 8) == pytest.approx(1.0, rel=1e-6)


def test_a_run_stops_before_the_round_that_would_exceed_the_budget() -> None:
    # Prepare: a budget between the epsilon of 2 and of 3 rounds
    z, delta = 2.0, 1e-5
    two, three = (epsilon(q=1.0, noise_multiplier=z, steps=k, delta=delta) for k in (2, 3))
    settings = DpSettings(noise_multiplier=z, clipping_norm=1.0, delta=delta, epsilon_budget=(two + three) / 2)

    # Execute / Assert
    assert rounds_within_budget(settings, 10) == 2
    assert rounds_within_budget(settings, 1) == 1
    assert rounds_within_budget(DpSettings(z, 1.0, delta, epsilon_budget=two / 10), 10) == 0


def test_the_accountant_keeps_flowers_protocol() -> None:
    # Prepare
    accountant = RdpAccountant.for_sites(n_sites=3, delta=1e-5, max_epsilon=5.0)
    event = GaussianPrivacyEvent(noise_multiplier=2.0, sample_size=3, population_size=3)

    # Execute
    accountant.compose(event, count=2)
    spent = accountant.get_privacy_spent()

    # Assert
    assert accountant.num_releases == 2
    assert spent.epsilon == pytest.approx(epsilon(q=1.0, noise_multiplier=2.0, steps=2, delta=1e-5))
    assert accountant.get_delta(spent.epsilon) == pytest.approx(1e-5, rel=1e-6)
    assert not accountant.would_exceed(event)
    assert accountant.would_exceed(event, max_epsilon=spent.epsilon)
    restored = RdpAccountant.for_sites(n_sites=3, delta=1e-5, max_epsilon=5.0)
    restored.load_state_dict(accountant.state_dict())
    assert restored.get_privacy_spent() == spent


@pytest.mark.parametrize(
    ("field", "value"), [("noise_multiplier", 0.0), ("clipping_norm", math.nan), ("delta", 1.0), ("epsilon_budget", -1)]
)
def test_bad_dp_settings_are_refused_by_name(field: str, value: float) -> None:
    values = {"noise_multiplier": 1.0, "clipping_norm": 1.0, "delta": 1e-5, "epsilon_budget": 3.0, field: value}

    with pytest.raises(BadInputError, match=field.replace("_", " ")):
        DpSettings(**values)
