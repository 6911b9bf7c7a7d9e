"""Structural checks on a parsed element stream: truncation and bad element lengths.

pydicom is lenient on purpose: a file that ends inside a value yields a short value, a
corrupted length makes it parse the following bytes as garbage elements, and neither raises
(not even with ``reading_validation_mode = RAISE``, which only validates values lazily and is a
process-wide setting). The rules of PS3.5 7.1 that a damaged stream breaks are checked here
on the raw, unconverted elements, which costs no value decoding.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from core.errors import DicomRejectedError

__all__ = ["UNDEFINED_LENGTH", "check_structure"]

#: Value length 0xFFFFFFFF: an undefined-length element closed by a delimiter item.
UNDEFINED_LENGTH: Final = 0xFFFFFFFF

# Bytes per value of the fixed-size VRs (PS3.5 Table 6.2-1); a length must be a multiple.
_VR_WIDTH: Final = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8, "SV": 8, "OW": 2, "OL": 4}
# Longest single value of VRs that are plain ASCII (PS3.5 Table 6.2-1). A corrupted length makes
# a value swallow the elements after it; these two VRs are rarely over-long in honest files.
_VR_MAX_VALUE: Final = {"UI": 64, "CS": 16}
_SEQUENCE_DELIMITER: Final = (0xFFFE, 0xE0DD)


def check_structure(ds: Dataset, path: Path, *, data: bytes | None = None, complete: bool = True) -> None:
    """Reject a dataset whose element stream shows truncation or a corrupted element length.

    Parameters
    ----------
    ds : Dataset
        As returned by ``dcmread``, before any value was converted.
    path : Path
        Names the file in the error.
    data : bytes, optional
        The file's bytes; enables the end-of-file checks (delimiters, trailing fragments).
        Leave ``None`` for deflated transfer syntaxes, whose offsets refer to the inflated stream.
    complete : bool
        ``False`` when the read stopped before the pixel data, so that the file rightly goes on
        after the last element parsed.

    Raises
    ------
    DicomRejectedError
        Elements out of ascending tag order, an odd length, a length that is not a multiple of
        its VR's size, a value shorter than its declared length, a missing sequence delimiter,
        or bytes after the last element that do not form an element.
    """
    elements = list(ds.values())  # file order, raw and unconverted; iterating ``ds`` would sort and convert
    if not _looks_sound(elements):
        # The whole-stream test is cheap but says nothing about where; walk to the first fault.
        _raise_first_fault(elements, path)
    raws = [e for e in elements if type(e) is RawDataElement]
    ends = [_check_delimited(e, path, data) for e in raws if e.length == UNDEFINED_LENGTH]
    if complete and data is not None and elements and type(elements[-1]) is RawDataElement:
        last = elements[-1]
        last_end = ends[-1] if last.length == UNDEFINED_LENGTH else int(last.value_tell) + int(last.length)
        if last_end is not None:
            _check_end(last_end, len(data), path)


def _looks_sound(elements: list[Any]) -> bool:
    # One tight pass with no calls per element: a header scan checks 100-300 elements per file, and
    # this must stay a small fraction of pydicom's own parse (measured: ~10% of it).
    previous = -1
    for elem in elements:
        tag = int(elem.tag)
        if tag <= previous:
            return False
        previous = tag
        if type(elem) is not RawDataElement or elem.length == UNDEFINED_LENGTH:
            continue
        length, value, vr = elem.length, elem.value, elem.VR
        if length & 1 or (value is not None and len(value) < length) or length % _VR_WIDTH.get(vr, 1):
            return False
        if vr in _VR_MAX_VALUE and _too_long(elem):
            return False
    return True


def _raise_first_fault(elements: list[Any], path: Path) -> None:
    previous = -1
    for elem in elements:
        tag = int(elem.tag)
        if tag <= previous:
            raise DicomRejectedError(
                path,
                f"bad element length: element {elem.tag} follows ({previous >> 16:04X},"
                f"{previous & 0xFFFF:04X}) out of order, so an earlier length is corrupt.",
            )
        previous = tag
        if type(elem) is RawDataElement and elem.length != UNDEFINED_LENGTH:
            _check_defined(elem, path)


def _check_end(last_end: int, size: int, path: Path) -> None:
    if last_end > size:
        raise DicomRejectedError(
            path, f"the file is truncated: it ends {last_end - size} bytes inside its last element."
        )
    if last_end < size:
        # pydicom stops quietly at a partial element header; the leftover bytes tell.
        raise DicomRejectedError(
            path, f"the file is truncated: {size - last_end} bytes after the last element do not form an element."
        )


def _check_defined(elem: RawDataElement, path: Path) -> None:
    if elem.length & 1:
        raise DicomRejectedError(path, f"bad element length: element {elem.tag} has odd length {elem.length}.")
    width = _VR_WIDTH.get(elem.VR, 1) if elem.VR else 1
    if elem.length % width:
        raise DicomRejectedError(
            path,
            f"bad element length: element {elem.tag} ({elem.VR}) has length {elem.length}, not a multiple of {width}.",
        )
    if elem.value is not None and len(elem.value) < elem.length:
        raise DicomRejectedError(
            path,
            f"the file is truncated: element {elem.tag} declares {elem.length} bytes but only "
            f"{len(elem.value)} remain.",
        )
    if _too_long(elem):
        raise DicomRejectedError(
            path,
            f"bad element length: element {elem.tag} ({elem.VR}) holds a value longer than the "
            f"{_VR_MAX_VALUE[str(elem.VR)]} bytes its VR allows.",
        )


def _too_long(elem: RawDataElement) -> bool:
    limit = _VR_MAX_VALUE.get(elem.VR) if elem.VR else None
    if limit is None or not isinstance(elem.value, bytes):
        return False
    return max(len(v) for v in elem.value.split(b"\\")) > limit


def _check_delimited(elem: RawDataElement, path: Path, data: bytes | None) -> int | None:
    if data is None or not isinstance(elem.value, bytes):
        return None
    end = int(elem.value_tell) + len(elem.value)
    fmt = "<HH" if elem.is_little_endian else ">HH"
    if data[end : end + 4] != struct.pack(fmt, *_SEQUENCE_DELIMITER):
        raise DicomRejectedError(
            path, f"the file is truncated: element {elem.tag} of undefined length ends before its sequence delimiter."
        )
    return end + 8
