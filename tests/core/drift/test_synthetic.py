"""Seeded piecewise-constant generators."""

from __future__ import annotations

import numpy as np
import pytest

from core.drift.synthetic import piecewise_bernoulli, piecewise_gaussian, random_segments


def test_segments_have_the_requested_means() -> None:
    # Execute
    s = piecewise_gaussian(3000, change_points=[1000, 2000], means=[0.0, 5.0, -5.0], sigma=0.1, seed=1)

    # Assert
    assert [round(float(s.values[a:b].mean())) for a, b in ((0, 1000), (1000, 2000), (2000, 3000))] == [0, 5, -5]


def test_same_seed_same_stream() -> None:
    a = piecewise_bernoulli(50, change_points=[25], rates=[0.2, 0.8], seed=4)
    b = piecewise_bernoulli(50, change_points=[25], rates=[0.2, 0.8], seed=4)
    np.testing.assert_array_equal(a.values, b.values)


def test_random_segments_respect_the_minimum_size_and_jump() -> None:
    # Execute
    s = random_segments(1000, n_changes=5, min_size=100, jump=2.0, seed=9)

    # Assert
    sizes = np.diff(np.r_[0, s.change_points, 1000])
    assert sizes.min() >= 100 and np.all(np.abs(np.diff(s.levels)) == 2.0)


@pytest.mark.parametrize(("cps", "levels"), [([0], [0.0, 1.0]), ([10, 5], [0.0, 1.0, 2.0]), ([10], [0.0])])
def test_bad_change_points_are_refused(cps: list[int], levels: list[float]) -> None:
    with pytest.raises(ValueError):
        piecewise_gaussian(20, change_points=cps, means=levels)


def test_segments_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        random_segments(100, n_changes=3, min_size=30, jump=1.0)
