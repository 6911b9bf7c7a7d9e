"""Stored pixel values of one single-frame greyscale dataset, as an integer or float array.

Native (uncompressed) pixel data with whole-byte samples is viewed with ``np.frombuffer``:
pydicom's decoder machinery costs about as much as parsing the header, which matters for
small images. Everything else (compressed, bit-packed, float pixel data, short buffers)
goes through ``pydicom.pixels.pixel_array`` with ``raw=True``, so no colour conversion happens.
Both paths give the same values, including pydicom's masking of unused high bits.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from core.imaging.values import AttributeReader

__all__ = ["stored_pixels"]


def stored_pixels(ds: Dataset) -> np.ndarray:
    """Decode the stored values of a single-frame greyscale image.

    Parameters
    ----------
    ds : Dataset
        Parsed with its pixel data; already known to be single-frame with one sample per pixel.

    Returns
    -------
    ndarray of shape (rows, columns)
        Stored values before any modality transform; a read-only view for native data.
    """
    native = _native_view(ds)
    return native if native is not None else pixel_array(ds, index=None, raw=True)


def _native_view(ds: Dataset) -> np.ndarray | None:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    elem = ds.get_item("PixelData")
    if syntax is None or syntax.is_encapsulated or elem is None or not isinstance(elem.value, bytes):
        return None
    values = AttributeReader(ds)
    rows, columns = values.first_int("Rows") or 0, values.first_int("Columns") or 0
    allocated, stored = values.first_int("BitsAllocated"), values.first_int("BitsStored")
    signed = values.first_int("PixelRepresentation") == 1
    if allocated not in (8, 16, 32) or stored is None or not 0 < stored <= allocated:
        return None
    count = rows * columns
    if count <= 0 or len(elem.value) < count * allocated // 8:
        return None  # pydicom's decoder names the shortfall
    order = "<" if syntax.is_little_endian else ">"
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{allocated // 8}")
    arr = np.frombuffer(elem.value, dtype=dtype, count=count).reshape(rows, columns)
    if stored < allocated:
        # As pydicom does: the unused high bits may hold anything (overlays, garbage), so shift
        # them out; the arithmetic right shift also sign-extends signed values.
        shift = allocated - stored
        arr = np.right_shift(np.left_shift(arr, shift), shift)
    return arr
