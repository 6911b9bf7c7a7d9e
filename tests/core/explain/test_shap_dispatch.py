"""Routing the SHAP methods, the target-layer check and the signed overlay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.errors import BadInputError
from core.explain.dispatch import ExplainOptions, explain, map_function
from core.explain.gradient_shap import GradientShapOptions
from core.explain.kernel_shap import KernelShapOptions
from core.explain.overlay import DIVERGING_COLORMAPS, colormap_lut, overlay_signed
from core.explain.result import ExplainMethod
from core.models.loading import LoadedModel

SMALL = ExplainOptions(
    gradient_shap=GradientShapOptions(n_samples=2, batch_size=2),
    kernel_shap=KernelShapOptions(n_samples=4, batch_size=4, n_segments=4),
    baselines=torch.rand(2, 1, 32, 32),
)


@pytest.mark.parametrize("method", [ExplainMethod.GRADIENTSHAP, ExplainMethod.KERNELSHAP])
def test_shap_methods_are_routed_and_signed(
    resnet_model: LoadedModel, mixed_factory: Callable, method: ExplainMethod
) -> None:
    # Prepare
    images = mixed_factory(1)

    # Execute
    (e,) = explain(resnet_model, images, method=method.value, options=SMALL)

    # Assert
    assert e.method is method and e.params["signed"] is True
    assert e.heatmap.shape == images[0].pixels.shape and e.heatmap.min() >= -1.0


@pytest.mark.parametrize("method", list(ExplainMethod))
def test_a_card_whose_target_layer_is_gone_is_refused_for_every_method(
    resnet_model: LoadedModel, mixed_factory: Callable, method: ExplainMethod
) -> None:
    # Prepare
    broken = replace(resnet_model, card=replace(resnet_model.card, target_layer="layer9"))

    # Execute / Assert
    with pytest.raises(BadInputError, match="model version 'test-0.1'.*'layer9' does not exist"):
        explain(broken, mixed_factory(1), method=method, options=SMALL)


def test_map_function_of_each_method_gives_model_grid_maps(resnet_model: LoadedModel) -> None:
    # Prepare
    batch = torch.rand(2, 1, 32, 32)

    # Execute
    shapes = {
        m: map_function(m, target_layer="layer4", options=SMALL)(resnet_model.network, batch).shape
        for m in ExplainMethod
    }

    # Assert
    assert set(shapes.values()) == {torch.Size([2, 32, 32])}


def test_signed_overlay_leaves_neutral_pixels_untouched_and_colours_by_sign() -> None:
    # Prepare
    gray = np.full((1, 3), 0.4)
    signed = np.array([[-1.0, 0.0, 0.5]])

    # Execute
    rgb = overlay_signed(gray, signed, opacity=0.8, cmap="coolwarm")

    # Assert
    assert rgb[0, 1].tolist() == [102, 102, 102]
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # against the finding: blue
    assert rgb[0, 2, 0] > rgb[0, 2, 2]  # for the finding: red


@pytest.mark.parametrize("cmap", DIVERGING_COLORMAPS)
def test_diverging_luts_are_light_in_the_middle(cmap: str) -> None:
    # Prepare / Execute
    lut = colormap_lut(cmap)

    # Assert
    assert lut.shape == (256, 3) and lut[128].min() > 200 and lut[0].min() < 200 and lut[255].min() < 200


@pytest.mark.parametrize(
    ("signed", "match"),
    [(np.array([[1.5]]), r"\[-1, 1\]"), (np.array([[np.nan]]), "finite"), (np.zeros((1, 1, 1)), "2-D")],
)
def test_signed_overlay_refuses_bad_maps(signed: np.ndarray, match: str) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match=match):
        overlay_signed(np.zeros(signed.shape[-2:]), signed, opacity=0.5)
