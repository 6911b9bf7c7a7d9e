"""Cross-validated evaluation of recalibration: ECE and Brier before and after, out of fold.

A calibrator fitted and scored on the same cases always looks better than it is. Here every case
is recalibrated by a calibrator fitted on the other folds, so "after" is what a new case at the
site would see. The calibrator finally stored is refitted on all cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import check_binary
from core.metrics.calibration import brier_score_loss, expected_calibration_error
from core.metrics.recalibration.base import Calibrator, CalibratorMethod, make_calibrator
from core.types import FloatArray, IntArray, JSONObject

__all__ = ["CrossValidatedCalibration", "cross_validate_calibrator", "stratified_folds"]


@dataclass(frozen=True, slots=True)
class CrossValidatedCalibration:
    """Out-of-fold effect of one recalibration method, and the calibrator refitted on every case.

    Attributes
    ----------
    method : CalibratorMethod
    n_folds : int
    n_cases : int
    ece_before, ece_after : float
        Expected calibration error of the raw and the out-of-fold recalibrated probabilities.
    brier_before, brier_after : float
    calibrator : Calibrator
        Fitted on all cases; what would be stored.
    """

    method: CalibratorMethod
    n_folds: int
    n_cases: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    calibrator: Calibrator

    def to_dict(self) -> JSONObject:
        """JSON-ready summary (parameters included)."""
        return {
            "method": str(self.method),
            "n_folds": self.n_folds,
            "n_cases": self.n_cases,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "brier_before": self.brier_before,
            "brier_after": self.brier_after,
            "params": self.calibrator.to_params(),
        }


def stratified_folds(y: IntArray, *, n_folds: int, random_state: int) -> IntArray:
    """Fold number of each case, classes spread evenly over folds (seeded)."""
    rng = np.random.default_rng(random_state)
    folds = np.empty(y.size, dtype=np.int64)
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        folds[rng.permutation(members)] = np.arange(members.size) % n_folds
    return folds


def cross_validate_calibrator(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    *,
    method: CalibratorMethod | str,
    n_folds: int = 5,
    n_bins: int = 10,
    random_state: int = 0,
) -> CrossValidatedCalibration:
    """Out-of-fold ECE and Brier score of ``method``, and the calibrator refitted on all cases.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples,)
        The model's probabilities at one site.
    method : {"platt", "isotonic"}
    n_folds : int, default 5
        Each fold must hold at least one case of each class.
    n_bins : int, default 10
        Bins of the ECE.
    random_state : int, default 0
        Seeds the fold assignment.

    Returns
    -------
    CrossValidatedCalibration

    Raises
    ------
    BadInputError
        Fewer than ``n_folds`` cases of a class, or ``n_folds < 2``.
    """
    y, p = check_binary(y_true, y_prob, what="calibration cases", probability=True)
    n_pos = int(y.sum())
    if n_folds < 2 or min(n_pos, y.size - n_pos) < n_folds:
        raise BadInputError(
            f"{n_folds}-fold recalibration needs at least {max(n_folds, 2)} cases of each class; "
            f"got {n_pos} positive and {y.size - n_pos} negative"
        )
    folds = stratified_folds(y, n_folds=n_folds, random_state=random_state)
    out_of_fold = _out_of_fold(y, p, folds, method=method, n_folds=n_folds)
    final = make_calibrator(method).fit(y, p)
    return CrossValidatedCalibration(
        method=final.method,
        n_folds=n_folds,
        n_cases=int(y.size),
        ece_before=expected_calibration_error(y, p, n_bins=n_bins),
        ece_after=expected_calibration_error(y, out_of_fold, n_bins=n_bins),
        brier_before=brier_score_loss(y, p),
        brier_after=brier_score_loss(y, out_of_fold),
        calibrator=final,
    )


def _out_of_fold(
    y: IntArray, p: FloatArray, folds: IntArray, *, method: CalibratorMethod | str, n_folds: int
) -> FloatArray:
    out = np.empty_like(p)
    for k in range(n_folds):
        held = folds == k
        cal: Calibrator = make_calibrator(method).fit(y[~held], p[~held])
        out[held] = np.clip(cal.predict(p[held]), 0.0, 1.0)
    return out
