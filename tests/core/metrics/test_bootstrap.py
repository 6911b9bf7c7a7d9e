"""The fast bootstrap: every replicate equals scikit-learn on the same resample, and the design holds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as sk_auc

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics import AucBootstrap, bootstrap_auc


def _cases(seed: int = 0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    return y, np.round(rng.normal(size=n) + y, 1)  # rounded: ties everywhere


DESIGNS = {
    "plain": {},
    "unstratified": {"stratify_by_class": False},
    "strata": {"strata": np.repeat(["a", "b", "c", "d", "e"], 100)},
    "patients": {"strata": np.repeat(["a", "b"], 250), "groups": np.arange(500) // 3},
}


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_replicate_equals_sklearn_on_the_same_resample(design: str) -> None:
    # Prepare
    y, s = _cases(1)
    boot = AucBootstrap(y, s, random_state=5, **DESIGNS[design])

    # Execute
    fast = boot.replicates(30)
    slow = [sk_auc(np.repeat(y, w), np.repeat(s, w)) for w in boot.resamples(30)]

    # Assert
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_same_seed_same_interval_and_another_seed_another() -> None:
    # Prepare
    y, s = _cases(2)

    # Execute
    first = bootstrap_auc(y, s, n_resamples=300, random_state=11)
    again = bootstrap_auc(y, s, n_resamples=300, random_state=11)
    other = bootstrap_auc(y, s, n_resamples=300, random_state=12)

    # Assert
    assert (first.ci.lower, first.ci.upper) == (again.ci.lower, again.ci.upper)
    np.testing.assert_array_equal(first.replicates, again.replicates)
    assert not np.array_equal(first.replicates, other.replicates)


def test_class_stratification_keeps_the_class_counts() -> None:
    # Prepare
    y, s = _cases(3)
    boot = AucBootstrap(y, s, random_state=0)

    # Execute
    weights = list(boot.resamples(20))

    # Assert
    assert all(int(w[y == 1].sum()) == int(y.sum()) for w in weights)
    assert all(int(w.sum()) == y.size for w in weights)


def test_patients_are_drawn_whole() -> None:
    # Prepare
    y, s = _cases(4, n=300)
    patients = np.arange(300) // 3
    boot = AucBootstrap(y, s, groups=patients, random_state=0)

    # Execute
    weights = np.array(list(boot.resamples(10)))

    # Assert: the three cases of a patient always share one multiplicity
    per_patient = weights.reshape(10, 100, 3)
    assert np.all(per_patient == per_patient[:, :, :1])


def test_strata_keep_their_sizes() -> None:
    # Prepare
    y, s = _cases(5)
    strata = np.repeat(["x", "y"], [100, 400])
    boot = AucBootstrap(y, s, strata=strata, random_state=0)

    # Execute
    weights = list(boot.resamples(10))

    # Assert
    assert all(int(w[strata == "x"].sum()) == 100 for w in weights)


def test_interval_brackets_the_estimate_and_matches_the_percentiles() -> None:
    # Prepare
    y, s = _cases(6)

    # Execute
    result = bootstrap_auc(y, s, n_resamples=400, random_state=0)

    # Assert
    assert result.ci.lower < result.auc < result.ci.upper
    assert result.ci.lower == pytest.approx(np.quantile(result.replicates, 0.025))
    assert result.n_undefined == 0


def test_unstratified_small_sample_counts_undefined_replicates() -> None:
    # Prepare: one positive in 12, so many unstratified replicates lose it
    y = np.array([1] + [0] * 11)
    s = np.linspace(0, 1, 12)

    # Execute
    with pytest.warns(UndefinedMetricWarning):
        result = bootstrap_auc(y, s, n_resamples=200, stratify_by_class=False, random_state=0)

    # Assert
    assert result.n_undefined == int(np.isnan(result.replicates).sum()) > 0


def test_single_class_is_nan_with_a_warning() -> None:
    # Execute
    with pytest.warns(UndefinedMetricWarning):
        result = bootstrap_auc([0, 0, 0], [0.1, 0.2, 0.3], n_resamples=10)

    # Assert
    assert np.isnan(result.auc) and np.isnan(result.ci.lower)


def test_bad_sizes_are_refused() -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="n_resamples"):
        AucBootstrap([0, 1], [0.1, 0.9]).replicates(0)
    with pytest.raises(BadInputError, match="strata"):
        AucBootstrap([0, 1], [0.1, 0.9], strata=["a"])
