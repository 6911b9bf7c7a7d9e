"""Image → model input. Pure numpy/torch; the same function serves training and inference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.types import FloatArray, JSONObject

__all__ = ["PreprocessParams", "preprocess", "preprocess_batch"]


@dataclass(frozen=True, slots=True)
class PreprocessParams:
    """Every parameter of the preprocessing, recorded verbatim in the model card.

    Attributes
    ----------
    size : int
        Output grid is ``size x size`` pixels (area resampling, aspect ratio not kept:
        the field of view of a chest PA is close to square).
    low_percentile, high_percentile : float
        Intensities are clipped to these percentiles of the image, then scaled to [0, 1].
        Percentiles rather than the stored bit depth, so 12- and 16-bit detectors agree.
    """

    size: int = 224
    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def to_dict(self) -> JSONObject:
        """Parameters as card JSON."""
        return dict(asdict(self))

    @classmethod
    def from_dict(cls, d: JSONObject) -> PreprocessParams:
        """Rebuild from card JSON."""
        return cls(
            size=int(d["size"]),  # type: ignore[arg-type]
            low_percentile=float(d["low_percentile"]),  # type: ignore[arg-type]
            high_percentile=float(d["high_percentile"]),  # type: ignore[arg-type]
        )


def preprocess(pixels: FloatArray, params: PreprocessParams) -> FloatArray:
    """Normalize and resample one image.

    Parameters
    ----------
    pixels : ndarray of shape (rows, columns)
        Rescaled, MONOCHROME2-oriented pixels (``DicomImage.pixels``).
    params : PreprocessParams

    Returns
    -------
    ndarray of shape (1, size, size), float32, values in [0, 1]
    """
    img = np.asarray(pixels, dtype=np.float32)
    lo, hi = np.percentile(img, [params.low_percentile, params.high_percentile])
    scale = float(hi - lo)
    # A constant image has no contrast to normalize; keep it flat at 0 rather than divide by 0.
    img = (np.clip(img, lo, hi) - lo) / scale if scale > 0 else np.zeros_like(img)
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    out = F.interpolate(t, size=(params.size, params.size), mode="area")
    return out[0].numpy().astype(np.float32, copy=False)


def preprocess_batch(images: list[FloatArray], params: PreprocessParams) -> torch.Tensor:
    """Stack :func:`preprocess` over ``images`` into a tensor of shape (n, 1, size, size)."""
    return torch.from_numpy(np.stack([preprocess(p, params) for p in images]))
