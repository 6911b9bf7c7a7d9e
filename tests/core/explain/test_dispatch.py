from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.errors import BadInputError, UnknownMethodError
from core.explain.dispatch import explain, parse_method
from core.explain.result import ExplainMethod, Explanation
from core.models.loading import LoadedModel


@pytest.mark.parametrize("name", ["gradcam", "GradCAM", " gradcam ", ExplainMethod.GRADCAM])
def test_gradcam_names_are_accepted(name: str) -> None:
    # Prepare / Execute / Assert
    assert parse_method(name) is ExplainMethod.GRADCAM


def test_unknown_method_names_the_choices() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(UnknownMethodError, match="gradcam, gradientshap, kernelshap"):
        parse_method("lime")


def test_gradientshap_without_baselines_says_what_it_needs(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare
    images = mixed_factory(1)

    # Execute / Assert
    with pytest.raises(BadInputError, match="GradientShap needs baseline images"):
        explain(resnet_model, images, method="gradientshap")


def test_explain_gradcam_returns_one_explanation_per_image(resnet_model: LoadedModel, mixed_factory: Callable) -> None:
    # Prepare
    images = mixed_factory(3)

    # Execute
    out = explain(resnet_model, images, method="gradcam")

    # Assert
    assert [e.heatmap.shape for e in out] == [im.pixels.shape for im in images]


def test_explanation_refuses_non_2d_or_non_float32_maps() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match="2-D float32"):
        Explanation(ExplainMethod.GRADCAM, 0, np.zeros((2, 2), dtype=np.float64), "v")
    with pytest.raises(BadInputError, match="2-D float32"):
        Explanation(ExplainMethod.GRADCAM, 0, np.zeros((1, 2, 2), dtype=np.float32), "v")
