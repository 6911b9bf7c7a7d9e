"""How deeply a DICOM file's sequences nest, measured on its bytes with a loop, never by recursion.

pydicom reads, copies and writes nested sequences by recursion. Measured with pydicom 3.0.2 on a
file whose sequences nest 250 levels deep with defined lengths: it reads without complaint
(defined-length sequences are parsed lazily, one level per access), and de-identifying it then
grew the process past 24 GB of memory in 100 s; with undefined lengths the read itself fails
with a RecursionError from about 200 levels. No real object nests more than a few levels (a
structured report's content tree is the deepest, rarely past 10), so a file nested deeper than
:data:`MAX_SEQUENCE_DEPTH` is refused before pydicom parses it: by the ingest gate and by
de-identification alike.

The walk follows PS3.5 7.5: a sequence holds items; each is closed by its defined length or by a
delimiter. An element whose explicit VR is SQ, an undefined-length element other than
encapsulated pixel data, and a defined-length UN or implicit-VR value that opens with an item
tag are walked as sequences (pydicom parses such UN values as sequences too). Where the stream
stops making sense, the walk stops and returns the depth reached: the strict parse that follows
refuses a damaged file with its own reason.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, NamedTuple

from pydicom.dataset import Dataset
from pydicom.uid import UID, AllTransferSyntaxes, PrivateTransferSyntaxes

from core.imaging.structure import UNDEFINED_LENGTH

__all__ = ["MAX_SEQUENCE_DEPTH", "dataset_depth", "depth_refusal", "sequence_depth"]

#: The deepest nesting of sequences Vigil ingests or de-identifies (a top-level sequence's items are level 1).
MAX_SEQUENCE_DEPTH: Final = 64

# Past this many levels the walk stops counting: the file is refused anyway, and the stack of
# open sequences stays a few hundred kilobytes whatever the file holds.
_COUNT_LIMIT: Final = 10_000
_PREFIX_END: Final = 132
_ITEM: Final = 0xE000
_ITEM_DELIMITER: Final = 0xE00D
_SEQUENCE_DELIMITER: Final = 0xE0DD
_DELIMITER_GROUP: Final = 0xFFFE
_PIXEL_DATA: Final = (0x7FE0, 0x0010)
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS: Final = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_ENCAPSULATED_VRS: Final = frozenset({b"OB", b"OW"})
_ITEM_TAG_LE: Final = b"\xfe\xff\x00\xe0"
_ITEM_TAG_BE: Final = b"\xff\xfe\xe0\x00"


class _Open(NamedTuple):
    """A sequence or item the walk is inside."""

    end: int | None  # where its defined length ends; None when a delimiter closes it
    implicit: bool  # how the elements inside it are encoded
    little: bool
    is_sequence: bool  # a sequence (counts one level) or one of its items


def sequence_depth(data: bytes) -> int:
    """The deepest nesting of sequences in a DICOM Part 10 file, counted without recursion.

    Parameters
    ----------
    data : bytes
        The whole file (a deflated data set is inflated first, as pydicom would).

    Returns
    -------
    int
        0 for a file without sequences (or not a Part 10 file: the parse that follows says so),
        1 when sequences hold no sequences, and so on; counting stops past 10,000.

    Examples
    --------
    >>> sequence_depth(b"not DICOM")
    0
    """
    start, text = _data_set_start(data)
    if start is None or text not in (*AllTransferSyntaxes, *PrivateTransferSyntaxes):
        return 0  # no data set, or a transfer syntax pydicom does not know: the strict parse refuses it
    syntax, stream = UID(text), data[start:]
    if syntax.is_deflated:
        try:
            stream = zlib.decompress(stream, -zlib.MAX_WBITS)
        except zlib.error:
            return 0  # damaged: the strict parse names the fault
    return _deepest(stream, implicit=syntax.is_implicit_VR, little=syntax.is_little_endian)


def dataset_depth(ds: Dataset) -> int:
    """The deepest nesting of sequences in a parsed data set, counted with a work list, not recursion.

    Each sequence is converted one level at a time (pydicom parses a defined-length sequence only
    when it is first read), so this stays shallow on the call stack however deep ``ds`` nests.

    Returns
    -------
    int
        As :func:`sequence_depth`.
    """
    deepest = 0
    todo: list[tuple[Dataset, int]] = [(ds, 0)]
    while todo and deepest <= _COUNT_LIMIT:
        current, level = todo.pop()
        for tag in list(current.keys()):
            elem = current[tag]
            if elem.VR == "SQ":
                deepest = max(deepest, level + 1)
                todo.extend((item, level + 1) for item in elem.value)
    return deepest


def depth_refusal(depth: int) -> str | None:
    """One sentence refusing a nesting ``depth`` deeper than :data:`MAX_SEQUENCE_DEPTH`; None when it is allowed.

    Examples
    --------
    >>> depth_refusal(3) is None
    True
    """
    if depth <= MAX_SEQUENCE_DEPTH:
        return None
    levels = f"more than {_COUNT_LIMIT}" if depth > _COUNT_LIMIT else str(depth)
    return (
        f"its sequences nest {levels} levels deep; Vigil reads at most {MAX_SEQUENCE_DEPTH} "
        "(deeper nesting is refused: reading and writing it would recurse once per level)."
    )


def _data_set_start(data: bytes) -> tuple[int | None, str]:
    """Walk the file meta group (always explicit VR little endian) to the data set and its transfer syntax."""
    if data[_PREFIX_END - 4 : _PREFIX_END] != b"DICM":
        return None, ""
    pos, syntax = _PREFIX_END, ""
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            return pos, syntax
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if element == 0x0010:
            syntax = data[pos : pos + length].decode("ascii", "replace").strip("\x00 ")
        pos += length
    return None, syntax


def _deepest(buf: bytes, *, implicit: bool, little: bool) -> int:
    """The loop: one element or item header per turn, a stack of what is open, never a call deeper."""
    stack: list[_Open] = []
    depth = deepest = pos = 0
    while depth <= _COUNT_LIMIT:
        while stack and stack[-1].end is not None and pos >= stack[-1].end:
            depth -= stack.pop().is_sequence
        if pos + 8 > len(buf):
            break
        inside = stack[-1] if stack else _Open(None, implicit, little, False)
        order = "<" if inside.little else ">"
        group, element = struct.unpack_from(order + "HH", buf, pos)
        if group == _DELIMITER_GROUP:
            (length,) = struct.unpack_from(order + "L", buf, pos + 4)
            pos += 8
            if not _delimiter(stack, element, length, pos, inside):
                break
            if element == _SEQUENCE_DELIMITER:
                depth -= 1
            continue
        header = _element_header(buf, pos, inside)
        if header is None:
            break
        vr, length, value_at = header
        if length == UNDEFINED_LENGTH and ((group, element) == _PIXEL_DATA or vr in _ENCAPSULATED_VRS):
            pos = _after_fragments(buf, value_at, order)
            continue
        opened = _opened_sequence(buf, vr, length, value_at, inside)
        if opened is not None:
            stack.append(opened)
            depth += 1
            deepest = max(deepest, depth)
            pos = value_at
        else:
            pos = value_at + length
    return deepest


def _delimiter(stack: list[_Open], element: int, length: int, pos: int, inside: _Open) -> bool:
    """Open an item or close an item or sequence; False when the stream stops making sense."""
    if element == _ITEM and stack and inside.is_sequence:
        end = None if length == UNDEFINED_LENGTH else pos + length
        stack.append(_Open(end, inside.implicit, inside.little, False))
        return True
    closes = element == _ITEM_DELIMITER and not inside.is_sequence
    closes = closes or (element == _SEQUENCE_DELIMITER and inside.is_sequence)
    if closes and stack and inside.end is None:
        stack.pop()
        return True
    return False


def _element_header(buf: bytes, pos: int, inside: _Open) -> tuple[bytes | None, int, int] | None:
    """(explicit VR or None, value length, where the value starts), None past the end."""
    order = "<" if inside.little else ">"
    if inside.implicit:
        (length,) = struct.unpack_from(order + "L", buf, pos + 4)
        return None, length, pos + 8
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            return None
        (length,) = struct.unpack_from(order + "L", buf, pos + 8)
        return vr, length, pos + 12
    (length,) = struct.unpack_from(order + "H", buf, pos + 6)
    return vr, length, pos + 8


def _opened_sequence(buf: bytes, vr: bytes | None, length: int, value_at: int, inside: _Open) -> _Open | None:
    """The sequence an element (not encapsulated pixel data) opens, or None when its value is not one."""
    undefined = length == UNDEFINED_LENGTH
    end = None if undefined else value_at + length
    if vr == b"SQ":
        return _Open(end, inside.implicit, inside.little, True)
    if vr == b"UN" or vr is None:
        # A UN value holding a sequence is implicit VR little endian (PS3.5 6.2.2).
        little = True if vr == b"UN" else inside.little
        item_tag = _ITEM_TAG_LE if little else _ITEM_TAG_BE
        if undefined or buf[value_at : value_at + 4] == item_tag:
            return _Open(end, True, little, True)
    return None


def _after_fragments(buf: bytes, pos: int, order: str) -> int:
    """Skip the items of encapsulated pixel data (their contents are bytes, never elements)."""
    while pos + 8 <= len(buf):
        group, element, length = struct.unpack_from(order + "HHL", buf, pos)
        pos += 8
        if (group, element) != (_DELIMITER_GROUP, _ITEM):
            return pos  # the sequence delimiter, or damage the strict parse will name
        pos += length
    return len(buf)
