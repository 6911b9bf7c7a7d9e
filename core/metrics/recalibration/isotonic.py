"""Isotonic recalibration: the non-decreasing step function closest to the outcomes (PAV).

Fits any monotone distortion, but needs more cases than Platt scaling and is flat between its
knots. Predictions interpolate linearly between knots and are clipped outside them, as
scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` does.

References
----------
Zadrozny & Elkan (2002), KDD. Barlow et al. (1972), Statistical Inference under Order Restrictions.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.metrics.base import check_binary
from core.metrics.recalibration.base import Calibrator, CalibratorMethod
from core.types import FloatArray, JSONObject

__all__ = ["IsotonicCalibrator", "pool_adjacent_violators"]


def pool_adjacent_violators(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Weighted least-squares non-decreasing fit of ``values`` (already in x order).

    Examples
    --------
    >>> pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    means: list[float] = []
    wsum: list[float] = []
    sizes: list[int] = []
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(v)
        wsum.append(w)
        sizes.append(1)
        # Invariant: means is non-decreasing except possibly at its last element.
        while len(means) > 1 and means[-2] > means[-1]:
            w_new = wsum[-2] + wsum[-1]
            means[-2] = (means[-2] * wsum[-2] + means[-1] * wsum[-1]) / w_new
            wsum[-2] = w_new
            sizes[-2] += sizes[-1]
            del means[-1], wsum[-1], sizes[-1]
    return np.repeat(np.array(means), sizes)


class IsotonicCalibrator(Calibrator):
    """Monotone step-function recalibration, interpolated between knots.

    Examples
    --------
    >>> cal = IsotonicCalibrator().fit([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.9])
    >>> cal.predict([0.1, 0.45, 0.9]).tolist()
    [0.0, 0.5, 1.0]
    """

    method = CalibratorMethod.ISOTONIC

    def __init__(self, *, x: list[float] | None = None, y: list[float] | None = None) -> None:
        self.x = x
        self.y = y

    def fit(self, y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> Self:
        """Fit the step function on one site's cases.

        Raises
        ------
        BadInputError
            A single class (the fit would be a constant that hides the model).
        """
        yt, p = check_binary(y_true, y_prob, what="calibration cases", probability=True)
        if yt.min() == yt.max():
            raise BadInputError(f"isotonic recalibration needs both classes, got only {int(yt[0])} ({yt.size} cases)")
        # Equal scores are one point with the mean outcome (scikit-learn's handling of ties).
        xs, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        means = np.bincount(inverse.reshape(-1), weights=yt, minlength=xs.size) / counts
        fitted = pool_adjacent_violators(means, counts.astype(np.float64))
        keep = _knots(fitted)
        self.x, self.y = xs[keep].tolist(), fitted[keep].tolist()
        return self

    def predict(self, y_prob: npt.ArrayLike) -> FloatArray:
        """Recalibrated probabilities (clipped to the fitted range outside the knots)."""
        if self.x is None or self.y is None:
            raise BadInputError("this isotonic calibrator is not fitted")
        return np.asarray(np.interp(np.asarray(y_prob, dtype=np.float64), self.x, self.y), dtype=np.float64)

    def to_params(self) -> JSONObject:
        """``{"x": knots, "y": values}``."""
        return {"x": list(self.x or []), "y": list(self.y or [])}

    @classmethod
    def from_params(cls, params: JSONObject) -> Self:
        """Rebuild from :meth:`to_params`."""
        x, y = params["x"], params["y"]
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
            raise ValueError("x and y must be non-empty lists of equal length")
        return cls(x=[float(v) for v in x], y=[float(v) for v in y])  # type: ignore[arg-type]


def _knots(fitted: FloatArray) -> npt.NDArray[np.bool_]:
    """Keep the first and last point of every flat run: interpolation between them is exact."""
    keep = np.ones(fitted.size, dtype=bool)
    if fitted.size > 2:
        same_prev = fitted[1:-1] == fitted[:-2]
        same_next = fitted[1:-1] == fitted[2:]
        keep[1:-1] = ~(same_prev & same_next)
    return keep
