"""Structural checks on a parsed element stream: truncation and bad element lengths.

pydicom is lenient on purpose: a file that ends inside a value yields a short value, a
corrupted length makes it parse the following bytes as garbage elements, and neither raises
(not even with ``reading_validation_mode = RAISE``, which only validates values lazily and is a
process-wide setting). The rules of PS3.5 7.1 that a damaged stream breaks are checked here
on the raw, unconverted elements, which costs no value decoding.

Two rules are heuristics rather than proofs of damage: an odd length, and a text value longer
than its VR allows. Both catch corrupted lengths in public elements, but vendors break them in
honest files, in private elements (odd group numbers) that Vigil never reads. So private elements
are held to the rules that prove damage only: ascending order, whole fixed-size values, and values
as long as they declare.

pydicom also hides truncation in two places this module uncovers. A file cut inside its file meta
information yields short group 0002 values and misleading errors later; and an element of undefined
length that runs to the end of the file (encapsulated pixel data cut short) makes pydicom drop the
whole data set with only a warning, so that the file looked like one without pixel data.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from core.errors import DicomRejectedError

__all__ = [
    "UNDEFINED_LENGTH",
    "check_file_meta",
    "check_structure",
    "file_meta_end",
    "unclosed_element_reason",
]

#: Value length 0xFFFFFFFF: an undefined-length element closed by a delimiter item.
UNDEFINED_LENGTH: Final = 0xFFFFFFFF

# Bytes per value of the fixed-size VRs (PS3.5 Table 6.2-1); a length must be a multiple.
_VR_WIDTH: Final = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8, "SV": 8, "OW": 2, "OL": 4}
# Longest single value of VRs that are plain ASCII (PS3.5 Table 6.2-1). A corrupted length makes
# a value swallow the elements after it; these two VRs are rarely over-long in honest files.
_VR_MAX_VALUE: Final = {"UI": 64, "CS": 16}
_SEQUENCE_DELIMITER: Final = (0xFFFE, 0xE0DD)
_ITEM: Final = (0xFFFE, 0xE000)
# Bit 16 of a tag is the low bit of its group: set in private (odd) groups.
_PRIVATE_BIT: Final = 0x10000
# PS3.10 7.1: a 128-byte preamble, "DICM", then (0002,0000) UL of 4 bytes, explicit VR little endian.
_PREFIX_END: Final = 132
_GROUP_LENGTH_HEADER: Final = b"\x02\x00\x00\x00UL\x04\x00"
_META_START: Final = _PREFIX_END + len(_GROUP_LENGTH_HEADER) + 4
# (7FE0,0010) with VR OB or OW and undefined length, explicit VR little endian as every
# encapsulated transfer syntax is.
_PIXEL_DATA_HEADERS: Final = (
    b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",
    b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\xff",
)
_PIXEL_DATA: Final = "the encapsulated pixel data (7FE0,0010)"
_PIXEL_DATA_TAG: Final = 0x7FE00010


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
        Elements out of ascending tag order, an odd length or an over-long UI or CS value in a
        public element, a length that is not a multiple of its VR's size, a value shorter than its
        declared length, a missing sequence delimiter, or bytes after the last element that do
        not form an element.
    """
    elements = list(ds.values())  # file order, raw and unconverted; iterating ``ds`` would sort and convert
    if not _looks_sound(elements):
        # The whole-stream test is cheap but says nothing about where; walk to the first fault.
        _raise_first_fault(elements, path)
    raws = [e for e in elements if type(e) is RawDataElement]
    undefined = [e for e in raws if e.length == UNDEFINED_LENGTH]
    ends = [_check_delimited(e, path, data) for e in undefined]
    for elem in undefined:
        if int(elem.tag) == _PIXEL_DATA_TAG and isinstance(elem.value, bytes):
            _check_fragments(elem.value, path)
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
        if (value is not None and len(value) < length) or length % _VR_WIDTH.get(vr, 1):
            return False
        if tag & _PRIVATE_BIT:
            continue  # the heuristics below are for public elements only
        if length & 1 or (vr in _VR_MAX_VALUE and _too_long(elem)):
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
            path, f"the file is truncated: it ends {_bytes(last_end - size)} inside its last element."
        )
    if last_end < size:
        # pydicom stops quietly at a partial element header; the leftover bytes tell.
        raise DicomRejectedError(
            path,
            f"the file is truncated: {_bytes(size - last_end)} after the last element "
            f"{'does' if size - last_end == 1 else 'do'} not form an element.",
        )


