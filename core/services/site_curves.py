"""Per-site ROC with the operating point and a bootstrap band, and per-site AUC by month.

The quality committee's two questions besides the pilot-drift gap: *where on its curve does the
card's threshold put each site*, and *is a site's AUC moving*. Cases are the ones the pilot-drift
report evaluates (scored, labelled, not training data of the model version), so the numbers
agree with :func:`core.services.validation.validate`. The maths is in
:mod:`core.metrics.roc_band` and :mod:`core.metrics.auc_trend`; this module only reads and groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.metrics.auc_trend import PeriodAuc, monthly_auc
from core.metrics.roc_band import RocBand, roc_band
from core.services.outcomes import EvaluationSet, evaluation_set
from core.store.engine import SessionFactory
from core.store.outcomes import ScoredStudy

__all__ = ["SiteCurves", "SiteCurvesReport", "site_curves"]


@dataclass(frozen=True, slots=True)
class SiteCurves:
    """One site's ROC band, operating point and monthly AUC.

    Attributes
    ----------
    site : str
    n_positive, n_negative : int
        Labelled cases evaluated.
    band : RocBand
        All-``nan`` when a class has fewer than two cases.
    operating_fpr, operating_tpr : float or None
        ``1 − specificity`` and sensitivity at the card's threshold (``score >= threshold`` is
        positive); None when a class is missing.
    months : tuple of PeriodAuc
        AUC by study month; studies without a study date are left out (counted in ``n_undated``).
    n_undated : int
    """

    site: str
    n_positive: int
    n_negative: int
    band: RocBand
    operating_fpr: float | None
    operating_tpr: float | None
    months: tuple[PeriodAuc, ...]
    n_undated: int


@dataclass(frozen=True, slots=True)
class SiteCurvesReport:
    """Every site's curves for one model version at its card's threshold, benchmark first."""

    model_version: str
    threshold: float
    sites: tuple[SiteCurves, ...]


def site_curves(
    session_factory: SessionFactory,
    *,
    model_version: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    min_per_class: int = 5,
) -> SiteCurvesReport:
    """Read the evaluation set once and compute every site's curves.

    Parameters
    ----------
    model_version : str, optional
        The serving version when None.
    n_resamples : int, default 1000
        Bootstrap replicates of the ROC band.
    seed : int, default 0
        The band's seed: the same data and seed give the same band.
    min_per_class : int, default 5
        A month with fewer positives or negatives is "not enough data" (as the pilot-drift report).

    Raises
    ------
    BadInputError
        No model version is serving, or a bad resampling setting (naming it).
    """
    ev = evaluation_set(session_factory, model_version=model_version)
    cases = _evaluated(ev)
    order = sorted({s.site for s in cases}, key=lambda name: (name != ev.benchmark, name))
    return SiteCurvesReport(
        model_version=ev.model_version.version,
        threshold=ev.threshold,
        sites=tuple(
            _site(ev, [s for s in cases if s.site == name], n_resamples, seed, min_per_class) for name in order
        ),
    )


def _evaluated(ev: EvaluationSet) -> list[ScoredStudy]:
    """The cases the pilot-drift report evaluates: scored, labelled, not training data."""
    return [
        s
        for s in ev.studies
        if s.score is not None and s.study_id in ev.labels.labels and s.study_id not in ev.excluded
    ]


def _site(ev: EvaluationSet, cases: list[ScoredStudy], n_resamples: int, seed: int, minimum: int) -> SiteCurves:
    y = np.array([ev.labels.labels[s.study_id].label for s in cases], dtype=np.int64)
    score = np.array([s.score for s in cases], dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    called = score >= ev.threshold
    fpr = float(called[y == 0].mean()) if n_neg else None
    tpr = float(called[y == 1].mean()) if n_pos else None
    dated = [(i, s.study_date.strftime("%Y-%m")) for i, s in enumerate(cases) if s.study_date is not None]
    rows = [i for i, _ in dated]
    months = monthly_auc(y[rows], score[rows], [m for _, m in dated], min_per_class=minimum)
    band = roc_band(y, score, n_resamples=n_resamples, random_state=seed)
    return SiteCurves(cases[0].site, n_pos, n_neg, band, fpr, tpr, months, len(cases) - len(dated))
