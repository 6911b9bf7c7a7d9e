"""Wilson intervals against published values, and the operating point built on them."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics import operating_point, wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "lower", "upper"),
    [
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Statistics in Medicine 17:857, example (a)
        (15, 148, 0.0624, 0.1605),  # example (b)
        (0, 20, 0.0, 0.1611),  # example (c)
        (1, 29, 0.0061, 0.1718),  # example (d)
    ],
)
def test_matches_newcombe(successes: int, trials: int, lower: float, upper: float) -> None:
    # Execute
    result = wilson_interval(successes, trials)

    # Assert
    assert result.lower == pytest.approx(lower, abs=5e-5)
    assert result.upper == pytest.approx(upper, abs=5e-5)
    assert result.estimate == successes / trials


def test_no_trials_is_nan_with_a_warning() -> None:
    # Execute
    with pytest.warns(UndefinedMetricWarning, match="sensitivity"):
        result = wilson_interval(0, 0, what="sensitivity")

    # Assert
    assert np.isnan(result.estimate) and np.isnan(result.upper)


@pytest.mark.parametrize(("successes", "trials"), [(-1, 3), (4, 3), (1, -1)])
def test_impossible_counts_are_refused(successes: int, trials: int) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=str(successes)):
        wilson_interval(successes, trials)


def test_operating_point_calls_the_threshold_positive() -> None:
    # Prepare: a score exactly at the threshold is called positive, as PredictionRecord.label is
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.5, 0.9, 0.2, 0.5, 0.1, 0.3, 0.7]

    # Execute
    r = operating_point(y, s, threshold=0.5)

    # Assert
    assert (r.tp, r.fn, r.fp, r.tn) == (2, 1, 2, 2)
    assert r.sensitivity.estimate == pytest.approx(2 / 3)
    assert r.specificity.estimate == pytest.approx(2 / 4)
    assert r.ppv.estimate == pytest.approx(2 / 4)
    assert r.npv.estimate == pytest.approx(2 / 3)
    assert r.to_dict()["sensitivity"]["method"] == "wilson"  # type: ignore[index]
