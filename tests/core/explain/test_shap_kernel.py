"""KernelShap over superpixels: batched forwards, captum-equal, exact on an additive model."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from captum.attr import KernelShap
from torch import nn

from core.explain.kernel_shap import KernelShapMaps, KernelShapOptions, explain_images, kernel_shap_map
from core.explain.superpixels import grid_labels, slic_superpixels
from core.models.loading import LoadedModel
from tests.core.explain.test_gradcam import _hook_snapshot


class SumNet(nn.Module):
    """logit = 3 * sum(x): additive, so each superpixel's Shapley value is 3 * sum(x - fill) over it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0), requires_grad=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.flatten(1).sum(dim=1, keepdim=True)


def _two_level_image(size: int = 16) -> torch.Tensor:
    x = torch.full((1, 1, size, size), 0.2)
    x[..., :, size // 2 :] = 0.9
    x[..., : size // 2, :] += 0.05
    return x


@pytest.mark.parametrize(("n_samples", "batch_size"), [(10, 4), (16, 16), (17, 16), (5, 1)])
def test_forward_calls_are_ceil_n_over_batch(resnet: nn.Module, n_samples: int, batch_size: int) -> None:
    # Prepare
    opts = KernelShapOptions(n_samples=n_samples, batch_size=batch_size, n_segments=8)

    # Execute
    res = kernel_shap_map(resnet, torch.rand(1, 1, 32, 32), options=opts)

    # Assert
    assert res.forward_calls == math.ceil(n_samples / batch_size)


def test_equals_captum_with_a_feature_mask_on_the_image(resnet: nn.Module) -> None:
    # Prepare: captum on the image itself, with the same superpixels, fill and seed.
    torch.manual_seed(4)
    x = torch.rand(1, 1, 32, 32)
    opts = KernelShapOptions(n_samples=24, batch_size=8, n_segments=9, seed=5)
    labels = torch.from_numpy(slic_superpixels(x[0, 0].numpy(), n_segments=9, compactness=opts.compactness))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        expected = KernelShap(resnet).attribute(
            x,
            baselines=float(x.mean()),
            target=0,
            feature_mask=labels[None, None],
            n_samples=24,
            perturbations_per_eval=8,
        )

    # Execute
    res = kernel_shap_map(resnet, x, options=opts)

    # Assert
    torch.testing.assert_close(res.raw, expected[0, 0], atol=1e-6, rtol=1e-4)


def test_additive_model_gets_its_exact_shapley_values() -> None:
    # Prepare
    net, x = SumNet(), _two_level_image()
    opts = KernelShapOptions(n_samples=40, batch_size=8, n_segments=4)
    labels = slic_superpixels(x[0, 0].numpy(), n_segments=4, compactness=opts.compactness)
    fill = float(x.mean())
    delta = (x[0, 0] - fill).numpy()
    expected = np.zeros_like(delta)
    for k in np.unique(labels):
        expected[labels == k] = 3.0 * delta[labels == k].sum()

    # Execute
    res = kernel_shap_map(net, x, options=opts)

    # Assert
    np.testing.assert_allclose(res.raw.numpy(), expected, atol=1e-3)


def test_is_reproducible_and_restores_the_global_generator(resnet: nn.Module) -> None:
    # Prepare
    x = torch.rand(1, 1, 32, 32)
    opts = KernelShapOptions(n_samples=12, batch_size=4, n_segments=8, seed=1)
    state = torch.get_rng_state()

    # Execute
    first = kernel_shap_map(resnet, x, options=opts).raw
    second = kernel_shap_map(resnet, x, options=opts).raw

    # Assert
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)


def test_leaves_hooks_unchanged(resnet: nn.Module) -> None:
    # Prepare
    before = _hook_snapshot(resnet)

    # Execute
    KernelShapMaps(KernelShapOptions(n_samples=6, batch_size=3, n_segments=4))(resnet, torch.rand(2, 1, 32, 32))

    # Assert
    assert _hook_snapshot(resnet) == before


def test_grid_labels_cover_the_image() -> None:
    # Prepare / Execute
    labels = grid_labels(10, 7, n_segments=9)

    # Assert
    assert labels.shape == (10, 7) and set(np.unique(labels)) == set(range(9))


def test_explain_images_keeps_superpixel_edges(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare
    images = mixed_factory(1)

    # Execute
    (e,) = explain_images(resnet_model, images, options=KernelShapOptions(n_samples=8, batch_size=4, n_segments=6))

    # Assert: nearest-neighbour resampling, so few distinct values; signed and scaled.
    assert e.heatmap.shape == images[0].pixels.shape
    assert len(np.unique(e.heatmap)) <= e.params["n_superpixels"]
    assert e.heatmap.min() >= -1.0 and e.heatmap.max() <= 1.0
    assert e.params["forward_calls"] == 2
