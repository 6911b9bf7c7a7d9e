"""The plumbing both SHAP methods share: per-image map functions, the lock and the recorded params."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from torch import nn

from core.errors import BadInputError
from core.explain.base import MapFunction
from core.explain.gradient_shap import GradientShapMaps, GradientShapOptions
from core.explain.kernel_shap import KernelShapMaps, KernelShapOptions
from core.explain.per_image import SignedMethod, explain_signed, stack_per_image
from core.explain.result import ExplainMethod
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.types import JSONObject


@pytest.mark.parametrize(
    "maps",
    [
        GradientShapMaps(torch.rand(2, 1, 32, 32), GradientShapOptions(n_samples=2)),
        KernelShapMaps(KernelShapOptions(n_samples=4, n_segments=4)),
    ],
    ids=["gradientshap", "kernelshap"],
)
def test_map_functions_refuse_an_empty_batch(resnet: nn.Module, maps: MapFunction) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=r"batch must have shape \(n >= 1"):
        maps(resnet, torch.rand(0, 1, 32, 32))


def test_stack_per_image_maps_each_image_alone() -> None:
    # Prepare
    batch = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    seen: list[int] = []

    def one_map(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x[0, 0] * 2

    # Execute
    out = stack_per_image(batch, one_map)

    # Assert
    assert seen == [1, 1, 1]
    assert out.shape == (3, 2, 2) and out.device.type == "cpu"
    assert out[:, 0, 0].tolist() == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("record_raw_sum", [False, True])
def test_only_the_attribution_runs_under_the_lock(
    resnet_model: LoadedModel, mixed_factory: Callable[..., list[DicomImage]], record_raw_sum: bool
) -> None:
    # Prepare
    lock = threading.Lock()
    held: list[tuple[str, bool]] = []

    def attribute(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        held.append(("attribute", lock.locked()))
        return batch[0, 0] - 0.5

    def describe(raw: torch.Tensor) -> tuple[torch.Tensor, JSONObject]:
        held.append(("describe", lock.locked()))
        return raw, {"own": 1}

    spec = SignedMethod(ExplainMethod.GRADIENTSHAP, "bilinear", {"seed": 7}, record_raw_sum=record_raw_sum)

    # Execute
    out = explain_signed(resnet_model, mixed_factory(2), attribute, describe, spec, lock=lock)

    # Assert
    assert held == [("attribute", True), ("describe", False)] * 2
    assert all(e.method is ExplainMethod.GRADIENTSHAP and e.target == 0 for e in out)
    params = out[0].params
    assert params["seed"] == 7 and params["own"] == 1 and params["interpolation"] == "bilinear"
    assert params["model_version"] == resnet_model.card.version
    assert ("raw_sum" in params) is record_raw_sum
