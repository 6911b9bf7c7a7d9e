"""The explanation record every method returns, and the names of the methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from core.errors import BadInputError
from core.types import FloatArray, JSONObject

__all__ = ["ExplainMethod", "Explanation"]


class ExplainMethod(StrEnum):
    """Explanation methods a caller may name (``vigil explain --method``)."""

    GRADCAM = "gradcam"
    GRADIENTSHAP = "gradientshap"
    KERNELSHAP = "kernelshap"

    @property
    def signed(self) -> bool:
        """True for the SHAP methods, whose maps carry evidence for (> 0) and against (< 0) the finding."""
        return self is not ExplainMethod.GRADCAM

    @property
    def label(self) -> str:
        """The name shown to readers."""
        return _LABELS[self]


_LABELS: dict[ExplainMethod, str] = {
    ExplainMethod.GRADCAM: "Grad-CAM",
    ExplainMethod.GRADIENTSHAP: "GradientShap",
    ExplainMethod.KERNELSHAP: "KernelShap",
}


@dataclass(frozen=True, slots=True, eq=False)
class Explanation:
    """One heat map for one image.

    Attributes
    ----------
    method : ExplainMethod
    target : int
        Index of the explained output (0: the single logit).
    heatmap : ndarray of shape (rows, columns), float32
        On the image's own pixel grid; read-only. Grad-CAM: min-max scaled to [0, 1]. The SHAP
        methods (``method.signed``): divided by the largest magnitude, in [-1, 1], positive
        for evidence for the finding and negative against it.
    model_version : str
    params : dict
        Everything needed to reproduce the map (layer, input size, interpolation, the model
        input's SHA-256) and flags about it, such as ``flat_map``.
    stored : ndarray, optional
        The compact form to store instead of ``heatmap`` (Grad-CAM: the float16 map on the
        target layer's grid, with ``params["upsample"]`` saying how it becomes ``heatmap``);
        None where the full map is stored.
    """

    method: ExplainMethod
    target: int
    heatmap: FloatArray
    model_version: str
    params: JSONObject = field(default_factory=dict)
    stored: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.heatmap.ndim != 2 or self.heatmap.dtype != np.float32:
            raise BadInputError(
                f"heatmap must be a 2-D float32 array, got shape {self.heatmap.shape} dtype {self.heatmap.dtype}"
            )
        self.heatmap.setflags(write=False)
