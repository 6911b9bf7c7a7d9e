"""Recalibration of a model's probabilities at one site: Platt scaling and isotonic regression."""

from __future__ import annotations

from core.metrics.recalibration.base import Calibrator, CalibratorMethod, calibrator_from_params, make_calibrator
from core.metrics.recalibration.crossval import CrossValidatedCalibration, cross_validate_calibrator
from core.metrics.recalibration.isotonic import IsotonicCalibrator
from core.metrics.recalibration.platt import PlattCalibrator

__all__ = [
    "Calibrator",
    "CalibratorMethod",
    "CrossValidatedCalibration",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "calibrator_from_params",
    "cross_validate_calibrator",
    "make_calibrator",
]
