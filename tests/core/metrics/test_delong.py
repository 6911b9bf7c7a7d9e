"""DeLong's variance and tests: the fast midrank algorithm against the O(m n) definition."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as sk_auc

from core.errors import UndefinedMetricWarning
from core.metrics import delong_auc, delong_test_paired, delong_test_unpaired


def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def _naive_components(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = _psi(s[y == 1], s[y == 0])
    return k.mean(axis=1), k.mean(axis=0)


def _cases(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    a = np.round(rng.normal(size=n) + 1.2 * y, 1)  # coarse: many ties
    b = np.round(a + rng.normal(scale=0.8, size=n), 1)
    return y, a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variance_equals_the_definition_with_ties(seed: int) -> None:
    # Prepare
    y, s, _ = _cases(seed)
    v10, v01 = _naive_components(y, s)
    expected = v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size

    # Execute
    result = delong_auc(y, s)

    # Assert
    assert result.auc == pytest.approx(sk_auc(y, s), abs=1e-12)
    assert result.variance == pytest.approx(expected, rel=1e-10)
    assert result.ci.lower < result.auc < result.ci.upper


def test_paired_test_equals_the_definition() -> None:
    # Prepare
    y, a, b = _cases(3)
    a10, a01 = _naive_components(y, a)
    b10, b01 = _naive_components(y, b)
    var = (
        np.var(a10 - b10, ddof=1) / a10.size + np.var(a01 - b01, ddof=1) / a01.size
    )  # Var(X - Y) = Var X + Var Y - 2 Cov, per structural component

    # Execute
    result = delong_test_paired(y, a, b)

    # Assert
    assert result.difference.estimate == pytest.approx(sk_auc(y, a) - sk_auc(y, b), abs=1e-12)
    assert result.se**2 == pytest.approx(var, rel=1e-10)
    assert result.paired


def test_paired_test_of_identical_scores_finds_no_difference() -> None:
    # Prepare
    y, a, _ = _cases(4)

    # Execute
    result = delong_test_paired(y, a, a)

    # Assert
    assert result.difference.estimate == 0.0
    assert result.p_value == 1.0


def test_unpaired_variance_is_the_sum_and_the_p_value_two_sided() -> None:
    # Prepare
    y1, s1, _ = _cases(5)
    y2, _, s2 = _cases(6)
    a, b = delong_auc(y1, s1), delong_auc(y2, s2)

    # Execute
    result = delong_test_unpaired(a, b)

    # Assert
    assert result.se**2 == pytest.approx(a.variance + b.variance, rel=1e-12)
    assert result.difference.estimate == pytest.approx(a.auc - b.auc)
    assert 0.0 < result.p_value < 1.0
    assert not result.paired


def test_unpaired_null_difference_moves_the_test() -> None:
    # Prepare
    y1, s1, _ = _cases(7)
    y2, _, s2 = _cases(8)
    a, b = delong_auc(y1, s1), delong_auc(y2, s2)

    # Execute
    at_zero = delong_test_unpaired(a, b)
    at_observed = delong_test_unpaired(a, b, null_difference=a.auc - b.auc)

    # Assert
    assert at_observed.p_value == pytest.approx(1.0)
    assert at_zero.p_value < at_observed.p_value


def test_single_positive_has_an_auc_but_no_variance() -> None:
    # Prepare
    y = np.array([1, 0, 0, 0])
    s = np.array([0.9, 0.1, 0.2, 0.95])

    # Execute
    result = delong_auc(y, s)

    # Assert
    assert result.auc == pytest.approx(2 / 3)
    assert np.isnan(result.variance) and np.isnan(result.ci.lower)


def test_paired_test_with_one_class_is_nan_with_a_warning() -> None:
    # Execute
    with pytest.warns(UndefinedMetricWarning):
        result = delong_test_paired([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])

    # Assert
    assert np.isnan(result.p_value) and np.isnan(result.difference.estimate)
