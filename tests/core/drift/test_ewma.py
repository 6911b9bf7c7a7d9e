"""EWMA chart: exact time-varying limits, and the lfilter batch form equals the streaming recursion."""

from __future__ import annotations

import numpy as np
import pytest

from core.drift.base import run_detector
from core.drift.ewma import Ewma, ewma_batch, ewma_filter, ewma_normalized, ewma_sd_factor


@pytest.mark.parametrize("seed", range(5))
def test_batch_equals_streaming_with_nans(seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, 3000) + np.r_[np.zeros(2000), np.full(1000, -0.7)]
    x[rng.choice(3000, 40, replace=False)] = np.nan
    detector = Ewma(lambda_=0.1, L=3.0, target=0.2, sigma=0.9)

    # Execute
    states = run_detector(detector, x)
    trace = ewma_batch(x, lambda_=0.1, L=3.0, target=0.2, sigma=0.9)

    # Assert
    assert [s.alarm for s in states] == trace.alarm.tolist()
    np.testing.assert_allclose([s.statistic for s in states], trace.statistic, atol=1e-10)
    assert trace.n_skipped == 40 and trace.alarm.any()


def test_limits_equal_the_simulated_spread_of_the_statistic() -> None:
    # Prepare: many in-control streams
    z = np.random.default_rng(1).normal(size=(20000, 60))

    # Execute
    w = ewma_filter(z, 0.2)

    # Assert: the empirical sd of w_t matches sd_t at early, middle and late t
    for t in (1, 5, 60):
        assert np.std(w[:, t - 1]) == pytest.approx(float(ewma_sd_factor(t, 0.2)), rel=0.03)


def test_limits_are_narrow_first_and_widen() -> None:
    # Execute
    trace = ewma_batch(np.zeros(50), lambda_=0.1, L=3.0)

    # Assert
    width = trace.upper - trace.lower
    assert np.all(np.diff(width) > 0)
    assert width[0] == pytest.approx(2 * 3.0 * 0.1)
    assert width[-1] < 2 * 3.0 * np.sqrt(0.1 / 1.9)


def test_normalized_statistic_matches_the_limits() -> None:
    # Prepare
    z = np.random.default_rng(2).normal(size=200)

    # Execute
    normalized = ewma_normalized(z, 0.1)
    trace = ewma_batch(z, lambda_=0.1, L=2.5)

    # Assert: alarm exactly where |w| / sd_t > L
    assert (normalized > 2.5).tolist() == trace.alarm.tolist()


@pytest.mark.parametrize(("lam", "L"), [(0.0, 3.0), (1.5, 3.0), (0.1, 0.0), (0.1, np.nan)])
def test_bad_parameters_are_refused(lam: float, L: float) -> None:  # noqa: N803
    with pytest.raises(ValueError, match="EWMA"):
        Ewma(lambda_=lam, L=L)


def test_nan_before_any_value_gives_no_alarm() -> None:
    # Execute
    state = Ewma(lambda_=0.2, L=3.0).update(float("nan"))

    # Assert
    assert not state.alarm and state.n_seen == 0 and state.n_skipped == 1
