from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from core.errors import BadInputError
from core.explain.localization import peak_in_mask, pointing_hit_rate


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy * yy + xx * xx <= r * r


@pytest.mark.parametrize("seed", range(40))
def test_equals_full_image_binary_dilation(seed: int) -> None:
    # Prepare: sparse random masks and a random peak, often near the border.
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 30)), int(rng.integers(5, 30)))
    mask = rng.random(shape) < 0.03
    mask[rng.integers(shape[0]), rng.integers(shape[1])] = True
    heat = rng.random(shape)
    r = int(rng.integers(0, 6))

    # Execute
    hit = peak_in_mask(heat, mask, dilate_px=r)

    # Assert
    peak = np.unravel_index(np.argmax(heat), shape)
    assert hit == bool(binary_dilation(mask, structure=_disk(r))[peak])


def test_tolerance_is_a_euclidean_disk() -> None:
    # Prepare: the lesion at distance sqrt(8) ~ 2.83 from the peak (diagonal 2, 2).
    heat = np.zeros((7, 7))
    heat[1, 1] = 1.0
    mask = np.zeros((7, 7), dtype=bool)
    mask[3, 3] = True

    # Execute / Assert
    assert peak_in_mask(heat, mask, dilate_px=2) is False
    assert peak_in_mask(heat, mask, dilate_px=3) is True


def test_flat_map_is_a_miss_with_a_warning() -> None:
    # Prepare
    mask = np.ones((4, 4), dtype=bool)

    # Execute / Assert
    with pytest.warns(UserWarning, match="flat"):
        assert peak_in_mask(np.zeros((4, 4)), mask) is False


@pytest.mark.parametrize(
    ("heat", "mask", "match"),
    [
        (np.zeros((3, 3)), np.zeros((3, 3), dtype=bool), "empty"),
        (np.zeros((3, 3)), np.ones((3, 4), dtype=bool), "same shape"),
        (np.full((3, 3), np.nan), np.ones((3, 3), dtype=bool), "NaN"),
    ],
)
def test_bad_inputs_are_refused(heat: np.ndarray, mask: np.ndarray, match: str) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(BadInputError, match=match):
        peak_in_mask(heat, mask)


def test_hit_rate_counts_hits() -> None:
    # Prepare: three cases, the peak of the last far from its lesion.
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:8, 5:8] = True
    near, inside, far = np.zeros((20, 20)), np.zeros((20, 20)), np.zeros((20, 20))
    near[9, 6], inside[6, 6], far[18, 18] = 1.0, 1.0, 1.0

    # Execute
    rate = pointing_hit_rate([near, inside, far], [mask, mask, mask], dilate_px=3)

    # Assert
    assert rate == pytest.approx(2 / 3)


def test_hit_rate_of_nothing_is_nan_with_warning() -> None:
    # Prepare / Execute / Assert
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(pointing_hit_rate([], []))


def test_hit_rate_names_the_bad_pair() -> None:
    # Prepare
    good = np.zeros((3, 3), dtype=bool)
    good[1, 1] = True

    # Execute / Assert
    with pytest.raises(BadInputError, match="pair 1"):
        pointing_hit_rate([np.eye(3), np.eye(3)], [good, np.zeros((3, 3), dtype=bool)])
    with pytest.raises(BadInputError, match="2 heat maps but 1 masks"):
        pointing_hit_rate([np.eye(3), np.eye(3)], [good])
