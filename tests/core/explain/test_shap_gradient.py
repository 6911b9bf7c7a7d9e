"""GradientShap: equal to captum's on the same draws, chunking-invariant, exact on a linear net."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from captum.attr import GradientShap
from torch import nn

from core.errors import BadInputError
from core.explain.gradient_shap import (
    GradientShapMaps,
    GradientShapOptions,
    SampleDraws,
    draw_samples,
    explain_images,
    gradient_shap_from_draws,
)
from core.explain.result import ExplainMethod
from core.models.loading import LoadedModel
from tests.core.explain.test_gradcam import _hook_snapshot


class LinearNet(nn.Module):
    """logit = sum(w * x) + 1 with fixed w: every gradient is w, so GradientShap is exact."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, 1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.linspace(-1.0, 1.0, size * size)[None])
            self.fc.bias.fill_(1.0)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_equals_captum_gradient_shap_on_the_same_draws(resnet: nn.Module) -> None:
    # Prepare: captum draws baselines with np.random.choice, then alphas with np.random.uniform.
    torch.manual_seed(0)
    x, baselines, n = torch.rand(1, 1, 32, 32), torch.rand(5, 1, 32, 32), 12
    np.random.seed(3)  # noqa: NPY002 - captum itself draws from numpy's global state
    expected = GradientShap(resnet).attribute(x, baselines=baselines, n_samples=n, stdevs=0.0, target=0)
    np.random.seed(3)  # noqa: NPY002
    index = np.random.choice(5, n).astype(np.int64)  # noqa: NPY002
    draws = SampleDraws(index, np.random.uniform(0, 1, n).astype(np.float32))  # noqa: NPY002

    # Execute: in chunks of 5 (12 = 5 + 5 + 2).
    ours = gradient_shap_from_draws(resnet, x, baselines, draws, batch_size=5)

    # Assert
    torch.testing.assert_close(ours, expected[0], atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_chunking_does_not_change_the_map(resnet: nn.Module, batch_size: int) -> None:
    # Prepare
    torch.manual_seed(1)
    x, baselines = torch.rand(1, 1, 32, 32), torch.rand(4, 1, 32, 32)
    draws = draw_samples(4, n_samples=7, seed=0)
    whole = gradient_shap_from_draws(resnet, x, baselines, draws, batch_size=7)

    # Execute
    chunked = gradient_shap_from_draws(resnet, x, baselines, draws, batch_size=batch_size)

    # Assert
    torch.testing.assert_close(chunked, whole, atol=1e-7, rtol=1e-5)


def test_linear_network_map_is_exact_and_complete() -> None:
    # Prepare: one baseline, so every sample gives (x - b) * w whatever its alpha.
    net = LinearNet()
    torch.manual_seed(2)
    x, b = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    maps = GradientShapMaps(b, GradientShapOptions(n_samples=5, batch_size=2))

    # Execute
    raw = maps(net, x)[0]

    # Assert: the map equals (x - b) * w and sums to logit(x) - logit(b) (completeness).
    w = net.fc.weight.view(8, 8)
    torch.testing.assert_close(raw, ((x - b)[0, 0] * w), atol=1e-6, rtol=1e-5)
    assert math.isclose(float(raw.sum()), float(net(x) - net(b)), abs_tol=1e-5)


def test_same_options_give_the_same_map_and_another_seed_does_not(resnet: nn.Module) -> None:
    # Prepare
    torch.manual_seed(3)
    x, baselines = torch.rand(1, 1, 32, 32), torch.rand(6, 1, 32, 32)
    opts = GradientShapOptions(n_samples=6, batch_size=4, stdev=0.05, seed=11)

    # Execute
    first = GradientShapMaps(baselines, opts)(resnet, x)
    again = GradientShapMaps(baselines, opts)(resnet, x)
    other = GradientShapMaps(baselines, GradientShapOptions(n_samples=6, batch_size=4, stdev=0.05, seed=12))(resnet, x)

    # Assert
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_leaves_the_model_as_it_found_it(resnet: nn.Module) -> None:
    # Prepare
    before_hooks = _hook_snapshot(resnet)
    before_state = {k: v.clone() for k, v in resnet.state_dict().items()}
    baselines = torch.rand(3, 1, 32, 32)

    # Execute
    GradientShapMaps(baselines, GradientShapOptions(n_samples=4, batch_size=2))(resnet, torch.rand(2, 1, 32, 32))

    # Assert
    assert _hook_snapshot(resnet) == before_hooks
    assert all(torch.equal(v, before_state[k]) for k, v in resnet.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in resnet.parameters())


def test_bad_requests_are_refused(resnet: nn.Module) -> None:
    # Prepare
    x = torch.rand(1, 1, 32, 32)

    # Execute / Assert
    with pytest.raises(BadInputError, match="baselines must have shape"):
        GradientShapMaps(torch.rand(2, 1, 16, 16), GradientShapOptions())(resnet, x)
    with pytest.raises(BadInputError, match="n_samples"):
        GradientShapOptions(n_samples=0)
    with pytest.raises(BadInputError, match="stdev"):
        GradientShapOptions(stdev=float("nan"))
    with pytest.raises(BadInputError, match="at least one baseline"):
        draw_samples(0, n_samples=3, seed=0)
    with torch.inference_mode(), pytest.raises(BadInputError, match="inference_mode"):
        GradientShapMaps(torch.rand(2, 1, 32, 32), GradientShapOptions(n_samples=2))(resnet, x)


def test_explain_images_gives_signed_maps_on_each_image_grid(
    resnet_model: LoadedModel, mixed_factory: Callable
) -> None:
    # Prepare
    images = mixed_factory(2)
    baselines = torch.rand(4, 1, 32, 32)

    # Execute
    out = explain_images(resnet_model, images, baselines=baselines, options=GradientShapOptions(n_samples=4))

    # Assert
    assert [e.heatmap.shape for e in out] == [im.pixels.shape for im in images]
    for e in out:
        assert e.method is ExplainMethod.GRADIENTSHAP and e.method.signed
        assert e.heatmap.min() >= -1.0 and e.heatmap.max() <= 1.0
        assert math.isclose(float(np.abs(e.heatmap).max()), 1.0, rel_tol=1e-6)
        assert e.params["n_samples"] == 4 and e.params["forward_calls"] == 1 and e.params["n_baselines"] == 4
