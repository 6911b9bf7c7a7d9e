from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError
from core.explain.overlay import COLORMAPS, colormap_lut, overlay


def test_opacity_zero_shows_only_the_image() -> None:
    # Prepare
    gray = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    heat = np.random.default_rng(0).random((3, 4))

    # Execute
    rgb = overlay(gray, heat, opacity=0.0)

    # Assert
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    expected = np.rint(gray * 255).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)


def test_opacity_one_shows_only_the_colour_map() -> None:
    # Prepare: heat 0, 0.5 and 1 through jet.
    heat = np.array([[0.0, 0.5, 1.0]])

    # Execute
    rgb = overlay(np.zeros_like(heat), heat, opacity=1.0, cmap="jet")

    # Assert: dark blue, the green-ish middle anchor's neighbourhood, dark red.
    assert rgb[0, 0].tolist() == [0, 0, 128]
    assert rgb[0, 2].tolist() == [128, 0, 0]
    assert rgb[0, 1, 1] > 200


def test_blend_is_the_documented_formula() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    gray, heat = rng.random((5, 6)), rng.random((5, 6))

    # Execute
    rgb = overlay(gray, heat, opacity=0.3, cmap="inferno")

    # Assert
    lut = colormap_lut("inferno")
    expected = np.rint(0.7 * 255 * gray[..., None] + 0.3 * lut[np.rint(heat * 255).astype(int)])
    np.testing.assert_allclose(rgb, expected, atol=1)


@pytest.mark.parametrize("cmap", COLORMAPS)
def test_luts_have_256_entries_in_byte_range(cmap: str) -> None:
    # Prepare / Execute
    lut = colormap_lut(cmap)

    # Assert
    assert lut.shape == (256, 3) and lut.min() >= 0 and lut.max() <= 255 and not lut.flags.writeable


def test_inferno_ends_at_its_published_colours() -> None:
    # Prepare / Execute
    lut = colormap_lut("inferno")

    # Assert
    assert lut[0].tolist() == [0, 0, 4] and lut[255].tolist() == [252, 255, 164]


@pytest.mark.parametrize(
    ("gray", "heat", "opacity", "cmap", "match"),
    [
        (np.zeros((2, 2)), np.zeros((2, 3)), 0.5, "jet", "differ in shape"),
        (np.zeros((2, 2)), np.full((2, 2), np.nan), 0.5, "jet", "finite"),
        (np.zeros((2, 2)), np.full((2, 2), 1.5), 0.5, "jet", r"\[0, 1\]"),
        (np.zeros((2, 2, 3)), np.zeros((2, 2)), 0.5, "jet", "2-D"),
        (np.zeros((2, 2), dtype=np.uint8), np.zeros((2, 2)), 0.5, "jet", "float"),
        (np.zeros((2, 2)), np.zeros((2, 2)), 1.5, "jet", "opacity"),
        (np.zeros((2, 2)), np.zeros((2, 2)), 0.5, "rainbow", "unknown colour map 'rainbow'"),
    ],
)
def test_bad_inputs_are_named(gray: np.ndarray, heat: np.ndarray, opacity: float, cmap: str, match: str) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match=match):
        overlay(gray, heat, opacity=opacity, cmap=cmap)
