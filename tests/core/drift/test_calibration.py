"""ARL0 calibration by simulation: 1,000 fresh in-control streams run as long as the calibrated ARL0."""

from __future__ import annotations

import numpy as np
import pytest

from core.drift.calibration import HORIZON_FACTOR, ChartKind, calibrate, detection_delay, run_lengths
from core.drift.monitor import MonitorSettings

N_STREAMS = 1000
DEFAULTS = MonitorSettings()


def _fresh_run_lengths(chart: ChartKind, parameter: float, threshold: float, arl0: float, seed: int) -> np.ndarray:
    """Run lengths of 1,000 new streams, 8 x ARL0 long, seeded apart from the calibration (8 x ARL0 + 1: none)."""
    rng = np.random.default_rng(seed)
    horizon = int(8 * arl0)
    chunks = [run_lengths(chart, parameter, threshold, rng.standard_normal((100, horizon))) for _ in range(10)]
    return np.concatenate(chunks)


@pytest.mark.parametrize(
    ("chart", "parameter", "arl0"),
    [
        (ChartKind.CUSUM, DEFAULTS.cusum_k, DEFAULTS.arl0),
        (ChartKind.EWMA, DEFAULTS.ewma_lambda, DEFAULTS.arl0),
        (ChartKind.CUSUM, 0.5, 500.0),
        (ChartKind.EWMA, 0.2, 500.0),
    ],
    ids=["cusum-default", "ewma-default", "cusum-500", "ewma-500"],
)
def test_false_alarm_rate_matches_the_configured_arl0(chart: ChartKind, parameter: float, arl0: float) -> None:
    # Prepare
    cal = calibrate(chart, parameter=parameter, arl0=arl0)

    # Execute
    rl = _fresh_run_lengths(chart, parameter, cal.threshold, arl0, seed=424242)

    # Assert: the false-alarm rate 1/ARL is within 15%; hardly any stream ran out (e^-8 expected)
    assert np.mean(rl > 8 * arl0) <= 0.005
    assert 1.0 / rl.mean() == pytest.approx(1.0 / arl0, rel=0.15)


def test_textbook_point_is_reproduced() -> None:
    # Execute: two-sided CUSUM, k = 0.5, ARL0 370 (Montgomery's h = 4.77)
    cal = calibrate(ChartKind.CUSUM, parameter=0.5, arl0=370.0)

    # Assert
    assert cal.threshold == pytest.approx(4.77, abs=0.1)
    assert cal.simulated_arl0 == pytest.approx(370.0, rel=0.01)
    assert 0.0 < cal.censored < 0.1
    assert cal.horizon == int(HORIZON_FACTOR * 370)


def test_higher_arl0_means_a_higher_threshold() -> None:
    # Execute
    h = [calibrate(ChartKind.CUSUM, parameter=0.5, arl0=a).threshold for a in (100.0, 1000.0)]
    L = [calibrate(ChartKind.EWMA, parameter=0.1, arl0=a).threshold for a in (100.0, 1000.0)]  # noqa: N806

    # Assert
    assert h[0] < h[1] and L[0] < L[1]


def test_calibration_is_reproducible() -> None:
    # Execute
    a = calibrate.__wrapped__(ChartKind.EWMA, parameter=0.3, arl0=200.0, n_streams=200, seed=3)
    b = calibrate.__wrapped__(ChartKind.EWMA, parameter=0.3, arl0=200.0, n_streams=200, seed=3)

    # Assert
    assert a == b


def test_detection_delay_for_a_one_sigma_shift_is_reported() -> None:
    # Prepare
    cusum = calibrate(ChartKind.CUSUM, parameter=DEFAULTS.cusum_k, arl0=DEFAULTS.arl0)
    ewma = calibrate(ChartKind.EWMA, parameter=DEFAULTS.ewma_lambda, arl0=DEFAULTS.arl0)

    # Execute
    delays = [detection_delay(cal, shift=1.0) for cal in (cusum, ewma)]
    no_shift = detection_delay(cusum, shift=0.0, n_streams=200, horizon=200)

    # Assert: a 1 sigma shift is found in tens of observations, against thousands without one
    for d in delays:
        assert 5.0 < d.mean_delay < 30.0 and d.never == 0.0
    assert no_shift.never > 0.9


@pytest.mark.parametrize(("arl0", "n_streams"), [(1.0, 100), (float("inf"), 100), (100.0, 5)])
def test_bad_requests_are_refused(arl0: float, n_streams: int) -> None:
    with pytest.raises(ValueError):
        calibrate.__wrapped__(ChartKind.CUSUM, parameter=0.5, arl0=arl0, n_streams=n_streams)
