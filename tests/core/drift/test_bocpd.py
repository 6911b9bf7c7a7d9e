"""BOCPD: exact against a dense Adams & MacKay reference, bounded by its cap, and in agreement with PELT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln, gammaln

from core.drift.bocpd import Bocpd, bocpd
from core.drift.bocpd_models import BernoulliModel, GaussianModel
from core.drift.synthetic import piecewise_bernoulli, piecewise_gaussian, random_segments


def _dense_gaussian(x: np.ndarray, hazard: float, model: GaussianModel) -> np.ndarray:
    """Textbook BOCPD with the full run-length vector (no pruning, no cap): the reference."""
    n = x.size
    post = np.zeros((n, n + 1))
    logr = np.array([0.0])
    mu, kappa = np.array([model.mu0]), np.array([model.kappa0])
    alpha, beta = np.array([model.alpha0]), np.array([model.beta0])
    for t, xt in enumerate(x):
        nu = 2 * alpha
        scale2 = beta * (kappa + 1) / (alpha * kappa)
        logpred = (
            gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * np.log(nu * math.pi * scale2)
            - (nu + 1) / 2 * np.log1p((xt - mu) ** 2 / (nu * scale2))
        )
        joint = logr + logpred
        growth = joint + math.log(1 - hazard)
        cp = np.logaddexp.reduce(joint) + math.log(hazard)
        logr = np.r_[cp, growth]
        logr -= np.logaddexp.reduce(logr)
        beta = np.r_[model.beta0, beta + kappa * (xt - mu) ** 2 / (2 * (kappa + 1))]
        mu = np.r_[model.mu0, (kappa * mu + xt) / (kappa + 1)]
        kappa = np.r_[model.kappa0, kappa + 1]
        alpha = np.r_[model.alpha0, alpha + 0.5]
        post[t, : logr.size] = np.exp(logr)
    return post


def test_posterior_equals_the_dense_reference_when_the_cap_does_not_bind() -> None:
    # Prepare
    stream = piecewise_gaussian(120, change_points=[60], means=[0.0, 2.0], seed=4)
    model = GaussianModel()

    # Execute
    result = bocpd(
        stream.values,
        detector=Bocpd(model=model, hazard=0.02, cap=200, prune_below=0.0),
        keep_posterior=True,
    )

    # Assert
    assert result.posterior is not None
    np.testing.assert_allclose(result.posterior, _dense_gaussian(stream.values, 0.02, model), atol=1e-6)


def test_bernoulli_predictive_is_beta_binomial() -> None:
    # Prepare
    model = BernoulliModel(a0=2.0, b0=3.0)
    stats = np.array([[2.0, 5.0], [3.0, 1.0]])

    # Execute
    lp = model.log_predictive(stats, 3.0, 4.0)

    # Assert
    expected = [
        math.log(math.comb(4, 3)) + betaln(2 + 3, 3 + 1) - betaln(2, 3),
        math.log(math.comb(4, 3)) + betaln(5 + 3, 1 + 1) - betaln(5, 1),
    ]
    np.testing.assert_allclose(lp, expected)


@pytest.mark.parametrize("model", [GaussianModel(), BernoulliModel()], ids=["gaussian", "bernoulli"])
def test_live_hypotheses_never_exceed_the_cap(model: GaussianModel | BernoulliModel) -> None:
    # Prepare: a long stable stream, the worst case for the state size
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000) if isinstance(model, GaussianModel) else (rng.random(3000) < 0.3).astype(float)
    detector = Bocpd(model=model, hazard=1 / 250, cap=64)

    # Execute
    result = bocpd(x, detector=detector)

    # Assert
    assert result.max_live == 64 == detector.live


def test_probability_pruning_alone_does_not_bound_a_stable_stream() -> None:
    # Prepare: the cap set out of reach, so only pruning could bound the state
    x = np.random.default_rng(1).normal(size=1500)

    # Execute
    result = bocpd(x, detector=Bocpd(model=GaussianModel(), hazard=1 / 250, cap=10_000))

    # Assert: the state keeps growing with the stream (BENCHMARKING.md: a hard cap is needed)
    assert result.max_live > 1000


def test_nan_is_skipped_and_counted() -> None:
    # Prepare
    stream = piecewise_gaussian(200, change_points=[100], means=[0.0, 4.0], seed=2)
    x = stream.values.copy()
    x[[5, 50, 150]] = np.nan

    # Execute
    result = bocpd(x, detector=Bocpd(model=GaussianModel(), hazard=1 / 250, cap=100), keep_posterior=True)

    # Assert
    assert result.n_skipped == 3
    assert result.posterior is not None and np.isfinite(result.posterior).all()
    np.testing.assert_array_equal(result.posterior[50], result.posterior[49])
    assert result.change_points.tolist() == [100]


def test_no_change_point_before_the_change_and_one_soon_after() -> None:
    # Prepare: STYLE 10.9 item 4, a 2 sigma change at t = 200, over 50 seeds. The in-control rate
    # of false change points is about 1 per 3,750 observations (hazard 1/250, threshold 0.9), so
    # about 2.7 of the 50 streams are expected to have one before t = 200.
    early = detected = located = 0

    # Execute
    for seed in range(50):
        stream = piecewise_gaussian(400, change_points=[200], means=[0.0, 2.0], seed=seed)
        result = bocpd(stream.values, detector=Bocpd(model=GaussianModel(), hazard=1 / 250, cap=200))
        alarms = np.flatnonzero(result.alarm)
        early += bool(alarms.size and alarms[0] < 200)
        after = alarms[alarms >= 200]
        if after.size and after[0] <= 215:
            detected += 1
            located += abs(int(result.change_point[after[0]]) - 200) <= 3

    # Assert
    assert early <= 6
    assert detected >= 48
    assert located >= 45


def test_bernoulli_rate_change_is_found() -> None:
    # Prepare
    stream = piecewise_bernoulli(600, change_points=[300], rates=[0.1, 0.4], seed=5)

    # Execute
    result = bocpd(stream.values, detector=Bocpd(model=BernoulliModel(), hazard=1 / 250, cap=200))

    # Assert
    assert len(result.change_points) == 1 and abs(int(result.change_points[0]) - 300) <= 15


def test_agrees_with_ruptures_pelt_on_piecewise_constant_streams() -> None:
    # Prepare: 30 streams with 4 jumps of 2 sigma each, segments of at least 60
    import ruptures as rpt

    margin, n = 5, 600
    tp = fp = fn = exact = 0

    # Execute
    for seed in range(30):
        stream = random_segments(n, n_changes=4, min_size=60, jump=2.0, seed=seed)
        ours = bocpd(
            stream.values, detector=Bocpd(model=GaussianModel(), hazard=1 / 250, cap=200, min_separation=10)
        ).change_points.tolist()
        pelt = rpt.Pelt(model="l2", min_size=10, jump=2).fit(stream.values).predict(pen=3 * np.log(n))[:-1]
        hits = sum(any(abs(a - b) <= margin for b in pelt) for a in ours)
        found = sum(any(abs(a - b) <= margin for a in ours) for b in pelt)
        tp, fp, fn = tp + hits, fp + len(ours) - hits, fn + len(pelt) - found
        exact += len(ours) == len(pelt) == hits

    # Assert
    assert tp / (tp + fp) >= 0.95
    assert tp / (tp + fn) >= 0.95
    assert exact >= 27


@pytest.mark.parametrize(
    "kwargs",
    [{"hazard": 0.0}, {"hazard": 1.0}, {"cap": 1}, {"threshold": 1.0}, {"confirm": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    settings: dict[str, float] = {"hazard": 0.01, "cap": 10} | kwargs
    with pytest.raises(ValueError):
        Bocpd(model=GaussianModel(), **settings)  # type: ignore[arg-type]


def test_bernoulli_refuses_more_successes_than_trials() -> None:
    with pytest.raises(ValueError, match="successes"):
        Bocpd(model=BernoulliModel(), hazard=0.01, cap=10).update(3.0, 2.0)
