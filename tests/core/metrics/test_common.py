"""Properties shared by every metric, written once and parametrized over a registry.

To contributors (after scikit-learn's ``metrics/tests/test_common.py``): most guarantees a metric
gives are not about one example but about how it behaves under transformations of its input.
Register a new metric in :data:`METRICS`, then add its name to every property set it has:
invariance to case order, invariance to site relabeling (through the per-site report), equality
with scikit-learn on the pooled data, and undefined (NaN plus a warning) on a single class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from core.errors import EmptySampleError, UndefinedMetricWarning
from core.metrics import (
    bootstrap_auc,
    brier_score_loss,
    calibration_intercept,
    calibration_slope,
    delong_auc,
    expected_calibration_error,
    negative_predictive_value,
    operating_point,
    pilot_drift_report,
    positive_predictive_value,
    reliability_curve,
    roc_auc_score,
    roc_curve,
    sensitivity_score,
    specificity_score,
)
from core.metrics.calibration.logistic import logit

THRESHOLD = 0.5
Metric = Callable[[np.ndarray, np.ndarray], Any]

METRICS: dict[str, Metric] = {
    "roc_auc": roc_auc_score,
    "delong_auc": lambda y, s: delong_auc(y, s).auc,
    "delong_variance": lambda y, s: delong_auc(y, s).variance,
    "delong_ci": lambda y, s: (delong_auc(y, s).ci.lower, delong_auc(y, s).ci.upper),
    "bootstrap_ci": lambda y, s: (lambda r: (r.ci.lower, r.ci.upper))(
        bootstrap_auc(y, s, n_resamples=100, random_state=3)
    ),
    "roc_curve": lambda y, s: np.concatenate([roc_curve(y, s).fpr, roc_curve(y, s).tpr]),
    "sensitivity": lambda y, s: sensitivity_score(y, s, threshold=THRESHOLD),
    "specificity": lambda y, s: specificity_score(y, s, threshold=THRESHOLD),
    "ppv": lambda y, s: positive_predictive_value(y, s, threshold=THRESHOLD),
    "npv": lambda y, s: negative_predictive_value(y, s, threshold=THRESHOLD),
    "sensitivity_wilson": lambda y, s: (lambda r: (r.lower, r.upper))(
        operating_point(y, s, threshold=THRESHOLD).sensitivity
    ),
    "brier": brier_score_loss,
    "ece": expected_calibration_error,
    "ece_quantile": lambda y, s: expected_calibration_error(y, s, strategy="quantile"),
    "reliability": lambda y, s: np.concatenate(
        [reliability_curve(y, s).fraction_positive, reliability_curve(y, s).mean_predicted]
    ),
    "calibration_slope": calibration_slope,
    "calibration_intercept": calibration_intercept,
}

#: Every metric: the bootstrap too, because it draws from a canonical order of the cases.
INVARIANT_TO_SAMPLE_ORDER = sorted(METRICS)


def _sk_slope(y: np.ndarray, s: np.ndarray) -> float:
    model = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(s)[:, None], y)
    return float(model.coef_[0, 0])


def _sk_reliability(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10)
    return np.concatenate([prob_true, prob_pred])


def _sk_roc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return np.concatenate([fpr, tpr])


#: Metric name -> the scikit-learn computation it must equal on pooled data.
POOLED_EQUALS_SKLEARN: dict[str, tuple[Metric, float]] = {
    "roc_auc": (skm.roc_auc_score, 1e-12),
    "delong_auc": (skm.roc_auc_score, 1e-12),
    "roc_curve": (_sk_roc, 1e-12),
    "sensitivity": (lambda y, s: skm.recall_score(y, s >= THRESHOLD), 1e-12),
    "specificity": (lambda y, s: skm.recall_score(y, s >= THRESHOLD, pos_label=0), 1e-12),
    "ppv": (lambda y, s: skm.precision_score(y, s >= THRESHOLD), 1e-12),
    "npv": (lambda y, s: skm.precision_score(y, s >= THRESHOLD, pos_label=0), 1e-12),
    "brier": (skm.brier_score_loss, 1e-12),
    "reliability": (_sk_reliability, 1e-12),
    "calibration_slope": (_sk_slope, 1e-6),
}

#: Undefined when every case is negative (NaN and an UndefinedMetricWarning, never 0).
UNDEFINED_ALL_NEGATIVE = [
    "roc_auc",
    "delong_auc",
    "delong_variance",
    "delong_ci",
    "bootstrap_ci",
    "roc_curve",
    "sensitivity",
    "sensitivity_wilson",
    "calibration_slope",
    "calibration_intercept",
]


def _cases(seed: int = 0, n: int = 400, *, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.3 * y - 0.6)))
    return y, (np.round(s, 2) if ties else s)


def _same(a: Any, b: Any, tol: float) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", INVARIANT_TO_SAMPLE_ORDER)
@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_to_sample_order(name: str, seed: int) -> None:
    # Prepare
    y, s = _cases(seed)
    perm = np.random.default_rng(seed + 10).permutation(y.size)

    # Execute
    before, after = METRICS[name](y, s), METRICS[name](y[perm], s[perm])

    # Assert
    _same(before, after, 1e-12)


@pytest.mark.parametrize("name", sorted(POOLED_EQUALS_SKLEARN))
@pytest.mark.parametrize("ties", [True, False], ids=["ties", "no-ties"])
def test_pooled_equals_sklearn(name: str, ties: bool) -> None:
    # Prepare
    y, s = _cases(2, ties=ties)
    reference, tol = POOLED_EQUALS_SKLEARN[name]

    # Execute
    ours, theirs = METRICS[name](y, s), reference(y, s)

    # Assert
    _same(ours, theirs, tol)


@pytest.mark.parametrize("name", UNDEFINED_ALL_NEGATIVE)
def test_single_class_is_nan_with_a_warning(name: str) -> None:
    # Prepare
    _, s = _cases(3, n=30)
    y = np.zeros_like(s, dtype=np.int64)

    # Execute
    with pytest.warns(UndefinedMetricWarning):
        value = METRICS[name](y, s)

    # Assert
    assert np.all(np.isnan(np.asarray(value, dtype=float)))


@pytest.mark.parametrize("name", sorted(set(METRICS) - set(UNDEFINED_ALL_NEGATIVE)))
def test_defined_for_a_single_class_without_warning(name: str) -> None:
    # Prepare: these metrics stay defined (calibration only, or a denominator that is not empty)
    _, s = _cases(3, n=30)
    y = np.zeros_like(s, dtype=np.int64)
    if name in ("ppv", "npv"):
        s = np.linspace(0.0, 1.0, y.size)  # both called classes present, so both denominators exist

    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        value = METRICS[name](y, s)

    # Assert
    assert np.all(np.isfinite(np.asarray(value, dtype=float)))


@pytest.mark.parametrize("name", sorted(METRICS))
def test_empty_sample_raises(name: str) -> None:
    # Execute / Assert
    with pytest.raises(EmptySampleError):
        METRICS[name](np.array([], dtype=np.int64), np.array([], dtype=float))


def _sites(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, ss, names = [], [], []
    for name, n, shift in [("bench", 160, 1.8), ("alpha", 120, 1.5), ("beta", 120, 0.7)]:
        y = (rng.random(n) < 0.4).astype(np.int64)
        ys.append(y)
        ss.append(np.round(1.0 / (1.0 + np.exp(-(rng.normal(size=n) + shift * y - 0.8))), 3))
        names += [name] * n
    return np.concatenate(ys), np.concatenate(ss), np.array(names)


def _site_figures(report: Any) -> dict[str, tuple[float, ...]]:
    """Every number of every site summary, keyed by site name."""
    out = {}
    for s in (report.benchmark, *report.sites):
        out[s.site] = (
            s.n_labelled,
            s.auc.estimate, s.auc.lower, s.auc.upper,
            s.auc_bootstrap.lower, s.auc_bootstrap.upper,
            *(() if s.gap is None else (s.gap.estimate, s.gap.upper, s.gap_bootstrap.lower, s.gap_bootstrap.upper,
                                        s.p_value)),
            s.operating_point.sensitivity.estimate, s.operating_point.specificity.estimate,
            s.calibration.ece, s.calibration.slope, s.calibration.intercept, s.calibration.brier,
        )  # fmt: skip
    return out


def test_site_report_invariant_to_site_relabeling() -> None:
    # Prepare
    y, s, sites = _sites(4)
    rename = {"bench": "zz-reference", "alpha": "omega", "beta": "aardvark"}
    relabelled = np.array([rename[x] for x in sites])

    # Execute
    before = pilot_drift_report(y, s, sites, benchmark="bench", threshold=THRESHOLD, options=None)
    after = pilot_drift_report(y, s, relabelled, benchmark="zz-reference", threshold=THRESHOLD, options=None)

    # Assert
    figures, renamed = _site_figures(before), _site_figures(after)
    assert {rename[k]: v for k, v in figures.items()} == renamed


def test_site_report_invariant_to_case_order() -> None:
    # Prepare
    y, s, sites = _sites(5)
    perm = np.random.default_rng(0).permutation(y.size)

    # Execute
    before = pilot_drift_report(y, s, sites, benchmark="bench", threshold=THRESHOLD)
    after = pilot_drift_report(y[perm], s[perm], sites[perm], benchmark="bench", threshold=THRESHOLD)

    # Assert
    figures, reordered = _site_figures(before), _site_figures(after)
    assert figures.keys() == reordered.keys()
    for site, values in figures.items():
        np.testing.assert_allclose(values, reordered[site], rtol=1e-12)


def test_stratified_bootstrap_invariant_to_stratum_relabeling() -> None:
    # Prepare
    y, s, sites = _sites(6)
    relabelled = np.array([{"bench": "c", "alpha": "b", "beta": "a"}[x] for x in sites])

    # Execute
    before = bootstrap_auc(y, s, strata=sites, n_resamples=200, random_state=9)
    after = bootstrap_auc(y, s, strata=relabelled, n_resamples=200, random_state=9)

    # Assert
    np.testing.assert_array_equal(before.replicates, after.replicates)
