"""ARL0 by Markov chain: against the published tables, against simulation, and taking over calibration."""

from __future__ import annotations

import numpy as np
import pytest

from core.drift import arl_chain
from core.drift.calibration import MARKOV_CHAIN, MAX_SIMULATED_VALUES, SIMULATION, ChartKind, calibrate, run_lengths


@pytest.mark.parametrize(
    ("k", "h", "published"),
    [(0.5, 4.0, 168.0), (0.5, 5.0, 465.0), (0.5, 4.77, 370.0), (0.25, 8.01, 370.0)],
    ids=["h4", "h5", "h4.77", "k.25"],
)
def test_cusum_arl_matches_montgomerys_table(k: float, h: float, published: float) -> None:
    # Execute
    arl = arl_chain.cusum_arl(k, h)

    # Assert: Montgomery, Introduction to Statistical Quality Control, Table 9.3 / 9.4 (two-sided)
    assert arl == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize(
    ("lambda_", "L", "published"),
    [(0.1, 2.814, 500.0), (0.05, 2.615, 500.0), (0.2, 2.962, 500.0)],
    ids=["l.1", "l.05", "l.2"],
)
def test_steady_state_ewma_arl_matches_lucas_and_saccucci(lambda_: float, L: float, published: float) -> None:  # noqa: N803
    # Execute
    arl = arl_chain.ewma_arl(lambda_, L, time_varying=False)

    # Assert: Lucas & Saccucci (1990), Table 3
    assert arl == pytest.approx(published, rel=0.02)


def test_time_varying_limits_alarm_earlier_than_steady_ones() -> None:
    # Execute: the exact, narrower early limits can only add false alarms
    steady = arl_chain.ewma_arl(0.05, 2.615, time_varying=False)
    varying = arl_chain.ewma_arl(0.05, 2.615)

    # Assert
    assert varying < steady
    assert varying > 0.8 * steady  # the early windows are a small share of 500


@pytest.mark.parametrize(
    ("chart", "parameter", "threshold"),
    [(ChartKind.CUSUM, 0.5, 4.0), (ChartKind.EWMA, 0.1, 2.7), (ChartKind.EWMA, 0.2, 2.9)],
    ids=["cusum", "ewma-.1", "ewma-.2"],
)
def test_chain_arl_agrees_with_simulated_run_lengths(chart: ChartKind, parameter: float, threshold: float) -> None:
    # Prepare: the ARL of Vigil's own charts (time-varying EWMA limits), 4,000 streams fully observed
    arl = (
        arl_chain.cusum_arl(parameter, threshold)
        if chart is ChartKind.CUSUM
        else arl_chain.ewma_arl(parameter, threshold)
    )
    rng = np.random.default_rng(20261206)
    horizon = int(10 * arl)

    # Execute
    rl = np.concatenate(
        [run_lengths(chart, parameter, threshold, rng.standard_normal((500, horizon))) for _ in range(8)]
    )

    # Assert: none ran out; the mean run length is within 4 standard errors (about 6%) of the chain's
    assert np.all(rl <= horizon)
    se = rl.std() / np.sqrt(rl.size)
    assert abs(rl.mean() - arl) < 4 * se


@pytest.mark.parametrize("chart", ["cusum", "ewma"])
@pytest.mark.parametrize("arl0", [370.0, 1e6])
def test_threshold_for_hits_the_target(chart: str, arl0: float) -> None:
    # Execute
    threshold, achieved = arl_chain.threshold_for(chart, 0.5 if chart == "cusum" else 0.1, arl0)

    # Assert
    assert achieved == pytest.approx(arl0, rel=1e-4)
    if chart == "cusum" and arl0 == 370.0:
        assert threshold == pytest.approx(4.77, abs=0.02)


@pytest.mark.parametrize(("chart", "parameter"), [(ChartKind.CUSUM, 0.5), (ChartKind.EWMA, 0.1)])
def test_calibration_switches_to_the_chain_past_the_simulation_budget(chart: ChartKind, parameter: float) -> None:
    # Prepare: an ARL0 whose simulation would exceed the budget, and one that stays under it
    big = MAX_SIMULATED_VALUES / 3 / 1000 * 4
    small = 2000.0

    # Execute
    chain = calibrate(chart, parameter=parameter, arl0=big)
    simulated = calibrate(chart, parameter=parameter, arl0=small)
    chain_small, _ = arl_chain.threshold_for(chart.value, parameter, small)

    # Assert: the method is recorded, and where both can run they find nearly the same threshold
    assert chain.method == MARKOV_CHAIN
    assert (chain.n_streams, chain.horizon, chain.censored) == (0, 0, 0.0)
    assert chain.simulated_arl0 == pytest.approx(big, rel=1e-4)
    assert chain.threshold > simulated.threshold
    assert simulated.method == SIMULATION
    assert simulated.threshold == pytest.approx(chain_small, rel=0.02)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: arl_chain.cusum_arl(-0.1, 4.0), "k >= 0"),
        (lambda: arl_chain.cusum_arl(0.5, float("nan")), "h=nan"),
        (lambda: arl_chain.ewma_arl(0.0, 3.0), "lambda=0.0"),
        (lambda: arl_chain.ewma_arl(0.1, float("inf")), "L=inf"),
        (lambda: arl_chain.threshold_for("cusum", 0.5, 1.0), "ARL0 1.0"),
        (lambda: arl_chain.threshold_for("shewhart", 0.5, 370.0), "shewhart"),
    ],
    ids=["k", "h", "lambda", "L", "arl0", "chart"],
)
def test_bad_arguments_are_refused_naming_the_value(call: object, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("+", r"\+")):
        call()  # type: ignore[operator]
