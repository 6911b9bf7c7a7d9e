"""Plain-pydicom baselines that ``core.bench`` compares the imaging readers against.

They live here because pydicom may be imported only inside ``core.imaging``. None of them
validates anything: they are the floor a strict reader is measured against, not readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from core.imaging.structure import UNDEFINED_LENGTH

__all__ = ["PixelLayout", "pixel_layout", "plain_header_scan"]


@dataclass(frozen=True, slots=True)
class PixelLayout:
    """Where a native (uncompressed) single-frame image lies in its file.

    Attributes
    ----------
    offset : int
        Byte offset of the first pixel value in the file, or in the inflated stream when
        ``deflate_from`` is set.
    shape : tuple of int
        (rows, columns).
    dtype : str
        NumPy dtype string of one stored value, with byte order (e.g. ``"<i2"``).
    slope, intercept : float
        Rescale slope and intercept (1 and 0 when absent).
    sign : float
        ``-1`` for MONOCHROME1 (``core.imaging.dicom`` negates it), else ``1``.
    deflate_from : int or None
        For a deflated transfer syntax, the file offset where the raw deflate stream starts
        (just after the file meta group); any reader must inflate from there.
    """

    offset: int
    shape: tuple[int, int]
    dtype: str
    slope: float
    intercept: float
    sign: float
    deflate_from: int | None = None


def plain_header_scan(paths: Sequence[Path]) -> list[str]:
    """SOPInstanceUID of each file from a bare ``dcmread(stop_before_pixels=True)`` loop."""
    return [str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def pixel_layout(path: Path) -> PixelLayout | None:
    """Locate the stored pixels of a native single-frame greyscale file; ``None`` otherwise.

    Only files whose pixels are whole bytes per value (8, 16 or 32 bits allocated) in a native
    (not encapsulated) transfer syntax qualify; deflated files qualify with ``deflate_from`` set.
    """
    ds = dcmread(path)
    syntax = ds.file_meta.TransferSyntaxUID
    elem = ds.get_item("PixelData")
    if elem is None or syntax.is_encapsulated or elem.length == UNDEFINED_LENGTH:
        return None
    deflate_from = None
    if syntax.is_deflated:
        group_length = ds.file_meta.get("FileMetaInformationGroupLength")
        if group_length is None:
            return None
        # 128-byte preamble, "DICM", then the 12-byte group length element and the group it counts.
        deflate_from = 128 + 4 + 12 + int(group_length)
    if (
        int(ds.get("NumberOfFrames", 1) or 1) != 1
        or int(ds.SamplesPerPixel) != 1
        or ds.BitsAllocated not in (8, 16, 32)
    ):
        return None
    kind = "i" if ds.PixelRepresentation == 1 else "u"
    order = "<" if syntax.is_little_endian else ">"
    return PixelLayout(
        offset=int(elem.value_tell),
        shape=(int(ds.Rows), int(ds.Columns)),
        dtype=f"{order}{kind}{ds.BitsAllocated // 8}",
        slope=float(ds.get("RescaleSlope", 1.0)),
        intercept=float(ds.get("RescaleIntercept", 0.0)),
        sign=-1.0 if ds.PhotometricInterpretation == "MONOCHROME1" else 1.0,
        deflate_from=deflate_from,
    )
