"""Sample-size planning: the variance approximations and the smallest sufficient number of cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from core.errors import BadInputError
from core.metrics import required_sample_size, roc_auc_score
from core.metrics.sample_size import hanley_mcneil_variance, obuchowski_variance


@pytest.mark.parametrize(("auc", "n_pos", "n_neg"), [(0.9, 40, 60), (0.75, 30, 90)])
def test_hanley_mcneil_is_the_variance_under_exponential_scores(auc: float, n_pos: int, n_neg: int) -> None:
    # Prepare: their approximation is exact when scores are exponential (positives with rate 1/auc - 1)
    rng = np.random.default_rng(0)
    aucs = [
        roc_auc_score(
            np.r_[np.ones(n_pos), np.zeros(n_neg)],
            np.r_[rng.exponential(1.0 / (1.0 / auc - 1.0), n_pos), rng.exponential(1.0, n_neg)],
        )
        for _ in range(4000)
    ]

    # Execute
    expected = hanley_mcneil_variance(auc, n_pos, n_neg)

    # Assert: 4000 replicates estimate a variance to within about 5 %
    assert np.var(aucs, ddof=1) == pytest.approx(expected, rel=0.1)


def test_obuchowski_with_equal_classes_is_the_closed_form() -> None:
    # Prepare
    a = math.sqrt(2.0) * float(norm.ppf(0.85))

    # Execute / Assert
    expected = 0.0099 * math.exp(-a * a / 2.0) * (6.0 * a * a + 16.0) / 40
    assert obuchowski_variance(0.85, 40, 40) == pytest.approx(expected)


@pytest.mark.parametrize("method", ["hanley-mcneil", "obuchowski"])
def test_result_is_the_smallest_sufficient_size(method: str) -> None:
    # Prepare
    variance = hanley_mcneil_variance if method == "hanley-mcneil" else obuchowski_variance

    def margin(n: int) -> float:
        v0, v1 = variance(0.9, 0.2 * n, 0.8 * n), variance(0.87, 0.2 * n, 0.8 * n)
        return 0.03 - (norm.ppf(0.975) * math.sqrt(v0) + norm.ppf(0.8) * math.sqrt(v1))

    # Execute
    result = required_sample_size(auc_reference=0.9, gap=0.03, prevalence=0.2, method=method)

    # Assert
    assert result.reachable and result.n_total is not None
    assert margin(result.n_total) >= 0 > margin(result.n_total - 1)
    assert result.n_positive == math.ceil(0.2 * result.n_total)


def test_rarer_findings_and_smaller_gaps_need_more_cases() -> None:
    # Execute
    base = required_sample_size(auc_reference=0.9, gap=0.05, prevalence=0.3).n_total
    rarer = required_sample_size(auc_reference=0.9, gap=0.05, prevalence=0.1).n_total
    finer = required_sample_size(auc_reference=0.9, gap=0.03, prevalence=0.3).n_total

    # Assert
    assert base is not None and rarer is not None and finer is not None
    assert rarer > base and finer > base


def test_a_benchmark_too_uncertain_makes_the_target_unreachable() -> None:
    # Execute
    result = required_sample_size(auc_reference=0.9, gap=0.03, prevalence=0.3, reference_variance=0.02**2)

    # Assert
    assert not result.reachable and result.n_total is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"auc_reference": 0.4, "gap": 0.03, "prevalence": 0.2}, "auc_reference"),
        ({"auc_reference": 0.9, "gap": 0.5, "prevalence": 0.2}, "gap"),
        ({"auc_reference": 0.9, "gap": 0.03, "prevalence": 1.0}, "prevalence"),
    ],
)
def test_parameters_out_of_range_are_named(kwargs: dict[str, float], name: str) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=name):
        required_sample_size(**kwargs)
