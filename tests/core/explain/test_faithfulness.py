"""Faithfulness checks: curves, areas, the randomization test and the per-method assessment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import BadInputError
from core.explain.dispatch import GradCamMaps
from core.explain.faithfulness import (
    FaithfulnessOptions,
    _curve_images,
    assess_method,
    curve_auc,
    deletion_insertion,
    dilated_fraction,
    randomized_copy,
    rank_correlation,
    ranking,
    top_layers,
)
from core.explain.result import ExplainMethod
from tests.core.explain.test_gradcam import _hook_snapshot


class SpotNet(nn.Module):
    """logit = 40 * (mean of the 4x4 spot at rows/cols 4:8 - 0.9): only the bright spot matters."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(40.0), requires_grad=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x[:, :, 4:8, 4:8].mean(dim=(1, 2, 3))[:, None] - 0.9)


def _spot_image() -> torch.Tensor:
    x = torch.full((1, 1, 16, 16), 0.3)
    x[..., 4:8, 4:8] = 1.0
    return x


def test_curve_auc_is_the_trapezoid_area() -> None:
    # Prepare / Execute / Assert
    assert curve_auc(np.array([1.0, 1.0])) == 1.0
    assert curve_auc(np.array([0.0, 1.0, 1.0])) == 0.75
    with pytest.raises(BadInputError, match="two points"):
        curve_auc(np.array([1.0]))


def test_ranking_puts_the_highest_first_and_breaks_ties_at_random() -> None:
    # Prepare
    sal = np.array([0.0, 5.0, 0.0, 0.0, 3.0])

    # Execute
    orders = {tuple(ranking(sal, rng=np.random.default_rng(s))[2:]) for s in range(20)}

    # Assert
    assert all(o != () for o in orders) and len(orders) > 1
    assert ranking(sal, rng=np.random.default_rng(0))[:2].tolist() == [1, 4]


def test_a_map_on_the_evidence_beats_random_order() -> None:
    # Prepare: the map marks exactly the spot the score depends on.
    net, x = SpotNet(), _spot_image()
    sal = np.zeros((16, 16))
    sal[4:8, 4:8] = 1.0

    # Execute
    res = deletion_insertion(net, x, sal, options=FaithfulnessOptions(steps=16, batch_size=7, blur_sigma=0.25))

    # Assert: deleting the spot first kills the score at once; inserting it first restores it.
    assert res.deletion_auc < res.deletion_auc_random - 0.05
    assert res.insertion_auc > res.insertion_auc_random + 0.2


def test_an_inverted_map_does_worse_than_random() -> None:
    # Prepare
    net, x = SpotNet(), _spot_image()
    sal = np.ones((16, 16))
    sal[4:8, 4:8] = 0.0

    # Execute
    res = deletion_insertion(net, x, sal, options=FaithfulnessOptions(steps=16, blur_sigma=0.25))

    # Assert
    assert res.deletion_auc > res.deletion_auc_random


def test_dilated_fraction_is_the_chance_hit_rate() -> None:
    # Prepare
    mask = np.zeros((20, 20), dtype=bool)
    mask[10, 10] = True

    # Execute / Assert: a radius-2 disk holds 13 pixels.
    assert dilated_fraction(mask, dilate_px=2) == pytest.approx(13 / 400)
    assert dilated_fraction(mask, dilate_px=0) == pytest.approx(1 / 400)


def test_randomized_copy_changes_only_the_named_layers_and_never_the_original(resnet: nn.Module) -> None:
    # Prepare
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    layers = top_layers(resnet, k=2)

    # Execute
    twin = randomized_copy(resnet, layers=layers, seed=0)

    # Assert
    assert layers == ("layer4", "fc")
    assert all(torch.equal(v, before[k]) for k, v in resnet.state_dict().items())
    after = twin.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(layers) for k in changed)
    assert not twin.training and not any(p.requires_grad for p in twin.parameters())
    assert torch.equal(randomized_copy(resnet, layers=layers, seed=0).state_dict()["fc.weight"], after["fc.weight"])


def test_rank_correlation_is_spearman_of_magnitudes() -> None:
    # Prepare
    a = np.array([[1.0, -4.0], [2.0, 3.0]])

    # Execute / Assert
    assert rank_correlation(a, np.abs(a)) == pytest.approx(1.0)
    assert rank_correlation(a, -np.abs(a) * 0 + np.array([[4.0, 1.0], [3.0, 2.0]])) == pytest.approx(-1.0)
    with pytest.warns(UserWarning, match="constant"):
        assert math.isnan(rank_correlation(a, np.zeros((2, 2))))


def test_assess_method_on_a_resnet_gives_defined_figures_and_leaves_hooks(resnet: nn.Module) -> None:
    # Prepare: three cases with lesion masks on a 40 x 40 image grid.
    torch.manual_seed(0)
    inputs = torch.rand(3, 1, 32, 32)
    masks = []
    for i in range(3):
        m = np.zeros((40, 40), dtype=bool)
        m[10 + 5 * i : 16 + 5 * i, 12:18] = True
        masks.append(m)
    twin = randomized_copy(resnet, layers=top_layers(resnet), seed=0)
    before = _hook_snapshot(resnet)

    # Execute
    figs = assess_method(
        ExplainMethod.GRADCAM,
        GradCamMaps("layer4"),
        network=resnet,
        randomized=twin,
        inputs=inputs,
        masks=masks,
        options=FaithfulnessOptions(steps=4),
    )

    # Assert
    assert figs.n_cases == 3 and 0 <= figs.n_hits <= 3 and figs.pointing_hit_rate == figs.n_hits / 3
    assert 0.0 < figs.pointing_chance < 1.0
    for v in (figs.deletion_auc, figs.insertion_auc, figs.deletion_auc_random, figs.insertion_auc_random):
        assert 0.0 <= v <= 1.0
    rho = figs.randomization_spearman
    assert (figs.n_random_flat == 3 and math.isnan(rho)) or (figs.n_random_flat < 3 and -1.0 <= rho <= 1.0)
    assert _hook_snapshot(resnet) == before


def test_assess_method_without_cases_is_nan_not_zero(resnet: nn.Module) -> None:
    # Prepare / Execute
    figs = assess_method(
        ExplainMethod.GRADCAM,
        GradCamMaps("layer4"),
        network=resnet,
        randomized=resnet,
        inputs=torch.zeros(0, 1, 32, 32),
        masks=[],
        options=FaithfulnessOptions(),
    )

    # Assert
    assert figs.n_cases == 0 and math.isnan(figs.pointing_hit_rate) and math.isnan(figs.randomization_spearman)


@pytest.mark.parametrize("feather_px", [0.0, 2.0])
def test_curves_start_at_the_image_and_end_at_the_reference(feather_px: float) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((1, 1, 12, 12)).astype(np.float32))
    reference = torch.zeros_like(x)
    # Execute
    images = _curve_images(x, reference, rng.permutation(144), 4, feather_px=feather_px)
    # Assert: exact end points; feathering blends (weights strictly between 0 and 1 appear)
    deletion, insertion = images[:5], images[5:]
    assert torch.equal(deletion[0], x[0]) and torch.equal(deletion[-1], reference[0])
    assert torch.equal(insertion[0], reference[0]) and torch.equal(insertion[-1], x[0])
    weights = (1.0 - deletion[2] / x[0]).flatten()
    blended = ((weights > 1e-4) & (weights < 1 - 1e-4)).any().item()
    assert blended is (feather_px > 0)
