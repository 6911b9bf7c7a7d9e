"""Benchmarks of the metrics engine (issue 5): bootstrap AUC and DeLong against the plain ways.

Every ratio is measured side by side in one run (BENCHMARKING.md) and paired with a guard:
each fast bootstrap replicate equals scikit-learn's ``roc_auc_score`` on the very same resample
(scores with ties) to 1e-12, the same seed gives the same interval, and DeLong's AUC equals
scikit-learn's.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from sklearn.metrics import roc_auc_score

from core.bench.harness import BenchResult, interleaved_medians
from core.metrics.bootstrap import AucBootstrap, bootstrap_auc
from core.metrics.delong import delong_auc
from core.types import FloatArray, IntArray

__all__ = ["run"]

N_LARGE: Final = 100_000
N_SMALL: Final = 10_000
REPLICATES: Final = 1000
#: Replicates of the naive loop per round (each costs a full scikit-learn call).
NAIVE_REPLICATES: Final = 20
#: Replicates checked against scikit-learn in the guard.
GUARD_REPLICATES: Final = 25


def _cases(n: int, seed: int = 0, *, decimals: int | None = 3) -> tuple[IntArray, FloatArray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * y - 0.8)))
    # Three decimals: model output with many ties, so the guard exercises midranks. None: all distinct,
    # the costliest case (one tie group per case).
    return y, (s if decimals is None else np.round(s, decimals))


def _naive_loop(y: IntArray, s: FloatArray, n_resamples: int) -> None:
    rng = np.random.default_rng(1)
    for _ in range(n_resamples):
        idx = rng.integers(0, y.size, y.size)
        roc_auc_score(y[idx], s[idx])


def _rng_floor(n: int, n_resamples: int) -> None:
    rng = np.random.default_rng(2)
    for _ in range(n_resamples):
        rng.integers(0, n, n)


def _guard(y: IntArray, s: FloatArray) -> tuple[bool, float]:
    """Each fast replicate equals scikit-learn on the same resample; the same seed gives the same interval."""
    design = AucBootstrap(y, s, random_state=7)
    fast = design.replicates(GUARD_REPLICATES)
    slow = np.array([roc_auc_score(np.repeat(y, w), np.repeat(s, w)) for w in design.resamples(GUARD_REPLICATES)])
    worst = float(np.max(np.abs(fast - slow)))
    first = bootstrap_auc(y, s, n_resamples=200, random_state=3)
    again = bootstrap_auc(y, s, n_resamples=200, random_state=3)
    same_ci = (first.ci.lower, first.ci.upper) == (again.ci.lower, again.ci.upper)
    return worst <= 1e-12 and same_ci, worst


def run(*, rounds: int = 5) -> list[BenchResult]:
    """Bootstrap and DeLong ratios at 100k predictions (B = 1000), with their guards.

    Returns
    -------
    list of BenchResult
        Per-replicate bootstrap / naive scikit-learn loop (target 0.15), / drawing n indices
        (target 5), time(100k) / time(10k) (target 12) -- with ties, and again with all scores
        distinct (the costliest case) -- and DeLong / one ``roc_auc_score`` (target 3).
    """
    y, s = _cases(N_LARGE)
    y_small, s_small = _cases(N_SMALL, seed=1)
    large, small = AucBootstrap(y, s, random_state=0), AucBootstrap(y_small, s_small, random_state=0)
    distinct = AucBootstrap(*_cases(N_LARGE, seed=2, decimals=None), random_state=0)
    distinct_small = AucBootstrap(*_cases(N_SMALL, seed=3, decimals=None), random_state=0)
    t = interleaved_medians(
        {
            "fast_100k": lambda: large.replicates(REPLICATES),
            "fast_10k": lambda: small.replicates(REPLICATES),
            "distinct_100k": lambda: distinct.replicates(REPLICATES),
            "distinct_10k": lambda: distinct_small.replicates(REPLICATES),
            "naive_100k": lambda: _naive_loop(y, s, NAIVE_REPLICATES),
            "rng_100k": lambda: _rng_floor(N_LARGE, REPLICATES),
            "delong_100k": lambda: delong_auc(y, s),
            "sklearn_auc_100k": lambda: roc_auc_score(y, s),
        },
        rounds=rounds,
    )
    ok, worst = _guard(y, s)
    per_fast = t["fast_100k"] / REPLICATES
    per_naive = t["naive_100k"] / NAIVE_REPLICATES
    per_rng = t["rng_100k"] / REPLICATES
    delong_ok = abs(delong_auc(y, s).auc - float(roc_auc_score(y, s))) <= 1e-12
    guard = f"{GUARD_REPLICATES} replicates == roc_auc_score on the same resample (ties) to 1e-12; same seed, same CI"
    common = {"n": N_LARGE, "replicates": REPLICATES, "worst_replicate_error": worst}
    return [
        BenchResult("bootstrap AUC per replicate / naive sklearn loop per replicate (100k)", per_fast / per_naive,
                    0.15, guard, ok, {**common, "fast_s_per_replicate": per_fast, "naive_s_per_replicate": per_naive}),
        BenchResult("bootstrap AUC per replicate / drawing n indices (100k)", per_fast / per_rng, 5.0, guard, ok,
                    {**common, "fast_s_per_replicate": per_fast, "rng_s_per_replicate": per_rng}),
        BenchResult("bootstrap AUC time(100k) / time(10k), B=1000", t["fast_100k"] / t["fast_10k"], 12.0, guard, ok,
                    {**common, "fast_100k_s": t["fast_100k"], "fast_10k_s": t["fast_10k"]}),
        BenchResult("bootstrap AUC per replicate / drawing n indices (100k, all scores distinct)",
                    t["distinct_100k"] / REPLICATES / per_rng, 5.0, guard, ok,
                    {**common, "distinct_s_per_replicate": t["distinct_100k"] / REPLICATES}),
        BenchResult("bootstrap AUC time(100k) / time(10k), B=1000, all scores distinct",
                    t["distinct_100k"] / t["distinct_10k"], 12.0, guard, ok,
                    {**common, "distinct_100k_s": t["distinct_100k"], "distinct_10k_s": t["distinct_10k"]}),
        BenchResult("DeLong AUC + CI / one roc_auc_score (100k)", t["delong_100k"] / t["sklearn_auc_100k"], 3.0,
                    "DeLong AUC == roc_auc_score to 1e-12", delong_ok,
                    {"n": N_LARGE, "delong_s": t["delong_100k"], "roc_auc_score_s": t["sklearn_auc_100k"]}),
    ]  # fmt: skip
