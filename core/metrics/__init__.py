"""Pure numpy/scipy metrics: AUC with DeLong and bootstrap intervals, operating point, calibration, pilot drift.

One metric per module with :mod:`core.metrics.base` beside them; no torch, no SQL. Public
functions follow scikit-learn: ``metric(y_true, y_score, *, options)``; undefined values are
``nan`` with an :class:`~core.errors.UndefinedMetricWarning`.
"""

from __future__ import annotations

from core.metrics.auc import roc_auc_score
from core.metrics.base import Interval
from core.metrics.bootstrap import AucBootstrap, BootstrapResult, bootstrap_auc
from core.metrics.calibration import (
    ReliabilityCurve,
    brier_score_loss,
    calibration_intercept,
    calibration_slope,
    expected_calibration_error,
    reliability_curve,
)
from core.metrics.delong import AucComparison, DelongResult, delong_auc, delong_test_paired, delong_test_unpaired
from core.metrics.operating_point import (
    OperatingPointResult,
    negative_predictive_value,
    operating_point,
    positive_predictive_value,
    sensitivity_score,
    specificity_score,
)
from core.metrics.pilot_drift import DriftOptions, pilot_drift_report
from core.metrics.report import CalibrationSummary, GapStatus, PilotDriftReport, SiteSummary, StratumSummary
from core.metrics.roc import RocCurve, roc_curve
from core.metrics.sample_size import SampleSizeMethod, SampleSizeResult, required_sample_size
from core.metrics.sampling_plan import SamplingPlan, sampling_plan
from core.metrics.wilson import wilson_interval

__all__ = [
    "AucBootstrap",
    "AucComparison",
    "BootstrapResult",
    "CalibrationSummary",
    "DelongResult",
    "DriftOptions",
    "GapStatus",
    "Interval",
    "OperatingPointResult",
    "PilotDriftReport",
    "ReliabilityCurve",
    "RocCurve",
    "SampleSizeMethod",
    "SampleSizeResult",
    "SamplingPlan",
    "SiteSummary",
    "StratumSummary",
    "bootstrap_auc",
    "brier_score_loss",
    "calibration_intercept",
    "calibration_slope",
    "delong_auc",
    "delong_test_paired",
    "delong_test_unpaired",
    "expected_calibration_error",
    "negative_predictive_value",
    "operating_point",
    "pilot_drift_report",
    "positive_predictive_value",
    "reliability_curve",
    "required_sample_size",
    "roc_auc_score",
    "roc_curve",
    "sampling_plan",
    "sensitivity_score",
    "specificity_score",
    "wilson_interval",
]
