"""Maximum-likelihood logistic fits of one or two parameters by damped Newton steps.

Shared by the calibration slope and intercept (Cox 1958) and by Platt scaling. Two parameters
need no general optimizer: Newton's method with step halving converges in a handful of steps,
and a fit that does not converge (perfect separation) is reported as undefined, not as a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from core.types import FloatArray, IntArray

__all__ = ["LogisticFit", "fit_logistic", "logit"]

#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits.
EPS: Final = 1e-12
_MAX_ITER: Final = 100
_TOL: Final = 1e-10


@dataclass(frozen=True, slots=True)
class LogisticFit:
    """``P(y = 1) = sigmoid(intercept + slope * x + offset)``; ``converged`` False means undefined."""

    intercept: float
    slope: float
    converged: bool


def logit(p: FloatArray) -> FloatArray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def _nll(eta: FloatArray, y: IntArray) -> float:
    # log(1 + exp(eta)) - y * eta, computed without overflow.
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def fit_logistic(
    x: FloatArray, y: IntArray, *, fit_slope: bool = True, offset: FloatArray | None = None
) -> LogisticFit:
    """Fit ``y ~ intercept + slope * x + offset`` (or the intercept alone) by maximum likelihood.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        The covariate (e.g. the logit of the predicted probability).
    y : ndarray of shape (n_samples,)
        0/1 outcomes, both classes present.
    fit_slope : bool, default True
        False fixes the slope at 0 and fits the intercept only (use ``offset=x`` for a slope of 1).
    offset : ndarray of shape (n_samples,), optional
        Added to the linear predictor with coefficient 1.

    Returns
    -------
    LogisticFit
        ``converged=False`` when the likelihood has no finite maximum (perfect separation).
    """
    if fit_slope and _separated(x, y):
        # The likelihood keeps rising as the slope grows: there is no finite estimate.
        return LogisticFit(float("nan"), float("nan"), converged=False)
    design = np.column_stack([np.ones_like(x), x]) if fit_slope else np.ones((x.size, 1))
    off = np.zeros_like(x) if offset is None else offset
    beta = np.zeros(design.shape[1])
    loss = _nll(design @ beta + off, y)
    for _ in range(_MAX_ITER):
        eta = design @ beta + off
        p = 1.0 / (1.0 + np.exp(-eta))
        grad = design.T @ (p - y)
        hess = design.T @ (design * (p * (1.0 - p))[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return _result(beta, fit_slope, converged=False)
        beta, loss, improved = _damped(design, off, y, beta, step, loss)
        if not improved or float(np.max(np.abs(step))) < _TOL:
            break
    converged = bool(np.all(np.isfinite(beta)) and np.max(np.abs(beta)) < 1e6)
    grad_norm = float(np.max(np.abs(design.T @ (1.0 / (1.0 + np.exp(-(design @ beta + off))) - y))))
    return _result(beta, fit_slope, converged=converged and grad_norm < 1e-6 * max(1, y.size))


def _separated(x: FloatArray, y: IntArray) -> bool:
    """Complete or quasi-complete separation of the classes by ``x`` (one covariate)."""
    neg, pos = x[y == 0], x[y == 1]
    return bool(neg.max() <= pos.min() or pos.max() <= neg.min())


def _damped(
    design: FloatArray, off: FloatArray, y: IntArray, beta: FloatArray, step: FloatArray, loss: float
) -> tuple[FloatArray, float, bool]:
    """Halve the Newton step until the likelihood does not get worse."""
    scale = 1.0
    for _ in range(30):
        candidate = beta - scale * step
        new_loss = _nll(design @ candidate + off, y)
        if new_loss <= loss + 1e-12:
            return candidate, new_loss, True
        scale /= 2.0
    return beta, loss, False


def _result(beta: FloatArray, fit_slope: bool, *, converged: bool) -> LogisticFit:
    return LogisticFit(float(beta[0]), float(beta[1]) if fit_slope else 0.0, converged)
