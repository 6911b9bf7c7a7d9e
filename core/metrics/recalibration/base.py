"""The interface every recalibration method implements, and the factory that picks one by name.

A calibrator maps a model's probability to a recalibrated probability. It is fitted on one
site's labelled cases, serialized to plain JSON parameters (stored with the model version) and
rebuilt from them; the mapping is pure and never touches the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Self

import numpy.typing as npt

from core.errors import BadInputError, UnknownMethodError
from core.types import FloatArray, JSONObject

__all__ = ["Calibrator", "CalibratorMethod", "calibrator_from_params", "make_calibrator"]


class CalibratorMethod(StrEnum):
    """Recalibration methods; the values are stored with every site calibrator."""

    PLATT = "platt"
    ISOTONIC = "isotonic"


class Calibrator(ABC):
    """Fit on ``(y_true, y_prob)``, then map probabilities with :meth:`predict`."""

    method: CalibratorMethod

    @abstractmethod
    def fit(self, y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> Self:
        """Fit on labelled cases of one site; returns ``self``."""

    @abstractmethod
    def predict(self, y_prob: npt.ArrayLike) -> FloatArray:
        """Recalibrated probabilities, shape (n_samples,), in [0, 1]."""

    @abstractmethod
    def to_params(self) -> JSONObject:
        """The fitted parameters as JSON (stored; :func:`calibrator_from_params` rebuilds)."""

    @classmethod
    @abstractmethod
    def from_params(cls, params: JSONObject) -> Self:
        """Rebuild a fitted calibrator from :meth:`to_params`."""


def make_calibrator(method: CalibratorMethod | str) -> Calibrator:
    """An unfitted calibrator of ``method``.

    Raises
    ------
    UnknownMethodError
        ``method`` is not a :class:`CalibratorMethod` value.
    """
    from core.metrics.recalibration.isotonic import IsotonicCalibrator
    from core.metrics.recalibration.platt import PlattCalibrator

    try:
        chosen = CalibratorMethod(method)
    except ValueError as exc:
        raise UnknownMethodError(str(method), tuple(m.value for m in CalibratorMethod)) from exc
    return PlattCalibrator() if chosen is CalibratorMethod.PLATT else IsotonicCalibrator()


def calibrator_from_params(method: CalibratorMethod | str, params: JSONObject) -> Calibrator:
    """Rebuild a stored calibrator.

    Raises
    ------
    UnknownMethodError
        Unknown ``method``.
    BadInputError
        ``params`` do not describe a fitted calibrator of that method.
    """
    cls = type(make_calibrator(method))
    try:
        return cls.from_params(params)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"stored {method} calibrator parameters are malformed: {exc}") from exc
