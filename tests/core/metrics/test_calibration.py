"""Calibration metrics on data whose calibration is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics import (
    calibration_intercept,
    calibration_slope,
    expected_calibration_error,
    reliability_curve,
)
from core.metrics.calibration.logistic import logit


def _calibrated(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return (rng.random(n) < p).astype(np.int64), p


def test_ece_is_zero_when_each_bin_matches_its_frequency() -> None:
    # Prepare: ten cases at 0.1 with one positive, ten at 0.7 with seven
    p = np.array([0.1] * 10 + [0.7] * 10)
    y = np.array([1] + [0] * 9 + [1] * 7 + [0] * 3)

    # Execute / Assert
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-15)


def test_ece_weights_each_bin_by_its_count() -> None:
    # Prepare: bin 0.1 (n=10) over-predicts by 0.1; bin 0.7 (n=30) is exact
    p = np.array([0.1] * 10 + [0.7] * 30)
    y = np.array([0] * 10 + [1] * 21 + [0] * 9)

    # Execute / Assert
    assert expected_calibration_error(y, p) == pytest.approx(10 / 40 * 0.1)


def test_reliability_curve_skips_empty_bins_and_counts_cases() -> None:
    # Execute
    curve = reliability_curve([0, 1, 1, 0], [0.05, 0.95, 0.92, 0.5], n_bins=10)

    # Assert
    assert curve.count.tolist() == [1, 1, 2]
    assert curve.edges.size == 11


def test_slope_is_one_and_intercept_zero_for_a_calibrated_model() -> None:
    # Prepare
    y, p = _calibrated(0)

    # Execute / Assert
    assert calibration_slope(y, p) == pytest.approx(1.0, abs=0.06)
    assert calibration_intercept(y, p) == pytest.approx(0.0, abs=0.04)


def test_overconfident_scores_have_a_slope_below_one() -> None:
    # Prepare: the logit doubled, so the model is too extreme
    y, p = _calibrated(1)
    extreme = 1.0 / (1.0 + np.exp(-2.0 * logit(p)))

    # Execute / Assert
    assert calibration_slope(y, extreme) == pytest.approx(0.5, abs=0.04)


def test_intercept_solves_its_score_equation() -> None:
    # Prepare: a model that over-predicts
    y, p = _calibrated(2, n=3000)
    shifted = 1.0 / (1.0 + np.exp(-(logit(p) + 0.7)))

    # Execute
    a = calibration_intercept(y, shifted)

    # Assert: sum(y - sigmoid(a + logit p)) == 0 at the maximum likelihood
    fitted = 1.0 / (1.0 + np.exp(-(a + logit(shifted))))
    assert abs(float(np.sum(y - fitted))) < 1e-6
    assert a == pytest.approx(-0.7, abs=0.15)


def test_separated_cases_have_no_slope() -> None:
    # Execute
    with pytest.warns(UndefinedMetricWarning, match="converge"):
        slope = calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])

    # Assert
    assert np.isnan(slope)


def test_probabilities_outside_the_unit_interval_are_refused() -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.2, 1.2])
