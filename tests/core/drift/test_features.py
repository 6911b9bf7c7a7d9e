"""Per-study features and distances: image statistics, PSI, KS, AUC, embedding distance."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage, stats
from sklearn.metrics import roc_auc_score

from core.drift.features import EmbeddingReference, ScoreReference, auc, image_statistics, ks_statistic, psi


def test_noise_estimate_follows_the_noise_not_the_anatomy() -> None:
    # Prepare: a smooth "anatomy" plus white noise of known sigma
    rng = np.random.default_rng(0)
    anatomy = ndimage.gaussian_filter(rng.random((224, 224)), 8) * 4
    noisy = anatomy + rng.normal(0.0, 0.02, anatomy.shape)
    smoothed = anatomy + ndimage.gaussian_filter(rng.normal(0.0, 0.02, anatomy.shape), 1.5)

    # Execute
    stats = image_statistics(noisy[None])
    denoised = image_statistics(smoothed)

    # Assert
    assert stats.noise == pytest.approx(0.02, rel=0.1)
    assert denoised.noise < 0.3 * stats.noise
    assert stats.intensity_mean == pytest.approx(noisy.mean())
    assert stats.intensity_spread == pytest.approx(noisy.std())


def test_image_statistics_refuse_a_non_image() -> None:
    with pytest.raises(ValueError, match="2-D image"):
        image_statistics(np.zeros(10))


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    ref = rng.beta(2, 5, 5000)

    # Execute
    same = psi(ref, rng.beta(2, 5, 5000))
    shifted = psi(ref, rng.beta(5, 2, 500))

    # Assert
    assert same < 0.02 and shifted > 0.25


def test_psi_and_ks_are_nan_with_a_warning_when_undefined() -> None:
    with pytest.warns(UserWarning, match="PSI undefined"):
        assert math.isnan(psi(np.array([np.nan]), np.array([0.1])))
    with pytest.warns(UserWarning, match="KS undefined"):
        assert math.isnan(ks_statistic(np.array([0.1]), np.array([])))


def test_ks_matches_the_definition() -> None:
    # Prepare
    a, b = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.25, 0.35])

    # Execute / Assert: the largest gap between the two empirical CDFs is 0.5 (at 0.3)
    assert ks_statistic(a, b) == pytest.approx(0.5)


def test_auc_equals_sklearn_with_ties() -> None:
    # Prepare
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # coarse scores: many ties

    # Execute / Assert
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_of_one_class_is_nan_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="AUC undefined"):
        assert math.isnan(auc(np.ones(5), np.arange(5.0)))


def test_embedding_distance_is_about_one_in_distribution_and_grows_outside() -> None:
    # Prepare: 16 live dimensions and one dead (always 0) channel
    rng = np.random.default_rng(3)
    ref = np.c_[rng.normal(2.0, 0.5, (500, 16)), np.zeros(500)]
    inside = np.c_[rng.normal(2.0, 0.5, (200, 16)), np.zeros(200)]
    outside = np.c_[rng.normal(3.0, 0.5, (200, 16)), np.zeros(200)]

    # Execute
    reference = EmbeddingReference.fit(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d_in, d_out = reference.distance(inside), reference.distance(outside)

    # Assert
    assert np.mean(d_in) == pytest.approx(1.0, rel=0.1)
    assert np.mean(d_out) > 2.0


def test_embedding_reference_needs_two_rows() -> None:
    with pytest.raises(ValueError, match="n >= 2"):
        EmbeddingReference.fit(np.zeros((1, 4)))


@pytest.mark.parametrize("seed", range(20))
def test_ks_and_psi_against_a_prepared_reference_equal_scipy_and_the_one_shot_form(seed: int) -> None:
    # Prepare: scores with ties (rounded) and shifts, reference and window of many sizes, NaNs mixed in
    rng = np.random.default_rng(seed)
    ref = np.round(rng.beta(2, 5, int(rng.integers(1, 400))), int(rng.integers(1, 4)))
    sample = np.round(rng.beta(2, 5, int(rng.integers(1, 60))) + rng.normal(0, 0.1), 2)
    sample[rng.random(sample.size) < 0.1] = np.nan
    finite = sample[np.isfinite(sample)]

    # Execute
    prepared = ScoreReference.fit(np.concatenate([ref, [np.nan]]))

    # Assert: scipy's two-sided statistic exactly; PSI as the former one-shot computation
    if finite.size:
        assert prepared.ks(sample) == pytest.approx(stats.ks_2samp(ref, finite).statistic, abs=1e-12)
        edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, 11)[1:-1]))

        def shares(x: np.ndarray) -> np.ndarray:
            counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
            return np.maximum(counts / x.size, 1e-4)

        r, s = shares(ref), shares(finite)
        assert prepared.psi(sample) == pytest.approx(float(np.sum((s - r) * np.log(s / r))), abs=1e-12)
    assert prepared.ks(sample) == ks_statistic(ref, sample) or math.isnan(ks_statistic(ref, sample))
