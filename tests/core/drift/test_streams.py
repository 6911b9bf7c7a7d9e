"""Windowed streams: windows, NaN accounting, warming up, and exact self-starting standardization."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from core.drift.calibration import ChartKind, calibrate
from core.drift.cusum import cusum_batch
from core.drift.streams import (
    Baseline,
    Standardization,
    StreamKind,
    WarmingUp,
    Windowing,
    WindowKind,
    assign_windows,
    distance_stream,
    estimate_baseline,
    mean_stream,
    rate_stream,
    self_starting,
)

DAY = Windowing(WindowKind.DAY)


def _sparse_days(rng: np.random.Generator, n_days: int, rate: float) -> np.ndarray:
    """Study dates of a site with Poisson(rate) studies a day (many days without any)."""
    per_day = rng.poisson(rate, n_days)
    return np.repeat(np.arange(n_days).astype("datetime64[D]"), per_day)


def test_day_windows_skip_days_without_studies() -> None:
    # Prepare
    dates = np.array(["2025-05-01", "2025-05-01", "2025-05-04"], dtype="datetime64[D]")

    # Execute
    stream = mean_stream("x", dates, np.array([1.0, 3.0, 5.0]), DAY)

    # Assert
    assert [str(d) for d in stream.dates] == ["2025-05-01", "2025-05-04"]
    assert stream.values.tolist() == [2.0, 5.0] and stream.counts.tolist() == [2, 1]


def test_study_windows_leave_the_incomplete_tail_pending() -> None:
    # Prepare
    dates = np.arange(7).astype("datetime64[D]")

    # Execute
    window, wdates, pending = assign_windows(dates, Windowing(WindowKind.STUDIES, 3))

    # Assert
    assert window.tolist() == [0, 0, 0, 1, 1, 1, -1]
    assert [str(d) for d in wdates] == ["1970-01-03", "1970-01-06"] and pending == 1


def test_nan_values_are_skipped_and_counted() -> None:
    # Prepare
    dates = np.array(["2025-05-01"] * 3 + ["2025-05-02"] * 2, dtype="datetime64[D]")
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan])

    # Execute
    stream = mean_stream("x", dates, values, DAY)

    # Assert
    assert stream.values[0] == 2.0 and np.isnan(stream.values[1])
    assert stream.missing.tolist() == [1, 2] and stream.n_missing == 3
    assert stream.counts.tolist() == [2, 0]


def test_warming_up_says_how_far_along_it_is() -> None:
    # Prepare
    dates = np.arange(12).astype("datetime64[D]")
    stream = mean_stream("x", dates, np.arange(12.0), DAY)

    # Execute
    base = estimate_baseline(stream, np.arange(12), min_values=20, min_events=10)

    # Assert
    assert isinstance(base, WarmingUp)
    assert (base.have, base.need) == (12, 20)
    assert "12/20" in base.reason


def test_a_rate_baseline_waits_for_enough_events_of_each_kind() -> None:
    # Prepare: 10 % positives, one study a day: 60 days hold about 6 positives
    rng = np.random.default_rng(2)
    outcomes = (rng.random(400) < 0.1).astype(float)
    stream = rate_stream("r", np.arange(400).astype("datetime64[D]"), outcomes, DAY)
    positives_by = np.cumsum(outcomes)

    # Execute
    early = estimate_baseline(stream, np.arange(60), min_values=20, min_events=10)
    later = estimate_baseline(stream, np.arange(400), min_values=20, min_events=10)

    # Assert: the baseline ends on the day of the tenth positive, not after a fixed number of windows
    assert isinstance(early, WarmingUp) and early.have == int(positives_by[59]) < 10
    assert f"{int(positives_by[59])} events" in early.reason and "10 of each" in early.reason
    assert isinstance(later, Baseline)
    assert later.last_window == int(np.argmax(positives_by >= 10))
    assert later.mean == pytest.approx(10.5 / (later.last_window + 2))


def test_a_rate_with_no_failure_yet_starts_after_enough_trials() -> None:
    # Prepare: a sensitivity of 100 % so far, two labelled positives a day
    dates = np.repeat(np.arange(150).astype("datetime64[D]"), 2)
    stream = rate_stream("sensitivity", dates, np.ones(300), DAY)

    # Execute
    base = estimate_baseline(stream, np.arange(150), min_values=20, min_events=10, max_trials=200)

    # Assert: 200 trials by day 100 (window 99); the rate keeps a spread (Jeffreys)
    assert isinstance(base, Baseline) and base.last_window == 99
    assert 0 < base.sd < 0.1


def test_baseline_describes_its_windows() -> None:
    # Prepare
    stream = mean_stream("x", np.arange(30).astype("datetime64[D]"), np.arange(30.0) % 2, DAY)

    # Execute
    base = estimate_baseline(stream, np.arange(30), min_values=20, min_events=10)

    # Assert
    assert isinstance(base, Baseline)
    assert base.mean == pytest.approx(0.5) and base.sd == pytest.approx(np.std(np.arange(20) % 2, ddof=1))
    assert base.last_window == 19 and base.windows == 20


def test_self_starting_values_are_standard_normal_in_control() -> None:
    # Prepare: in-control normal studies, one to five a day on most days, with a far-off mean
    rng = np.random.default_rng(7)
    dates = _sparse_days(rng, 4000, 1.7)
    values = rng.normal(1000.0, 0.01, dates.size)
    stream = mean_stream("x", dates, values, DAY, standardization=Standardization.STUDENT)

    # Execute
    z = self_starting(stream, np.arange(stream.n_windows))
    z = z[np.isfinite(z)]

    # Assert: N(0, 1) (Kolmogorov-Smirnov), uncorrelated at lag one
    assert stats.kstest(z, "norm").pvalue > 0.01
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.05


def test_self_starting_keeps_the_calibrated_arl0_without_a_known_baseline() -> None:
    # Prepare: 300 sparse in-control sites; the chart knows neither mean nor sd in advance
    arl0 = 200.0
    cal = calibrate(ChartKind.CUSUM, parameter=0.5, arl0=arl0)
    rng = np.random.default_rng(11)
    run_lengths = []

    # Execute
    for _ in range(300):
        dates = _sparse_days(rng, 3000, 1.7)
        stream = mean_stream("x", dates, rng.normal(5.0, 2.0, dates.size), DAY, standardization=Standardization.STUDENT)
        z = self_starting(stream, np.arange(stream.n_windows))[20:]  # 20 baseline windows
        first = cusum_batch(z[np.isfinite(z)], k=0.5, h=cal.threshold).first_alarm
        run_lengths.append(first + 1 if first is not None else z.size)

    # Assert
    assert np.mean(run_lengths) == pytest.approx(arl0, rel=0.15)


def test_self_starting_flags_a_shift() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(0, 1, 100), rng.normal(3, 1, 10)]
    stream = mean_stream("x", np.arange(110).astype("datetime64[D]"), values, DAY)

    # Execute
    z = self_starting(stream, np.arange(110))

    # Assert
    assert np.nanmean(z[100:]) > 2.0 and abs(np.nanmean(z[3:100])) < 0.3


def test_rate_stream_standardizes_against_the_rate_so_far() -> None:
    # Prepare: 10% positives, then 40%
    rng = np.random.default_rng(5)
    dates = np.repeat(np.arange(200).astype("datetime64[D]"), 5)
    outcomes = (rng.random(1000) < np.r_[np.full(500, 0.1), np.full(500, 0.4)]).astype(float)

    # Execute
    stream = rate_stream("r", dates, outcomes, DAY)
    z = self_starting(stream, np.arange(200))

    # Assert
    assert stream.kind is StreamKind.RATE
    # (expected 1.67 a day after the change: the randomized quantile residual of Bin(5, 0.4) under 0.1)
    assert abs(np.nanmean(z[5:100])) < 0.3 and np.nanmean(z[100:120]) > 1.3


def test_rate_stream_refuses_values_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="0/1"):
        rate_stream("r", np.arange(2).astype("datetime64[D]"), np.array([0.0, 0.5]), DAY)


def test_distance_stream_needs_windows_of_studies() -> None:
    # Prepare
    dates = np.arange(10).astype("datetime64[D]")

    # Execute / Assert
    with pytest.raises(ValueError, match="windows of N studies"):
        distance_stream("d", dates, DAY, lambda idx: 0.0)
    stream = distance_stream("d", dates, Windowing(WindowKind.STUDIES, 4), lambda idx: float(idx[0]))
    assert stream.values.tolist() == [0.0, 4.0] and stream.pending == 2


def test_undefined_distance_is_skipped_and_counted() -> None:
    # Execute
    stream = distance_stream(
        "d", np.arange(9).astype("datetime64[D]"), Windowing(WindowKind.STUDIES, 3), lambda idx: np.nan
    )

    # Assert
    assert stream.n_missing == 3 and stream.counts.tolist() == [0, 0, 0]


@pytest.mark.parametrize("text", ["week", "studies:0", "studies:x", "studies"])
def test_window_text_is_checked(text: str) -> None:
    with pytest.raises(ValueError, match="unknown window"):
        Windowing.parse(text)


@pytest.mark.parametrize("seed", range(5))
def test_a_distance_stream_gives_each_window_exactly_its_studies_in_order(seed: int) -> None:
    # Prepare: studies on random sorted days, windows of 7 (the last, incomplete one is pending)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    dates = np.sort(np.datetime64("2026-01-01") + rng.integers(0, 30, n).astype("timedelta64[D]"))
    windowing = Windowing(WindowKind.STUDIES, 7)
    window, _, _ = assign_windows(dates, windowing)
    seen: list[list[int]] = []

    def distance(idx: np.ndarray) -> float:
        seen.append(idx.tolist())
        return float(idx.size)

    # Execute
    stream = distance_stream("d", dates, windowing, distance)

    # Assert: what one scan per window gives (the former way), window by window
    assert seen == [np.flatnonzero(window == i).tolist() for i in range(stream.dates.size)]
    assert all(len(s) == 7 for s in seen)
