"""Per-study features and distribution distances that drift streams are built from (pure numpy/scipy).

* :func:`image_statistics`: intensity mean and spread of the model input, and a robust noise
  estimate (the median absolute deviation of the discrete Laplacian, Immerkaer 1996 style).
* :func:`psi` and :func:`ks_statistic`: a window's score distribution against the benchmark's;
  :func:`auc` of a window's labelled studies.
* :class:`EmbeddingReference`: the benchmark's penultimate-layer embeddings summarized by a
  centroid and per-dimension spread; :meth:`EmbeddingReference.distance` is the root-mean-square
  z-score of an embedding against it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.stats import rankdata

from core.types import FloatArray

__all__ = [
    "PSI_FLOOR",
    "EmbeddingReference",
    "ImageStatistics",
    "ScoreReference",
    "auc",
    "image_statistics",
    "ks_statistic",
    "psi",
]

#: Bin share used in place of an empty bin, so PSI stays finite (the usual convention).
PSI_FLOOR: Final = 1e-4
# 1.4826 * MAD estimates a Gaussian sigma; the 4-neighbour Laplacian (weights 1, 1, 1, 1, -4)
# multiplies white-noise variance by 4 + 16 = 20, so its sigma is sqrt(20) noise sigmas.
_MAD_TO_SIGMA: Final = 1.4826
_LAPLACE_GAIN: Final = math.sqrt(20.0)


@dataclass(frozen=True, slots=True)
class ImageStatistics:
    """Summary statistics of one model input image (values in [0, 1] after preprocessing).

    Attributes
    ----------
    intensity_mean : float
        Mean pixel value.
    intensity_spread : float
        Standard deviation of pixel values.
    noise : float
        Robust estimate of the pixel noise standard deviation.
    """

    intensity_mean: float
    intensity_spread: float
    noise: float


def image_statistics(image: FloatArray) -> ImageStatistics:
    """Intensity mean, spread and a robust noise estimate of one image.

    Parameters
    ----------
    image : ndarray of shape (rows, columns) or (1, rows, columns)
        The preprocessed model input (rows, columns >= 3).

    Returns
    -------
    ImageStatistics

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> flat = 0.5 + rng.normal(0.0, 0.01, (128, 128))
    >>> round(image_statistics(flat).noise, 3)
    0.01
    """
    x = np.asarray(image, dtype=np.float64)
    x = x[0] if x.ndim == 3 else x
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError(f"image_statistics needs a 2-D image of at least 3 x 3, got shape {np.shape(image)}")
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
    mad = float(np.median(np.abs(lap - np.median(lap))))
    return ImageStatistics(
        intensity_mean=float(x.mean()),
        intensity_spread=float(x.std()),
        noise=_MAD_TO_SIGMA * mad / _LAPLACE_GAIN,
    )


def psi(reference: FloatArray, sample: FloatArray, *, bins: int = 10) -> float:
    """Population stability index of ``sample`` against ``reference``.

    ``sum((s_i - r_i) * ln(s_i / r_i))`` over ``bins`` quantile bins of the reference; empty
    bins count as :data:`PSI_FLOOR`. Rule of thumb: < 0.1 stable, > 0.25 shifted. For many
    samples against one reference, prepare it once (:class:`ScoreReference`).

    Parameters
    ----------
    reference : ndarray of shape (n_ref,)
        E.g. the benchmark site's scores.
    sample : ndarray of shape (n,)
        E.g. one window's scores at a deployment site.
    bins : int, default 10

    Returns
    -------
    float
        NaN (with a warning) when either side has no finite value.

    Examples
    --------
    >>> ref = np.linspace(0.0, 1.0, 1001)
    >>> round(psi(ref, ref), 6)
    0.0
    """
    return ScoreReference.fit(reference, bins=bins).psi(sample)


def ks_statistic(reference: FloatArray, sample: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov distance ``D`` between ``sample`` and ``reference``.

    Returns NaN (with a warning) when either side has no finite value. For many samples against
    one reference, prepare it once (:class:`ScoreReference`).

    Examples
    --------
    >>> ks_statistic(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8]))
    1.0
    """
    return ScoreReference.fit(reference).ks(sample)


