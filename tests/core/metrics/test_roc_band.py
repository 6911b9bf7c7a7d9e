"""The pointwise ROC band: its curve against a direct count, its seed, its width and its undefined cases."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics.roc_band import roc_band, tpr_at


def _cases(seed: int, n_pos: int, n_neg: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)]
    return y, rng.normal(size=y.size) + shift * y  # continuous: no ties


def _direct_tpr(y: np.ndarray, s: np.ndarray, k: int) -> float:
    """TPR once exactly k negatives are called positive: positives above the (k+1)-th highest negative."""
    neg = np.sort(s[y == 0])[::-1]
    cut = neg[k] if k < neg.size else -np.inf
    return float((s[y == 1] > cut).mean())


def test_observed_curve_matches_a_direct_count_on_the_grid() -> None:
    # Prepare: 100 negatives, so every grid point (steps of 0.01) is a whole number of negatives
    y, s = _cases(0, 60, 100)

    # Execute
    band = roc_band(y, s, n_resamples=50)

    # Assert
    expected = [_direct_tpr(y, s, k) for k in range(101)]
    np.testing.assert_allclose(band.tpr, expected)


def test_vertical_runs_take_their_highest_tpr() -> None:
    # Execute: a curve that rises at FPR 0 and again at FPR 0.5
    got = tpr_at(np.array([0.0, 0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.4, 0.4, 0.9, 1.0]), np.array([0.0, 0.25, 0.5]))

    # Assert
    np.testing.assert_allclose(got, [0.4, 0.4, 0.9])


def test_same_seed_same_band_other_seed_other_band() -> None:
    # Prepare
    y, s = _cases(1, 40, 80)

    # Execute
    a, b, c = (roc_band(y, s, n_resamples=200, random_state=seed) for seed in (7, 7, 8))

    # Assert
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    assert not np.array_equal(a.lower, c.lower)


def test_band_brackets_the_curve_and_narrows_with_more_cases() -> None:
    # Execute
    small = roc_band(*_cases(2, 30, 60), n_resamples=300)
    large = roc_band(*_cases(2, 600, 1200), n_resamples=300)

    # Assert: ordered, inside [0, 1], and about sqrt(20) narrower with 20 times the cases
    for band in (small, large):
        assert np.all(band.lower <= band.upper)
        assert band.lower.min() >= 0.0 and band.upper.max() <= 1.0
        inside = (band.lower <= band.tpr) & (band.tpr <= band.upper)
        assert inside.mean() > 0.95
    mid = slice(10, 50)
    assert (large.upper - large.lower)[mid].mean() < 0.5 * (small.upper - small.lower)[mid].mean()


def test_every_replicate_keeps_both_classes() -> None:
    # Prepare: two positives among many negatives; an unstratified draw would often lose them
    y, s = _cases(3, 2, 200)

    # Execute
    band = roc_band(y, s, n_resamples=300)

    # Assert: every grid point has defined bounds
    assert np.isfinite(band.lower).all() and np.isfinite(band.upper).all()


@pytest.mark.parametrize(("y", "s"), [([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3]), ([0, 0, 0], [0.1, 0.2, 0.3])])
def test_a_class_with_fewer_than_two_cases_is_undefined(y: list[int], s: list[float]) -> None:
    # Execute
    with pytest.warns(UndefinedMetricWarning, match="ROC band"):
        band = roc_band(y, s, n_resamples=10)

    # Assert
    assert np.isnan(band.tpr).all() and np.isnan(band.lower).all() and np.isnan(band.upper).all()


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(BadInputError, match="got 1 and 101"):
        roc_band([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], n_resamples=1)
