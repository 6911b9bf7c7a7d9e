"""Bootstrap confidence intervals for the AUC: sort once, then weighted ranks per replicate.

The scores are sorted and cut into tie groups once. Every case gets a key ``2 * tie_group +
label``; a replicate draws case indices, counts keys with one ``bincount`` and reads the
Mann-Whitney statistic off the per-group counts of positives and negatives, in exact integer
arithmetic. A replicate therefore costs a few passes over ``n`` integers, not a sort.

Resampling is stratified: each stratum (a site, when several are pooled) keeps its size, and by
default so does each class within it (pROC's ``stratified=TRUE``), so no replicate loses a
class. When patients repeat, pass ``groups``: whole patients are drawn within each stratum.

Reproducible and invariant by construction: cases are put in a canonical order (stratum, score,
label) before drawing, and each stratum draws from its own random stream keyed by the seed and
the stratum's content. Reordering cases or renaming strata therefore gives the same interval.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError, UndefinedMetricWarning
from core.metrics.auc import auc_from_arrays
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, check_binary, check_confidence_level
from core.metrics.ranks import tie_groups
from core.types import FloatArray, IntArray

__all__ = ["AucBootstrap", "BootstrapResult", "bootstrap_auc", "percentile_interval"]

#: Warn when more than this share of replicates has a single class (unstratified designs only).
UNDEFINED_SHARE_WARNING = 0.05


@dataclass(frozen=True, slots=True, eq=False)
class BootstrapResult:
    """A bootstrap interval of the AUC.

    Attributes
    ----------
    auc : float
        AUC of the original sample.
    ci : Interval
        Percentile interval of the defined replicates.
    replicates : ndarray of shape (n_resamples,)
        AUC of every replicate, ``nan`` where a replicate had a single class.
    n_undefined : int
        Replicates with a single class (possible only without class stratification).
    """

    auc: float
    ci: Interval
    replicates: FloatArray = field(repr=False)
    n_undefined: int


@dataclass(frozen=True, slots=True, eq=False)
class _Block:
    """One stratum (or stratum x class) of the canonical order: cases ``start:stop``."""

    start: int
    stop: int
    seed: np.random.SeedSequence
    cluster: IntArray | None  # local cluster index of each case, None when cases are drawn one by one
    n_clusters: int


class AucBootstrap:
    """A prepared bootstrap design: the one sort, the keys and the random streams.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        0/1 labels.
    y_score : array-like of shape (n_samples,)
    strata : array-like of shape (n_samples,), optional
        Stratum of each case (e.g. site); each keeps its size in every replicate.
    groups : array-like of shape (n_samples,), optional
        Cluster of each case (e.g. patient); whole clusters are drawn within each stratum, and
        class stratification is not applied (a patient may have both classes).
    stratify_by_class : bool, default True
        Keep the number of positives and negatives of each stratum fixed.
    random_state : int, optional
        Seed; the same seed gives the same replicates. None draws fresh entropy.

    Examples
    --------
    >>> design = AucBootstrap([0, 1, 0, 1, 1, 0], [0.2, 0.9, 0.4, 0.3, 0.8, 0.1], random_state=0)
    >>> design.auc
    0.8888888888888888
    >>> bool(np.all(design.replicates(50) == design.replicates(50)))
    True
    """

    def __init__(
        self,
        y_true: npt.ArrayLike,
        y_score: npt.ArrayLike,
        *,
        strata: npt.ArrayLike | None = None,
        groups: npt.ArrayLike | None = None,
        stratify_by_class: bool = True,
        random_state: int | None = None,
    ) -> None:
        y, s = check_binary(y_true, y_score)
        self.auc = auc_from_arrays(y, s)
        stratum_codes = _codes(strata, y.size, "strata")
        group_codes = None if groups is None else _codes(groups, y.size, "groups")
        class_split = stratify_by_class and group_codes is None
        block_codes = stratum_codes * 2 + y if class_split else stratum_codes
        # Canonical order: block, then score, then label (then cluster) -- independent of input order.
        keys = [y, s, block_codes] if group_codes is None else [group_codes, y, s, block_codes]
        self._perm = np.lexsort(keys)
        ys, ss = y[self._perm], s[self._perm]
        ties = tie_groups(ss)
        self._key = 2 * ties.group + ys
        self._n_keys = 2 * ties.n_groups
        self._has_ties = ties.n_groups < y.size
        self._blocks = _blocks(block_codes[self._perm], ys, ss, group_codes, self._perm, random_state)
        self._two_class = _TwoClass.of(self._blocks, ss) if class_split and int(stratum_codes.max()) == 0 else None

    @property
    def n_samples(self) -> int:
        """Cases in the original sample."""
        return int(self._key.size)

    def replicates(self, n_resamples: int) -> FloatArray:
        """AUC of ``n_resamples`` bootstrap replicates, ``nan`` where one has a single class.

        Returns
        -------
        ndarray of shape (n_resamples,)
        """
        _check_resamples(n_resamples)
        rngs = [np.random.default_rng(b.seed) for b in self._blocks]
        out = np.empty(n_resamples, dtype=np.float64)
        if self._two_class is not None:
            for r in range(n_resamples):
                out[r] = self._two_class.auc(rngs[0], rngs[1])
            return out
        for r in range(n_resamples):
            out[r] = self._auc_of_counts(self._key_counts(rngs))
        return out

    def resamples(self, n_resamples: int) -> Iterator[IntArray]:
        """Case multiplicities of the same replicates as :meth:`replicates`, in input order.

        Slow; for checking the fast path: ``np.repeat(np.arange(n), w)`` is the replicate's sample.

        Yields
        ------
        ndarray of shape (n_samples,), int64
        """
        _check_resamples(n_resamples)
        rngs = [np.random.default_rng(b.seed) for b in self._blocks]
        n = self.n_samples
        for _ in range(n_resamples):
            canonical = np.zeros(n, dtype=np.int64)
            for block, rng in zip(self._blocks, rngs, strict=True):
                canonical[block.start : block.stop] += _case_multiplicity(block, rng)
            weights = np.empty(n, dtype=np.int64)
            weights[self._perm] = canonical
            yield weights

    def run(self, n_resamples: int = 1000, *, confidence_level: float = DEFAULT_CONFIDENCE) -> BootstrapResult:
        """Draw ``n_resamples`` replicates and return the percentile interval."""
        reps = self.replicates(n_resamples)
        n_undefined = int(np.isnan(reps).sum())
        if n_undefined > UNDEFINED_SHARE_WARNING * n_resamples:
            warnings.warn(
                f"{n_undefined} of {n_resamples} bootstrap replicates had a single class; the interval uses the rest",
                UndefinedMetricWarning,
                stacklevel=2,
            )
        ci = percentile_interval(reps, estimate=self.auc, confidence_level=confidence_level)
        return BootstrapResult(auc=self.auc, ci=ci, replicates=reps, n_undefined=n_undefined)

    def _key_counts(self, rngs: Sequence[np.random.Generator]) -> IntArray:
        if all(block.cluster is None for block in self._blocks):
            # One bincount over all blocks' draws: the count array is 2 x n_groups long, so
            # counting per block and adding would cost more than the draws themselves.
            draws = [rng.integers(b.start, b.stop, b.stop - b.start) for b, rng in zip(self._blocks, rngs, strict=True)]
            drawn = self._key[draws[0] if len(draws) == 1 else np.concatenate(draws)]
            return np.bincount(drawn, minlength=self._n_keys)
        counts = np.zeros(self._n_keys, dtype=np.float64)
        for block, rng in zip(self._blocks, rngs, strict=True):
            weights = _case_multiplicity(block, rng)
            counts += np.bincount(self._key[block.start : block.stop], weights=weights, minlength=self._n_keys)
        return np.rint(counts).astype(np.int64)

    def _auc_of_counts(self, counts: IntArray) -> float:
        neg, pos = counts[0::2], counts[1::2]
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        # Twice the Mann-Whitney count in integers (exact), then one rounding in the division:
        # a positive beats the negatives of lower tie groups and ties half of its own group's.
        twice = 2 * int(np.dot(pos, np.cumsum(neg)))
        if self._has_ties:
            twice -= int(np.dot(pos, neg))
        return twice / (2.0 * n_pos * n_neg)


@dataclass(frozen=True, slots=True, eq=False)
class _TwoClass:
    """The common design (one stratum, classes drawn apart) without a count per tie group.

    Negatives occupy the first block of the canonical order, sorted by score, so a drawn negative's
    index is its rank. For every positive, ``lo`` and ``hi`` count the negatives scored strictly
    below it and at most equal to it; with ``C[k]`` the drawn negatives among the ``k`` lowest,
    ``C[lo] + C[hi]`` is twice what that positive contributes to the Mann-Whitney count.
    """

    n_neg: int
    n_pos: int
    lo: IntArray
    hi: IntArray
    ties: bool

    @classmethod
    def of(cls, blocks: Sequence[_Block], ss: FloatArray) -> _TwoClass | None:
        """The two-class shortcut for these blocks, or None when a class is missing."""
        if len(blocks) != 2:
            return None
        neg, pos = ss[blocks[0].start : blocks[0].stop], ss[blocks[1].start : blocks[1].stop]
        lo = np.searchsorted(neg, pos, side="left").astype(np.int64)
        hi = np.searchsorted(neg, pos, side="right").astype(np.int64)
        return cls(int(neg.size), int(pos.size), lo, hi, bool(np.any(lo != hi)))

    def auc(self, rng_neg: np.random.Generator, rng_pos: np.random.Generator) -> float:
        """One replicate; draws exactly as :func:`_case_multiplicity` does, negatives first."""
        drawn_neg = np.zeros(self.n_neg + 1, dtype=np.int64)
        np.cumsum(np.bincount(rng_neg.integers(0, self.n_neg, self.n_neg), minlength=self.n_neg), out=drawn_neg[1:])
        drawn_pos = rng_pos.integers(0, self.n_pos, self.n_pos)
        below = int(drawn_neg[self.lo[drawn_pos]].sum())
        twice = below + (int(drawn_neg[self.hi[drawn_pos]].sum()) if self.ties else below)
        return twice / (2.0 * self.n_pos * self.n_neg)


def bootstrap_auc(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence_level: float = DEFAULT_CONFIDENCE,
    strata: npt.ArrayLike | None = None,
    groups: npt.ArrayLike | None = None,
    stratify_by_class: bool = True,
    random_state: int | None = None,
) -> BootstrapResult:
    """Percentile bootstrap interval of the AUC (see :class:`AucBootstrap` for the design).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_score : array-like of shape (n_samples,)
    n_resamples : int, default 1000
    confidence_level : float, default 0.95
    strata, groups, stratify_by_class, random_state
        As in :class:`AucBootstrap`.

    Returns
    -------
    BootstrapResult
        All ``nan`` (with a warning) when the sample has a single class.

    Examples
    --------
    >>> r = bootstrap_auc([0, 1, 0, 1, 1, 0], [0.2, 0.9, 0.4, 0.3, 0.8, 0.1], n_resamples=200, random_state=0)
    >>> r.ci.lower <= r.auc <= r.ci.upper
    True
    """
    design = AucBootstrap(
        y_true, y_score, strata=strata, groups=groups, stratify_by_class=stratify_by_class, random_state=random_state
    )
    if math.isnan(design.auc):
        nan = float("nan")
        reps = np.full(n_resamples, nan)
        return BootstrapResult(
            nan, Interval(nan, nan, nan, confidence_level, "bootstrap-percentile"), reps, n_resamples
        )
    return design.run(n_resamples, confidence_level=confidence_level)


def percentile_interval(
    replicates: FloatArray, *, estimate: float, confidence_level: float = DEFAULT_CONFIDENCE
) -> Interval:
    """Percentile interval of the finite replicates (``nan`` bounds when there are none).

    Parameters
    ----------
    replicates : ndarray of shape (n_resamples,)
    estimate : float
        The point estimate reported with the interval.
    confidence_level : float, default 0.95
    """
    alpha = 1.0 - check_confidence_level(confidence_level)
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return Interval(estimate, float("nan"), float("nan"), confidence_level, "bootstrap-percentile")
    lower, upper = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(estimate, float(lower), float(upper), confidence_level, "bootstrap-percentile")


def _check_resamples(n_resamples: int) -> None:
    if n_resamples < 1:
        raise BadInputError(f"n_resamples must be at least 1, got {n_resamples}")


def _codes(labels: npt.ArrayLike | None, n: int, name: str) -> IntArray:
    """Integer codes of a label array (all zeros when None)."""
    if labels is None:
        return np.zeros(n, dtype=np.int64)
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise BadInputError(f"{name} must have shape ({n},), got {arr.shape}")
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(n)


def _case_multiplicity(block: _Block, rng: np.random.Generator) -> IntArray:
    """How often each case of ``block`` is drawn in one replicate (consumes the block's stream)."""
    size = block.stop - block.start
    if block.cluster is None:
        return np.bincount(rng.integers(0, size, size), minlength=size)
    drawn = np.bincount(rng.integers(0, block.n_clusters, block.n_clusters), minlength=block.n_clusters)
    return drawn[block.cluster]


def _blocks(
    codes: IntArray, ys: IntArray, ss: FloatArray, groups: IntArray | None, perm: IntArray, random_state: int | None
) -> list[_Block]:
    """Cut the canonical order into contiguous blocks, each with a content-keyed random stream."""
    edges = np.flatnonzero(np.diff(codes)) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, codes.size]
    seen: dict[bytes, int] = {}
    blocks = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        digest = hashlib.sha256(ss[start:stop].tobytes() + ys[start:stop].tobytes()).digest()
        repeat = seen.get(digest, 0)  # two strata with identical content still get distinct streams
        seen[digest] = repeat + 1
        words = tuple(int(w) for w in np.frombuffer(digest[:16], dtype=np.uint32)) + (repeat,)
        seed = np.random.SeedSequence(random_state, spawn_key=words)
        cluster, n_clusters = _local_clusters(None if groups is None else groups[perm[start:stop]])
        blocks.append(_Block(start, stop, seed, cluster, n_clusters))
    return blocks


def _local_clusters(groups: IntArray | None) -> tuple[IntArray | None, int]:
    """Renumber clusters 0.. by first appearance in canonical order (so labels do not matter)."""
    if groups is None:
        return None, 0
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)], int(first.size)
