"""Platt scaling fitted on validation studies and folded into the network's last layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import BadInputError
from core.models.logit_scaling import fit_logit_scaling, fold_into_last_layer, logits_of


def test_the_fit_recovers_the_intercept_and_slope_of_simulated_labels() -> None:
    # Prepare: 20,000 studies whose labels follow sigmoid(-1 + 0.5 z) exactly
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, 20_000)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-(-1.0 + 0.5 * z)))).astype(np.int64)
    # Execute
    intercept, slope = fit_logit_scaling(y, z)
    # Assert
    assert intercept == pytest.approx(-1.0, abs=0.08) and slope == pytest.approx(0.5, abs=0.03)


def test_folding_gives_the_scaled_logit_and_keeps_the_ranking() -> None:
    # Prepare: a small network ending in a one-output linear layer
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(64, 4)
    before = network(x).detach()
    # Execute
    fold_into_last_layer(network, -0.7, 0.4)
    after = network(x).detach()
    # Assert
    torch.testing.assert_close(after, -0.7 + 0.4 * before)
    assert torch.equal(torch.argsort(after[:, 0]), torch.argsort(before[:, 0]))


def test_logits_of_probabilities_invert_the_sigmoid_and_stay_finite() -> None:
    z = np.array([-3.0, 0.0, 2.5])
    assert np.allclose(logits_of(1.0 / (1.0 + np.exp(-z))), z)
    assert np.isfinite(logits_of(np.array([0.0, 1.0]))).all()


@pytest.mark.parametrize(
    ("y", "z", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "both classes, got only 1"),
        ([0, 1, 0, 1], [0.1, float("nan"), 0.2, 0.3], "finite logits"),
        ([0, 0, 1, 1], [-2.0, -1.0, 1.0, 2.0], "separated perfectly"),
        ([1, 0, 1, 0, 0, 1], [-2.0, -1.5, -1.0, 1.0, 1.5, 0.2], "positive slope"),
    ],
)
def test_an_unusable_fit_is_refused_with_its_reason(y: list[int], z: list[float], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        fit_logit_scaling(np.array(y), np.array(z))


def test_a_network_without_a_one_output_last_layer_is_refused() -> None:
    with pytest.raises(BadInputError, match="one output and a bias"):
        fold_into_last_layer(nn.Sequential(nn.Linear(4, 2)), 0.0, 1.0)
