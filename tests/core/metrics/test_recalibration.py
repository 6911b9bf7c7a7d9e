"""Platt and isotonic recalibration against scikit-learn, and their cross-validated evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from core.errors import BadInputError, UnknownMethodError
from core.metrics.calibration.logistic import logit
from core.metrics.recalibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_params,
    cross_validate_calibrator,
    make_calibrator,
)
from core.metrics.recalibration.isotonic import pool_adjacent_violators


def _miscalibrated(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < truth).astype(np.int64)
    # Over-confident and shifted: what a site with other processing might see.
    return y, np.round(1.0 / (1.0 + np.exp(-(2.0 * logit(truth) + 0.8))), 3)


def test_platt_equals_unpenalized_logistic_regression_on_the_logit() -> None:
    # Prepare
    y, p = _miscalibrated(0)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(p)[:, None], y)

    # Execute
    cal = PlattCalibrator().fit(y, p)

    # Assert
    assert cal.intercept == pytest.approx(reference.intercept_[0], abs=1e-6)
    assert cal.slope == pytest.approx(reference.coef_[0, 0], abs=1e-6)


def test_isotonic_equals_sklearn() -> None:
    # Prepare
    y, p = _miscalibrated(1)
    grid = np.linspace(-0.1, 1.1, 501)

    # Execute
    ours = IsotonicCalibrator().fit(y, p).predict(grid)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(p, y).predict(grid)

    # Assert
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_pool_adjacent_violators_pools_weighted_means() -> None:
    # Execute
    fitted = pool_adjacent_violators(np.array([3.0, 1.0, 2.0, 5.0]), np.array([1.0, 3.0, 1.0, 1.0]))

    # Assert
    np.testing.assert_allclose(fitted, [1.5, 1.5, 2.0, 5.0])


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_parameters_round_trip(method: str) -> None:
    # Prepare
    y, p = _miscalibrated(2, n=300)
    cal = make_calibrator(method).fit(y, p)

    # Execute
    rebuilt = calibrator_from_params(method, cal.to_params())

    # Assert
    np.testing.assert_array_equal(rebuilt.predict(p), cal.predict(p))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_cross_validation_lowers_ece_of_a_miscalibrated_model(method: str) -> None:
    # Prepare
    y, p = _miscalibrated(3)

    # Execute
    result = cross_validate_calibrator(y, p, method=method, n_folds=5, random_state=0)

    # Assert
    assert result.ece_after < result.ece_before / 2
    assert result.brier_after < result.brier_before
    assert result.n_cases == y.size


def test_cross_validation_needs_cases_of_each_class_in_every_fold() -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="3 positive"):
        cross_validate_calibrator([1, 1, 1] + [0] * 20, np.linspace(0.1, 0.9, 23), method="platt", n_folds=5)


def test_single_class_and_unknown_method_are_refused() -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="both classes"):
        PlattCalibrator().fit([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(UnknownMethodError, match="beta"):
        make_calibrator("beta")
    with pytest.raises(BadInputError, match="malformed"):
        calibrator_from_params("isotonic", {"x": [0.1], "y": []})
