"""Stored pixel values of one single-frame greyscale dataset, as an integer or float array.

Native (uncompressed) pixel data with whole-byte samples is viewed with ``np.frombuffer``:
pydicom's decoder machinery costs about as much as parsing the header, which matters for
small images. Everything else (compressed, bit-packed, float pixel data, short buffers)
goes through ``pydicom.pixels.pixel_array`` with ``raw=True``, so no colour conversion happens.
Both paths give the same values, including pydicom's masking of unused high bits.

Compressed data is decoded by the one plugin its transfer syntax names, never by pydicom's
default of trying every installed plugin in turn: a stream the right decoder refuses, rightly,
another may turn into numbers (Pillow decodes a JPEG 2000 codestream labelled JPEG Baseline
into values unrelated to the image). pydicom masks the unused high bits of native, JPEG and RLE
data but not of JPEG 2000 or JPEG-LS, so :func:`values_outside` checks what came out against
Bits Stored.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from core.imaging.values import AttributeReader

__all__ = ["TRUSTED_PLUGINS", "decoding_plugin", "stored_pixels", "stored_value_range", "values_outside"]

#: The decoding plugins Vigil trusts for each compressed transfer syntax, in order of preference
#: (pydicom's plugin names): pylibjpeg-libjpeg for JPEG, CharLS (pyjpegls) for JPEG-LS,
#: pylibjpeg-openjpeg for JPEG 2000, and pydicom's own decoder for RLE. Never Pillow or GDCM.
#: pylibjpeg-rle is faster (0.6 against 4 ms for 256 × 256 × 16 bits) but written in Rust, and a
#: segment that decodes past its end makes it panic: pyo3's PanicException derives from
#: BaseException, so it escapes pydicom's plugin loop and every ``except Exception``.
TRUSTED_PLUGINS: Final[dict[str, tuple[str, ...]]] = {
    **dict.fromkeys(JPEGTransferSyntaxes, ("pylibjpeg",)),
    **dict.fromkeys(JPEGLSTransferSyntaxes, ("pyjpegls",)),
    **dict.fromkeys(JPEG2000TransferSyntaxes, ("pylibjpeg",)),
    RLELossless: ("pydicom",),
}

# The package behind each plugin name, for the sentence that says which one is missing.
_PACKAGES: Final = {"pylibjpeg": "pylibjpeg and its plugin", "pyjpegls": "pyjpegls", "pydicom": "pydicom"}


def decoding_plugin(syntax: str) -> str:
    """The plugin that decodes pixel data encoded in ``syntax``.

    Parameters
    ----------
    syntax : str
        A Transfer Syntax UID.

    Returns
    -------
    str
        ``""`` for native (uncompressed) syntaxes, which need no plugin, and for a missing one
        (pydicom then names it); otherwise the first trusted plugin that pydicom reports available.

    Raises
    ------
    NotImplementedError
        A UID that is no transfer syntax, a compressed syntax Vigil trusts no decoder for, or one
        whose trusted decoders are not installed; the message is one sentence.
    """
    uid = UID(syntax)
    if not uid:
        return ""
    if not uid.is_transfer_syntax:
        raise NotImplementedError(f"the transfer syntax UID {str(uid)[:64]!r} is not a transfer syntax")
    if not uid.is_encapsulated:
        return ""
    label = f"{uid.name} ({uid})"
    trusted = TRUSTED_PLUGINS.get(uid, ())
    if not trusted:
        raise NotImplementedError(f"Vigil trusts no decoder for {label}")
    available = get_decoder(uid).available_plugins
    for plugin in trusted:
        if plugin in available:
            return plugin
    raise NotImplementedError(f"{label} needs {_PACKAGES.get(trusted[0], trusted[0])}, which is not installed")


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

    Raises
    ------
    NotImplementedError
        No trusted decoder for the transfer syntax is installed (see :func:`decoding_plugin`).
    """
    native = _native_view(ds)
    if native is not None:
        return native
    plugin = decoding_plugin(str(ds.file_meta.get("TransferSyntaxUID", "")))
    decoded: np.ndarray = pixel_array(ds, index=None, raw=True, decoding_plugin=plugin)
    return decoded


def stored_value_range(bits_stored: int, *, signed: bool) -> tuple[int, int]:
    """The smallest and largest stored value ``bits_stored`` bits can hold (PS3.5 8.1.1).

    Examples
    --------
    >>> stored_value_range(12, signed=False)
    (0, 4095)
    >>> stored_value_range(8, signed=True)
    (-128, 127)
    """
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def values_outside(stored: np.ndarray, *, bits_stored: int, signed: bool) -> tuple[int, int] | None:
    """The span of stored values, if any of them lies outside what ``bits_stored`` bits can hold.

    Parameters
    ----------
    stored : ndarray
        Stored values as :func:`stored_pixels` returns them.
    bits_stored : int
        Bits Stored, already known to be from 1 to Bits Allocated.
    signed : bool
        Pixel Representation 1.

    Returns
    -------
    tuple of int or None
        ``(min, max)`` of ``stored`` when either falls outside :func:`stored_value_range`;
        ``None`` when all values fit, or for float pixel data, which has no Bits Stored.
    """
    if stored.size == 0 or stored.dtype.kind not in "iub":
        return None
    low, high = int(stored.min()), int(stored.max())
    allowed_low, allowed_high = stored_value_range(bits_stored, signed=signed)
    return (low, high) if low < allowed_low or high > allowed_high else None


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
