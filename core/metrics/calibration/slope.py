"""Calibration slope and intercept (Cox 1958): logistic recalibration of the outcome on the logit.

``logit P(y = 1) = a + b * logit(p)``. The slope ``b`` is 1 for a well-calibrated model, below 1
when predictions are too extreme. The intercept is fitted with the slope fixed at 1
("calibration-in-the-large"): 0 when the mean prediction matches the observed rate, negative
when the model over-predicts.

References
----------
Cox (1958), Biometrika 45:562-565. Van Calster et al. (2016), J Clin Epidemiol 74:167-176.
"""

from __future__ import annotations

import numpy.typing as npt

from core.metrics.base import check_binary, undefined
from core.metrics.calibration.logistic import fit_logistic, logit

__all__ = ["calibration_intercept", "calibration_slope"]


def calibration_slope(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Slope ``b`` of ``logit P(y = 1) = a + b * logit(p)``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples,)
        Probabilities in [0, 1] (clipped to 1e-12 from the ends before the logit).

    Returns
    -------
    float
        ``nan`` with a warning for a single class or when the fit does not converge.

    Examples
    --------
    >>> round(calibration_slope([0, 1, 0, 1, 1, 0, 1, 0], [0.2, 0.7, 0.4, 0.35, 0.8, 0.3, 0.6, 0.5]), 3)
    2.544
    """
    y, p = check_binary(y_true, y_prob, probability=True)
    if y.min() == y.max():
        return undefined(f"calibration slope: single class ({int(y[0])})")
    fit = fit_logistic(logit(p), y)
    return fit.slope if fit.converged else undefined("calibration slope: the logistic fit does not converge")


def calibration_intercept(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Calibration-in-the-large: ``a`` of ``logit P(y = 1) = a + logit(p)`` (slope fixed at 1).

    Returns
    -------
    float
        ``nan`` with a warning for a single class (the fit would run off to infinity).

    Examples
    --------
    >>> round(calibration_intercept([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]), 6)
    0.0
    """
    y, p = check_binary(y_true, y_prob, probability=True)
    if y.min() == y.max():
        return undefined(f"calibration intercept: single class ({int(y[0])})")
    lp = logit(p)
    fit = fit_logistic(lp, y, fit_slope=False, offset=lp)
    return fit.intercept if fit.converged else undefined("calibration intercept: the logistic fit does not converge")