@dataclass(frozen=True, slots=True)
class ScoreReference:
    """A reference distribution prepared once for many windows: its sorted values and PSI bins.

    A drift stream compares every window of a site's scores with the benchmark's. At a million
    studies the benchmark holds a third of them, and sorting it again for each of thousands of
    windows was most of ``vigil drift``'s time; prepared once, each window costs a search of its
    own few values in the sorted reference.

    Attributes
    ----------
    values : ndarray of shape (n_ref,)
        The reference's finite values, sorted.
    edges : ndarray of shape (n_edges,)
        PSI bin edges: the reference's inner quantiles, without repeats.
    proportions : ndarray of shape (n_edges + 1,)
        The reference's share in each bin, floored at :data:`PSI_FLOOR`.
    """

    values: FloatArray
    edges: FloatArray
    proportions: FloatArray

    @classmethod
    def fit(cls, reference: FloatArray, *, bins: int = 10) -> ScoreReference:
        """Prepare ``reference`` (non-finite values dropped; may be empty: every distance is then NaN)."""
        ref = np.asarray(reference, dtype=np.float64)
        ref = np.sort(ref[np.isfinite(ref)])
        if ref.size == 0:
            return cls(ref, np.zeros(0), np.ones(1))
        edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        shares = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
        return cls(ref, edges, np.maximum(shares, PSI_FLOOR))

    def psi(self, sample: FloatArray) -> float:
        """:func:`psi` of ``sample`` against this reference."""
        smp = self._finite(sample, "PSI")
        if smp is None:
            return math.nan
        s = np.bincount(np.searchsorted(self.edges, smp, side="right"), minlength=self.edges.size + 1) / smp.size
        s = np.maximum(s, PSI_FLOOR)
        return float(np.sum((s - self.proportions) * np.log(s / self.proportions)))

    def ks(self, sample: FloatArray) -> float:
        """:func:`ks_statistic` of ``sample`` against this reference: ``sup |F_ref - F_sample|``.

        Between two of the sample's values its ECDF is flat and the reference's can only rise,
        so the supremum is reached at a sample value: by the two ECDFs there, or by their limits
        from the left. Both are read by a search in each sorted side.
        """
        smp = self._finite(sample, "KS")
        if smp is None:
            return math.nan
        s = np.sort(smp)
        gaps = [
            np.searchsorted(self.values, s, side=side) / self.values.size - np.searchsorted(s, s, side=side) / s.size
            for side in ("right", "left")
        ]
        return float(max(np.max(np.abs(g)) for g in gaps))

    def _finite(self, sample: FloatArray, what: str) -> FloatArray | None:
        smp = np.asarray(sample, dtype=np.float64)
        smp = smp[np.isfinite(smp)]
        if self.values.size == 0 or smp.size == 0:
            warnings.warn(f"{what} undefined: {self.values.size} reference and {smp.size} sample values", stacklevel=3)
            return None
        return smp


def auc(labels: FloatArray, scores: FloatArray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic (midranks for ties).

    Parameters
    ----------
    labels : ndarray of shape (n,)
        1 for a positive, 0 for a negative.
    scores : ndarray of shape (n,)

    Returns
    -------
    float
        NaN (with a warning) when only one class is present.

    Examples
    --------
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"AUC undefined with {n_pos} positives and {n_neg} negatives", stacklevel=2)
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True, slots=True, eq=False)
class EmbeddingReference:
    """Centroid and per-dimension spread of the benchmark's embeddings.

    Attributes
    ----------
    centroid : ndarray of shape (d,)
    scale : ndarray of shape (d,)
        Standard deviation per dimension; dimensions with none (e.g. channels a ReLU keeps at 0)
        are left out of distances.
    n : int
        Embeddings summarized.
    """

    centroid: FloatArray
    scale: FloatArray
    n: int

    @classmethod
    def fit(cls, embeddings: FloatArray) -> EmbeddingReference:
        """Summarize ``embeddings`` of shape (n, d), n >= 2."""
        e = np.asarray(embeddings, dtype=np.float64)
        if e.ndim != 2 or e.shape[0] < 2:
            raise ValueError(f"an embedding reference needs an array of shape (n >= 2, d), got {e.shape}")
        return cls(centroid=e.mean(axis=0), scale=e.std(axis=0, ddof=1), n=int(e.shape[0]))

    def distance(self, embeddings: FloatArray) -> FloatArray:
        """Root-mean-square z-score of each embedding against the reference.

        Parameters
        ----------
        embeddings : ndarray of shape (n, d)

        Returns
        -------
        ndarray of shape (n,)
            About 1 for an embedding drawn like the reference's; larger when it is further out.
        """
        e = np.asarray(embeddings, dtype=np.float64)
        keep = self.scale > 0
        if not keep.any():
            return np.full(e.shape[0], math.nan)
        z = (e[:, keep] - self.centroid[keep]) / self.scale[keep]
        return np.asarray(np.sqrt(np.mean(z * z, axis=1)))
