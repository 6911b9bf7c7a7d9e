"""Newcombe's paired difference of proportions: known reductions, symmetry, bad input, and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import BadInputError
from core.metrics.paired_proportion import paired_proportion_difference
from core.metrics.wilson import wilson_interval


def test_uncorrelated_pairs_reduce_to_the_square_and_add_interval() -> None:
    # 2x2 table [[10, 10], [10, 10]]: phi = 0, so method 10 is Newcombe's square-and-add of two Wilson intervals.
    a = np.array([1] * 10 + [1] * 10 + [0] * 10 + [0] * 10)
    b = np.array([1] * 10 + [0] * 10 + [1] * 10 + [0] * 10)
    r = paired_proportion_difference(a, b)
    w = wilson_interval(20, 40)
    half = math.sqrt((w.estimate - w.lower) ** 2 + (w.upper - w.estimate) ** 2)
    assert r.estimate == 0.0 and r.lower == pytest.approx(-half) and r.upper == pytest.approx(half)


def test_swapping_the_two_models_mirrors_the_interval() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    ab, ba = paired_proportion_difference(a, b), paired_proportion_difference(b, a)
    assert (ab.estimate, ab.lower, ab.upper) == pytest.approx((-ba.estimate, -ba.upper, -ba.lower))


def test_identical_outcomes_give_zero_inside_the_interval() -> None:
    a = np.array([1] * 45 + [0] * 5)
    r = paired_proportion_difference(a, a)
    assert r.estimate == 0.0 and r.lower < 0.0 < r.upper


def test_coverage_is_near_nominal_for_correlated_readers() -> None:
    # Two correlated readers of 100 positives, sensitivities 0.90 and 0.85: the 95 % interval covers 0.05
    # in about 95 % of 2000 seeded samples (Newcombe reports method 10 close to nominal).
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        shared = rng.random(100)
        a = (shared < 0.90).astype(int)
        b = np.where(rng.random(100) < 0.7, shared < 0.85, rng.random(100) < 0.85).astype(int)
        r = paired_proportion_difference(a, b)
        covered += r.lower <= 0.05 <= r.upper
    assert 0.93 <= covered / 2000 <= 0.975


@pytest.mark.parametrize(("a", "b"), [([1, 0], [1]), ([1, 2], [1, 0]), ([[1]], [[1]])])
def test_bad_input_is_refused(a: list[int], b: list[int]) -> None:
    with pytest.raises(BadInputError):
        paired_proportion_difference(a, b)


def test_no_pairs_is_nan_with_a_warning() -> None:
    with pytest.warns(Warning):
        r = paired_proportion_difference([], [])
    assert math.isnan(r.estimate)
