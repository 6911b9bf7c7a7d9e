"""Monthly AUC: estimates against scikit-learn, intervals against DeLong's definition, short months named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as sk_auc

from core.errors import BadInputError
from core.metrics.auc_trend import month_span, monthly_auc


def _naive_delong_interval(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong's interval from its O(m n) definition (independent of the midrank algorithm)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    var = psi.mean(axis=1).var(ddof=1) / pos.size + psi.mean(axis=0).var(ddof=1) / neg.size
    half = 1.959963984540054 * math.sqrt(var)
    return max(0.0, auc - half), min(1.0, auc + half)


def _cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    months = ["2025-11"] * 120 + ["2026-01"] * 90 + ["2026-02"] * 6
    y = (rng.random(len(months)) < 0.4).astype(np.int64)
    y[-6:] = [1, 1, 1, 0, 0, 0]  # February: three of each, too few
    s = np.round(rng.normal(size=y.size) + 1.1 * y, 1)  # ties
    return y, s, months


def test_every_month_of_the_span_in_order_with_gaps_named() -> None:
    # Execute
    got = monthly_auc(*_cohort())

    # Assert: December has no case and February too few of a class, so neither has a number
    assert [m.month for m in got] == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert [m.auc is None for m in got] == [False, True, False, True]
    assert got[1].reason == "not enough data: 0 positive, 0 negative (needs 5 of each)"
    assert (got[3].n_positive, got[3].n_negative) == (3, 3) and got[3].reason.startswith("not enough data")


def test_estimates_match_sklearn_and_intervals_match_delongs_definition() -> None:
    # Prepare
    y, s, months = _cohort(1)
    labels = np.array(months)

    # Execute
    got = {m.month: m for m in monthly_auc(y, s, months)}

    # Assert
    for month in ("2025-11", "2026-01"):
        here = labels == month
        auc = got[month].auc
        assert auc is not None and auc.method == "delong"
        assert auc.estimate == pytest.approx(sk_auc(y[here], s[here]), abs=1e-12)
        assert (auc.lower, auc.upper) == pytest.approx(_naive_delong_interval(y[here], s[here]), abs=1e-12)
        assert (got[month].n_positive, got[month].n_negative) == (int(y[here].sum()), int((1 - y[here]).sum()))


def test_the_threshold_of_enough_data_is_the_callers() -> None:
    # Execute
    got = monthly_auc(*_cohort(), min_per_class=3)

    # Assert: February's three of each are now enough
    assert got[-1].auc is not None


def test_no_cases_no_months() -> None:
    assert monthly_auc([], [], []) == ()


@pytest.mark.parametrize(
    ("months", "match"),
    [(["2025-13", "2025-01"], "'2025-13'"), (["2025/01", "2025-01"], "'2025/01'"), (["2025-01"], "1 entries for 2")],
)
def test_bad_months_are_refused_naming_the_value(months: list[str], match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        monthly_auc([0, 1], [0.1, 0.9], months)


def test_month_span_crosses_the_year() -> None:
    assert month_span("2025-12", "2026-01") == ("2025-12", "2026-01")
