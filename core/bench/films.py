"""Realistic film sizes for the throughput suite: enlarge generated radiographs in place.

The cohort generator writes films of 240 to 320 pixels a side, while a real chest radiograph is
about 2,048² and decoding cost grows with the pixel count and the entropy a codec must undo. So a
generated film is resampled to ``size x size`` (bilinear), given back the detector noise the
interpolation smoothed away (Gaussian, with the standard deviation of the original's
high-frequency residual), and re-encoded with its own transfer syntax; pixel spacing is scaled so
the field of view is unchanged. The headers, UIDs and everything else stay the generator's.
Results are SYNTHETIC phantoms, like their source.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from pydicom import dcmread
from pydicom.uid import UID

from core.errors import BadInputError
from core.types import FloatArray, IntArray

__all__ = ["MAX_FILM_SIZE", "MIN_FILM_SIZE", "enlarge_film"]

MIN_FILM_SIZE: Final = 64
MAX_FILM_SIZE: Final = 4096


def enlarge_film(path: Path, size: int) -> None:
    """Rewrite the single-frame greyscale DICOM file ``path`` at ``size x size`` pixels.

    Parameters
    ----------
    path : Path
        A file the cohort generator wrote (16-bit unsigned stored values).
    size : int
        Pixels a side, from :data:`MIN_FILM_SIZE` to :data:`MAX_FILM_SIZE`.

    Raises
    ------
    BadInputError
        ``size`` out of range.
    """
    if not MIN_FILM_SIZE <= size <= MAX_FILM_SIZE:
        raise BadInputError(f"film size must be from {MIN_FILM_SIZE} to {MAX_FILM_SIZE} pixels, got {size}")
    ds = dcmread(path)
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    stored = np.asarray(ds.pixel_array, dtype=np.float32)
    seed = int.from_bytes(hashlib.sha256(str(ds.SOPInstanceUID).encode()).digest()[:8], "little")
    pixels = _resample(stored, size, bits=int(ds.BitsStored), rng=np.random.default_rng(seed))
    scale = stored.shape[0] / size
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            setattr(ds, keyword, [f"{float(v) * scale:.6g}" for v in getattr(ds, keyword)])
    ds.Rows = ds.Columns = size
    if syntax.is_compressed:
        ds.compress(syntax, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _resample(stored: FloatArray, size: int, *, bits: int, rng: np.random.Generator) -> IntArray:
    """Bilinear resample to ``size``², plus noise as strong as the original's high-frequency residual."""
    t = torch.from_numpy(np.ascontiguousarray(stored))[None, None]
    smooth = F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)
    sigma = float((t - smooth).std())
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    noisy = up + rng.normal(0.0, sigma, up.shape).astype(np.float32)
    out: IntArray = np.clip(np.rint(noisy), 0, 2**bits - 1).astype(np.uint16)
    return out
