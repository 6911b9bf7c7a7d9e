"""Platt scaling folded into a network's last layer: recalibrated probabilities from the same network.

A retrained challenger is judged, among other things, on its calibration (the change-control
plan's ECE limit), and fine-tuning on the mixed sites' labels leaves its probabilities off. Platt
scaling fits ``p' = sigmoid(a + b * z)`` on held-back studies, ``z`` being the network's logit.
Because the network ends in a linear layer that gives ``z``, ``a`` and ``b`` can be written into
that layer (``W' = b W``, ``c' = b c + a``): the card's network, its Grad-CAM layer and every
consumer stay as they are, and with ``b > 0`` the ranking (AUC) is untouched.

(``core.metrics.recalibration`` holds the per-site calibrators a person approves; ``core.models``
sits below ``core.metrics`` in the layers, so the two-parameter fit is repeated here.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from core.errors import BadInputError
from core.types import FloatArray, IntArray

__all__ = ["fit_logit_scaling", "fold_into_last_layer", "logits_of"]

_MAX_NEWTON_STEPS = 50


def logits_of(probabilities: FloatArray) -> FloatArray:
    """``log(p / (1 - p))`` with ``p`` clipped to [1e-12, 1 - 1e-12] (float32 scores saturate)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)


def fit_logit_scaling(y_true: IntArray, logits: FloatArray) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y = 1) = sigmoid(a + b * z)``, by Newton's method.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        0/1 labels, both classes present.
    logits : ndarray of shape (n,)
        The network's logits ``z`` on the same studies.

    Returns
    -------
    tuple of float
        Intercept ``a`` and slope ``b``.

    Raises
    ------
    BadInputError
        A single class, non-finite logits, a fit that does not converge (the studies are
        separated perfectly by the score), or a slope that is not positive (scaling would
        reverse the ranking).
    """
    y = np.asarray(y_true, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    if y.min() == y.max():
        raise BadInputError(f"logit scaling needs both classes, got only {int(y[0])} ({y.size} studies)")
    if not np.isfinite(z).all():
        raise BadInputError("logit scaling needs finite logits")
    x = np.column_stack([np.ones_like(z), z])
    beta = np.array([math.log(y.mean() / (1.0 - y.mean())), 1.0])
    for _ in range(_MAX_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        hessian = x.T @ (x * (p * (1.0 - p))[:, None])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), x.T @ (y - p))
        beta = beta + step
        if float(np.abs(step).max()) < 1e-10:
            break
    else:
        raise BadInputError("logit scaling does not converge: the studies are separated perfectly by the score")
    intercept, slope = float(beta[0]), float(beta[1])
    if not (math.isfinite(slope) and slope > 0):
        raise BadInputError(f"logit scaling needs a positive slope (a higher score means more likely), got {slope:g}")
    return intercept, slope


def fold_into_last_layer(network: nn.Module, intercept: float, slope: float) -> None:
    """Rewrite ``network``'s last ``nn.Linear`` (one output, the logit) so it gives ``intercept + slope * z``.

    Raises
    ------
    BadInputError
        The network's last linear layer does not have a single output with a bias.
    """
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    layer = linears[-1] if linears else None
    if layer is None or layer.out_features != 1 or layer.bias is None:
        raise BadInputError("logit scaling needs a network that ends in a linear layer with one output and a bias")
    with torch.no_grad():
        layer.weight.mul_(slope)
        layer.bias.mul_(slope).add_(intercept)
