"""Calibration of predicted probabilities: ECE, reliability curve, slope and intercept, Brier score."""

from __future__ import annotations

from core.metrics.calibration.brier import brier_score_loss
from core.metrics.calibration.ece import expected_calibration_error
from core.metrics.calibration.reliability import BinStrategy, ReliabilityCurve, reliability_curve
from core.metrics.calibration.slope import calibration_intercept, calibration_slope

__all__ = [
    "BinStrategy",
    "ReliabilityCurve",
    "brier_score_loss",
    "calibration_intercept",
    "calibration_slope",
    "expected_calibration_error",
    "reliability_curve",
]
