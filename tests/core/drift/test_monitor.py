"""Monitoring one stream: baseline, detectors, segments after a restart, and the warm-up state."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from core.drift.monitor import MonitorSettings, StreamStatus, monitor_stream, windows_per_day
from core.drift.streams import Windowing, WindowKind, distance_stream, mean_stream, rate_stream
from core.drift.synthetic import piecewise_bernoulli, piecewise_gaussian

DAY = Windowing(WindowKind.DAY)
SETTINGS = MonitorSettings()
START = np.datetime64("2025-01-01", "D")


def _daily(values: np.ndarray) -> np.ndarray:
    return START + np.arange(values.size)


def test_no_alarm_before_the_change_and_an_alarm_soon_after() -> None:
    # Prepare: STYLE 10.9 item 4, a 1.5 sigma shift at t = 200 with one study a day, 40 seeds.
    # At ARL0 5000 per chart about 4% of streams may alarm falsely in 180 monitored days.
    early = late = 0

    # Execute
    for seed in range(40):
        s = piecewise_gaussian(300, change_points=[200], means=[10.0, 10.0 + 1.5 * 0.3], sigma=0.3, seed=seed)
        report = monitor_stream(mean_stream("x", _daily(s.values), s.values, DAY), settings=SETTINGS)
        alarm = report.current_alarm(SETTINGS.alerting)
        early += alarm is not None and alarm.index < 200
        late += alarm is None or alarm.index > 230

    # Assert
    assert early <= 4
    assert late <= 2


def test_alarm_carries_dates_and_an_estimated_change() -> None:
    # Prepare: a 3 sigma jump on 2025-04-11 (index 100)
    s = piecewise_gaussian(160, change_points=[100], means=[0.0, 3.0], seed=1)

    # Execute
    report = monitor_stream(mean_stream("x", _daily(s.values), s.values, DAY), settings=SETTINGS)

    # Assert
    alarm = report.current_alarm(("cusum", "ewma"))
    assert alarm is not None and 100 <= alarm.index <= 104
    assert alarm.alarm_date == date(2025, 1, 1) + timedelta(days=alarm.index)
    assert alarm.change_date == date(2025, 1, 1) + timedelta(days=alarm.change_index)
    assert abs(alarm.change_index - 100) <= 3
    assert report.status == StreamStatus.MONITORING
    assert report.bocpd is not None and report.bocpd.posterior is not None
    assert {a.detector for a in report.alarms} == {"cusum", "ewma", "bocpd"}


def test_traces_are_nan_in_the_baseline_and_aligned_with_windows() -> None:
    # Prepare
    s = piecewise_gaussian(60, change_points=[], means=[0.0], seed=2)

    # Execute
    report = monitor_stream(mean_stream("x", _daily(s.values), s.values, DAY), settings=SETTINGS)

    # Assert
    cusum = report.traces["cusum"]
    assert cusum.statistic.shape == (60,)
    assert np.isnan(cusum.statistic[:20]).all() and np.isfinite(cusum.statistic[20:]).all()
    assert report.monitored.tolist() == [False] * 20 + [True] * 40


def test_warming_up_with_the_count() -> None:
    # Prepare
    values = np.arange(12.0)

    # Execute
    report = monitor_stream(mean_stream("x", _daily(values), values, DAY), settings=SETTINGS)

    # Assert
    assert report.status == StreamStatus.WARMING_UP
    assert report.message == "warming up: 12/20 baseline values"
    assert report.alarms == () and not report.monitored.any()


def test_nan_values_are_skipped_and_counted_not_propagated() -> None:
    # Prepare
    s = piecewise_gaussian(80, change_points=[], means=[0.0], seed=3)
    values = s.values.copy()
    values[[30, 31, 50]] = np.nan

    # Execute
    report = monitor_stream(mean_stream("x", _daily(values), values, DAY), settings=SETTINGS)

    # Assert
    assert report.stream.n_missing == 3
    assert report.traces["cusum"].n_skipped == 3
    assert np.isfinite(report.traces["cusum"].statistic[20:]).all()


def test_constant_stream_has_no_variation() -> None:
    # Execute
    report = monitor_stream(mean_stream("x", _daily(np.ones(30)), np.ones(30), DAY), settings=SETTINGS)

    # Assert
    assert report.status == StreamStatus.NO_VARIATION and report.alarms == ()


def test_a_restart_starts_a_new_segment_with_a_new_baseline() -> None:
    # Prepare: a shift at 100 that persists; the alarm was resolved
    s = piecewise_gaussian(200, change_points=[100], means=[0.0, 3.0], seed=4)
    stream = mean_stream("x", _daily(s.values), s.values, DAY)
    first = monitor_stream(stream, settings=SETTINGS).current_alarm(SETTINGS.alerting)
    assert first is not None

    # Execute
    after = monitor_stream(stream, settings=SETTINGS, restarts=[first.alarm_date])

    # Assert: the new level is the new baseline, the old alarm belongs to segment 0
    assert after.segment_starts == (0, first.index + 1)
    assert after.current_alarm(SETTINGS.alerting) is None
    assert all(a.segment == 0 for a in after.alarms)


def test_a_restart_after_the_last_window_leaves_the_stream_warming_up() -> None:
    # Prepare
    s = piecewise_gaussian(50, change_points=[], means=[0.0], seed=5)

    # Execute
    report = monitor_stream(
        mean_stream("x", _daily(s.values), s.values, DAY), settings=SETTINGS, restarts=[date(2030, 1, 1)]
    )

    # Assert
    assert report.status == StreamStatus.WARMING_UP and report.bocpd is None


def test_rate_streams_use_the_bernoulli_model() -> None:
    # Prepare: positives rise from 10% to 50% at day 150, five studies a day
    s = piecewise_bernoulli(1000, change_points=[750], rates=[0.1, 0.5], seed=6)
    dates = np.repeat(START + np.arange(200), 5)

    # Execute
    report = monitor_stream(rate_stream("r", dates, s.values, DAY), settings=SETTINGS)

    # Assert
    alarm = report.current_alarm(SETTINGS.alerting)
    assert alarm is not None and 150 <= alarm.index <= 156
    assert report.bocpd is not None and report.bocpd.change_points.tolist()[-1] == pytest.approx(150, abs=3)


def test_the_budget_is_split_evenly_over_every_chart_a_site_can_run() -> None:
    # Prepare
    settings = MonitorSettings(false_alarm_budget=0.5)

    # Assert: 12 streams x CUSUM and EWMA, one false alarm in 24 * 365.25 / 0.5 days each
    assert settings.charts_per_site == 24
    assert settings.arl0 == pytest.approx(24 * 365.25 / 0.5)
    assert MonitorSettings(false_alarm_budget=0.25).arl0 == pytest.approx(2 * settings.arl0)
    assert MonitorSettings(alerting=("cusum",)).charts_per_site == 12
    statement = settings.budget_statement()
    assert "at most one incident every 2 years" in statement and "24 charts" in statement
    assert "17,532 days" in statement and "59 studies" in statement


def test_novelty_waits_until_a_five_percent_value_would_have_been_seen() -> None:
    # Assert: 0.95 ** 59 < 0.05 <= 0.95 ** 58
    assert MonitorSettings().novelty_warmup == 59
    assert 0.95**59 < 0.05 <= 0.95**58


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"false_alarm_budget": 0.0}, "budget"),
        ({"false_alarm_budget": float("inf")}, "budget"),
        ({"novelty_share": 1.0}, "novelty"),
        ({"alerting": ("bocpd",)}, "must raise alerts"),
        ({"min_events": 0}, "1 event"),
        ({"min_observations": 2}, "3 values"),
    ],
)
def test_settings_refuse_what_cannot_be_calibrated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MonitorSettings(**kwargs)  # type: ignore[arg-type]


def test_busy_windows_of_studies_get_a_proportionally_longer_run_length() -> None:
    # Prepare: 100 studies a day in windows of 25 -> 4 windows a day
    dates = np.repeat(np.arange(20).astype("datetime64[D]"), 100)
    busy = distance_stream("score_psi", dates, Windowing(WindowKind.STUDIES, 25), lambda idx: float(idx[0] % 7))
    quiet = distance_stream("score_psi", dates[::50], Windowing(WindowKind.STUDIES, 25), lambda idx: 0.0)

    # Assert
    assert windows_per_day(busy) == 4 and windows_per_day(quiet) == 1
    assert windows_per_day(mean_stream("x", dates, np.zeros(dates.size), DAY)) == 1
