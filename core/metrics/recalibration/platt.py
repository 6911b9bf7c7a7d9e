"""Platt scaling on the logit: ``p' = sigmoid(a + b * logit(p))``, fitted by maximum likelihood.

Two parameters, so it needs few cases and cannot overfit much; it corrects a shift in the
base rate (``a``) and over- or under-confidence (``b``), not a non-monotone distortion.

References
----------
Platt (1999), Advances in Large Margin Classifiers. Cox (1958), Biometrika 45:562-565.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import check_binary
from core.metrics.calibration.logistic import fit_logistic, logit
from core.metrics.recalibration.base import Calibrator, CalibratorMethod
from core.types import FloatArray, JSONObject

__all__ = ["PlattCalibrator"]


class PlattCalibrator(Calibrator):
    """Logistic recalibration on the logit of the model's probability.

    Examples
    --------
    >>> cal = PlattCalibrator().fit([0, 0, 1, 1, 0, 1, 1, 0], [0.2, 0.6, 0.7, 0.9, 0.3, 0.5, 0.8, 0.4])
    >>> cal.predict([0.5]).round(3).tolist()
    [0.344]
    """

    method = CalibratorMethod.PLATT

    def __init__(self, *, intercept: float | None = None, slope: float | None = None) -> None:
        self.intercept = intercept
        self.slope = slope

    def fit(self, y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> Self:
        """Fit ``a`` and ``b``.

        Raises
        ------
        BadInputError
            A single class, or perfectly separated cases (the fit runs off to infinity).
        """
        y, p = check_binary(y_true, y_prob, what="calibration cases", probability=True)
        if y.min() == y.max():
            raise BadInputError(f"Platt scaling needs both classes, got only {int(y[0])} ({y.size} cases)")
        fit = fit_logistic(logit(p), y)
        if not fit.converged:
            raise BadInputError("Platt scaling does not converge: the cases are perfectly separated by the score")
        self.intercept, self.slope = fit.intercept, fit.slope
        return self

    def predict(self, y_prob: npt.ArrayLike) -> FloatArray:
        """Recalibrated probabilities."""
        if self.intercept is None or self.slope is None:
            raise BadInputError("this Platt calibrator is not fitted")
        p = np.asarray(y_prob, dtype=np.float64)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.intercept + self.slope * logit(p)))), dtype=np.float64)

    def to_params(self) -> JSONObject:
        """``{"intercept": a, "slope": b}``."""
        return {"intercept": self.intercept, "slope": self.slope}

    @classmethod
    def from_params(cls, params: JSONObject) -> Self:
        """Rebuild from :meth:`to_params`."""
        intercept, slope = params["intercept"], params["slope"]
        if not isinstance(intercept, int | float) or not isinstance(slope, int | float):
            raise ValueError(f"intercept and slope must be numbers, got {intercept!r} and {slope!r}")
        return cls(intercept=float(intercept), slope=float(slope))