def _check_fragments(value: bytes, path: Path) -> None:
    # The items of encapsulated pixel data (PS3.5 A.4) must tile the value exactly: pydicom finds
    # the value's end by searching for the delimiter, and reads an item that claims more bytes
    # than remain as "the rest", so a corrupt item length would otherwise pass unseen.
    pos, index = 0, 0
    while pos < len(value):
        name = "the basic offset table" if index == 0 else f"fragment {index}"
        group, element, length = struct.unpack_from("<HHL", value, pos) if pos + 8 <= len(value) else (0, 0, 0)
        if (group, element) != _ITEM:
            raise DicomRejectedError(
                path, f"bad element length: {_PIXEL_DATA} holds no item header where {name} should start."
            )
        if pos + 8 + length > len(value):
            raise DicomRejectedError(
                path,
                f"bad element length: {name} of {_PIXEL_DATA} declares {length} bytes but only "
                f"{len(value) - pos - 8} remain before its sequence delimiter.",
            )
        pos, index = pos + 8 + length, index + 1


def _bytes(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


def _check_defined(elem: RawDataElement, path: Path) -> None:
    public = not int(elem.tag) & _PRIVATE_BIT
    if public and elem.length & 1:
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
    if public and _too_long(elem):
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


def file_meta_end(data: bytes) -> int | None:
    """The offset where a Part 10 file's data set starts, from its File Meta Information Group Length.

    Returns
    -------
    int or None
        ``None`` when the file does not open with a preamble, ``DICM`` and a well-formed
        (0002,0000) element, which pydicom does not require either.
    """
    if data[_PREFIX_END - 4 : _PREFIX_END] != b"DICM" or len(data) < _META_START:
        return None
    if data[_PREFIX_END : _META_START - 4] != _GROUP_LENGTH_HEADER:
        return None
    (group_length,) = struct.unpack_from("<L", data, _META_START - 4)
    return _META_START + int(group_length)


def check_file_meta(data: bytes, path: Path) -> None:
    """Reject a Part 10 file that ends inside its file meta information.

    pydicom reads such a file without complaint: the last group 0002 value comes out short, and
    the failure surfaces later as an unknown transfer syntax or a non-image SOP class. The check
    reads 16 bytes.

    Raises
    ------
    DicomRejectedError
        The file ends before the end of the file meta information that its group length declares.
    """
    if data[_PREFIX_END - 4 : _PREFIX_END] != b"DICM":
        return  # not DICOM at all: pydicom says so
    end = file_meta_end(data)
    if end is None and len(data) < _META_START:
        raise DicomRejectedError(path, "the file is truncated: it ends inside its file meta information.")
    if end is not None and len(data) < end:
        raise DicomRejectedError(
            path,
            f"the file is truncated: it ends inside its file meta information, whose group length (0002,0000) "
            f"declares {end - _META_START} bytes where {len(data) - _META_START} remain.",
        )


def unclosed_element_reason(data: bytes, *, pixel_data_at: int | None) -> str | None:
    """Explain an empty data set in a file that goes on after its file meta information.

    pydicom drops every element of the data set, with only a warning, when an element of
    undefined length runs to the end of the file before its delimiter. When that element is the
    encapsulated pixel data, its items are walked (one header per fragment) to name the item the
    file ends in.

    Parameters
    ----------
    data : bytes
        The whole file.
    pixel_data_at : int, optional
        Where the Pixel Data element starts, if a read that stops before it found the data set.

    Returns
    -------
    str or None
        One sentence, or ``None`` when nothing follows the file meta information (an empty data
        set, not a truncated one) or the file meta information has no group length to tell.
    """
    meta_end = file_meta_end(data)
    if meta_end is None or len(data) <= meta_end:
        return None
    if pixel_data_at is not None and data[pixel_data_at : pixel_data_at + 12] in _PIXEL_DATA_HEADERS:
        return _fragments_shortfall(data, pixel_data_at + 12)
    return (
        "the file is truncated or damaged: an element of undefined length (a sequence or encapsulated "
        "pixel data) runs past the end of the file without its delimiter."
    )


def _fragments_shortfall(data: bytes, pos: int) -> str:
    # Items of encapsulated pixel data (PS3.5 A.4): the Basic Offset Table, then the fragments.
    index = 0
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHL", data, pos)
        name = "the basic offset table" if index == 0 else f"fragment {index}"
        if (group, element) != _ITEM:
            return (
                f"the file is truncated or damaged: {_PIXEL_DATA} has no sequence delimiter, and where "
                f"{name} should start there is the tag ({group:04X},{element:04X})."
            )
        if pos + 8 + length > len(data):
            return (
                f"the file is truncated: {name} of {_PIXEL_DATA} declares {length} bytes "
                f"but only {len(data) - pos - 8} remain."
            )
        pos, index = pos + 8 + length, index + 1
    if pos < len(data):
        return f"the file is truncated: it ends inside an item header of {_PIXEL_DATA}."
    if index == 0:
        return f"the file is truncated: it ends before the basic offset table of {_PIXEL_DATA}."
    fragments = max(index - 1, 0)
    return (
        f"the file is truncated: {_PIXEL_DATA} ends after {fragments} fragment{'' if fragments == 1 else 's'} "
        "without its sequence delimiter."
    )
