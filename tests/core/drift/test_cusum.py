"""Two-sided tabular CUSUM: the vectorized batch form equals the streaming recursion."""

from __future__ import annotations

import numpy as np
import pytest

from core.drift.base import run_detector
from core.drift.cusum import TabularCusum, cusum_batch, cusum_sides
from core.drift.synthetic import piecewise_gaussian


@pytest.mark.parametrize("seed", range(5))
def test_batch_equals_streaming_with_nans(seed: int) -> None:
    # Prepare: a shifted stream with NaN holes
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, 2000) + np.r_[np.zeros(1000), np.full(1000, 0.8)]
    x[rng.choice(2000, 50, replace=False)] = np.nan
    detector = TabularCusum(k=0.5, h=6.0, target=0.1, sigma=1.2)

    # Execute
    states = run_detector(detector, x)
    trace = cusum_batch(x, k=0.5, h=6.0, target=0.1, sigma=1.2)

    # Assert
    assert [s.alarm for s in states] == trace.alarm.tolist()
    np.testing.assert_allclose([s.statistic for s in states], trace.statistic, atol=1e-9)
    assert trace.n_skipped == states[-1].n_skipped == 50
    assert trace.alarm.any()


def test_sides_follow_the_recursion_by_hand() -> None:
    # Execute
    upper, lower = cusum_sides(np.array([1.0, 2.0, -1.0, -3.0]), k=0.5)

    # Assert: C+ = 0.5, 2.0, 0.5, 0 ; C- = 0, 0, 0.5, 3.0
    np.testing.assert_allclose(upper, [0.5, 2.0, 0.5, 0.0])
    np.testing.assert_allclose(lower, [0.0, 0.0, 0.5, 3.0])


def test_sides_work_on_many_streams_at_once() -> None:
    # Prepare
    z = np.random.default_rng(0).normal(size=(3, 100))

    # Execute
    upper, _ = cusum_sides(z, k=0.5)

    # Assert
    for row in range(3):
        np.testing.assert_allclose(upper[row], cusum_sides(z[row], k=0.5)[0])


def test_change_point_is_after_the_last_zero() -> None:
    # Prepare: in control for 300, then +1.5 sigma
    stream = piecewise_gaussian(400, change_points=[300], means=[0.0, 1.5], seed=3)

    # Execute
    trace = cusum_batch(stream.values, k=0.5, h=5.0)
    streaming = TabularCusum(k=0.5, h=5.0)
    for x in stream.values[: trace.first_alarm + 1]:  # type: ignore[operator]
        streaming.update(float(x))

    # Assert
    assert trace.first_alarm is not None and trace.first_alarm >= 300
    estimate = int(trace.change_point[trace.first_alarm])
    assert abs(estimate - 300) <= 10
    assert streaming.change_point == estimate


def test_nan_leaves_the_state_unchanged() -> None:
    # Prepare
    detector = TabularCusum(k=0.5, h=4.0)
    detector.update(2.0)

    # Execute
    state = detector.update(float("nan"))

    # Assert
    assert state.statistic == 1.5 and state.n_seen == 1 and state.n_skipped == 1


@pytest.mark.parametrize(("k", "h", "sigma"), [(-0.1, 4.0, 1.0), (0.5, 0.0, 1.0), (0.5, 4.0, 0.0), (0.5, np.inf, 1.0)])
def test_bad_parameters_are_refused(k: float, h: float, sigma: float) -> None:
    with pytest.raises(ValueError, match="CUSUM"):
        TabularCusum(k=k, h=h, sigma=sigma)
    with pytest.raises(ValueError, match="CUSUM"):
        cusum_batch(np.zeros(3), k=k, h=h, sigma=sigma)


def test_all_nan_stream_never_alarms() -> None:
    # Execute
    trace = cusum_batch(np.full(5, np.nan), k=0.5, h=1.0)

    # Assert
    assert not trace.alarm.any() and trace.n_skipped == 5
    assert trace.statistic.tolist() == [0.0] * 5
