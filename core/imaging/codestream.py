"""Whether an encapsulated frame holds the kind of codestream its transfer syntax names.

A compressed file states its encoding twice, independently: the Transfer Syntax UID in the file
meta, and the codestream itself in the pixel data. Nothing ties the two together. A decoder handed
the wrong kind of stream fails with an opaque message, or worse, decodes it anyway: pydicom's
fallback to Pillow turns a JPEG 2000 codestream labelled JPEG Baseline into values that have
nothing to do with the image. The first bytes of the first fragment settle which kind it is, and
its main header states the frame's size; a few dozen bytes are read whatever the image's size.

- JPEG (ISO 10918) and JPEG-LS (ISO 14495-1) both open with SOI (``FF D8``) and differ in their
  start-of-frame marker: SOF55 (``FF F7``) for JPEG-LS, SOF0 to SOF15 for JPEG.
- JPEG 2000 (ISO 15444) is a bare codestream, SOC then SIZ (``FF 4F FF 51``), or a JP2 file that
  opens with the signature box ``00 00 00 0C 6A 50 20 20`` and holds the codestream in a
  ``jp2c`` box.
- RLE (PS3.5 G.3) opens with a 64-byte header: the number of segments (1 to 15), then their
  offsets, the first of which is 64.

Before any of that, the pixel data must be encapsulated (undefined length, in items) exactly when
the transfer syntax is a compressed one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)

__all__ = ["Codestream", "FrameHeader", "codestream_mismatch", "expected_codestream", "first_fragment", "frame_header"]


class Codestream(StrEnum):
    """The kinds of compressed stream DICOM encapsulates, named as a reason names them."""

    JPEG = "JPEG"
    JPEG_LS = "JPEG-LS"
    JPEG_2000 = "JPEG 2000"
    RLE = "RLE"


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What the main header of one frame's codestream says.

    Attributes
    ----------
    kind : Codestream or None
        ``None`` for a stream that opens with SOI but whose start-of-frame marker was not found
        in the first fragment, so that JPEG and JPEG-LS cannot be told apart.
    rows, columns, samples : int or None
        The frame's size and number of components, where the header states them (not for RLE,
        nor rows for a JPEG frame whose height a later DNL marker gives).
    """

    kind: Codestream | None
    rows: int | None = None
    columns: int | None = None
    samples: int | None = None


_BY_SYNTAX: Final = {
    **dict.fromkeys(JPEGTransferSyntaxes, Codestream.JPEG),
    **dict.fromkeys(JPEGLSTransferSyntaxes, Codestream.JPEG_LS),
    **dict.fromkeys(JPEG2000TransferSyntaxes, Codestream.JPEG_2000),
    **dict.fromkeys(RLETransferSyntaxes, Codestream.RLE),
}

_ITEM: Final = (0xFFFE, 0xE000)
_SOI: Final = b"\xff\xd8"
_J2K_SOC_SIZ: Final = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE: Final = b"\x00\x00\x00\x0cjP  "
_SOF55: Final = 0xF7
# SOF0-SOF15 minus DHT (C4), JPG (C8) and DAC (CC), which share the range but are not frames.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM and RST0-RST7.
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS: Final = 0xDA
# Headers put a handful of segments (APPn, COM, DQT, DHT, LSE) before the frame; a walk that
# finds none after this many is lost in damaged data and gives up rather than guess.
_MAX_SEGMENTS: Final = 64
_MAX_BOXES: Final = 16
_RLE_HEADER: Final = 64


def expected_codestream(syntax: str) -> Codestream | None:
    """The kind of codestream a transfer syntax encapsulates, or ``None`` for native and unknown ones."""
    return _BY_SYNTAX.get(syntax)


def first_fragment(pixel_data: bytes) -> memoryview | None:
    """The first fragment of encapsulated pixel data, after its Basic Offset Table item.

    Parameters
    ----------
    pixel_data : bytes
        The value of an encapsulated Pixel Data element (its items, PS3.5 A.4).

    Returns
    -------
    memoryview or None
        A view on the fragment, cut short where the buffer ends; ``None`` when the items are not
        where PS3.5 A.4 puts them (pydicom's frame reader then names the fault).
    """
    view = memoryview(pixel_data)
    table = _item_length(view, 0)
    if table is None:
        return None
    start = 8 + table
    length = _item_length(view, start)
    if length is None:
        return None
    return view[start + 8 : start + 8 + length]


def frame_header(fragment: memoryview) -> FrameHeader | None:
    """Identify the codestream a frame's first fragment opens and read its main header.

    Returns
    -------
    FrameHeader or None
        ``None`` when the bytes open none of the codestreams DICOM encapsulates.
    """
    head = bytes(fragment[:8])
    if head.startswith(_J2K_SOC_SIZ):
        return _j2k_header(fragment, 0)
    if head == _JP2_SIGNATURE:
        return _jp2_header(fragment)
    if head.startswith(_SOI):
        return _jpeg_header(fragment)
    if _looks_like_rle(fragment):
        return FrameHeader(Codestream.RLE)
    return None


def codestream_mismatch(
    syntax: str, pixel_data: bytes, *, encapsulated: bool, rows: int, columns: int, samples: int
) -> str | None:
    """Say why a frame's codestream does not fit its transfer syntax or image size, if it does not.

    Parameters
    ----------
    syntax : str
        The Transfer Syntax UID.
    pixel_data : bytes
        The raw value of the Pixel Data element; only its first few hundred bytes are read.
    encapsulated : bool
        Whether the element has undefined length, as encapsulated (compressed) pixel data has.
    rows, columns, samples : int
        Rows, Columns and Samples per Pixel from the dataset.

    Returns
    -------
    str or None
        One sentence naming the mismatch, or ``None`` when the stream is the kind the syntax names
        and its header states the dataset's size (or the syntax is not a compressed one).
    """
    uid = UID(syntax)
    if not uid.is_transfer_syntax:
        return None
    label = f"{uid.name} ({uid})"
    if encapsulated != uid.is_encapsulated:
        found, kind = ("encapsulated", "uncompressed") if encapsulated else ("not encapsulated", "compressed")
        return f"the pixel data is {found} but the transfer syntax says {label}, which is {kind}."
    expected = expected_codestream(uid)
    fragment = first_fragment(pixel_data) if expected is not None else None
    if expected is None or fragment is None:
        return None
    header = frame_header(fragment)
    if header is None:
        opening = f"starts {bytes(fragment[:4]).hex(' ').upper()}" if len(fragment) else "is empty"
        return (
            f"the pixel data is not {_article(expected)} {expected} codestream (its first fragment {opening}) "
            f"but the transfer syntax says {label}."
        )
    if header.kind is None and expected in (Codestream.JPEG, Codestream.JPEG_LS):
        return None  # SOI, frame marker not in reach: the decoder decides
    if header.kind is not expected:
        found = "a JPEG-family" if header.kind is None else f"{_article(header.kind)} {header.kind}"
        return f"the pixel data is {found} codestream but the transfer syntax says {label}."
    return _size_mismatch(header, rows=rows, columns=columns, samples=samples)


def _article(kind: Codestream) -> str:
    return "an" if kind is Codestream.RLE else "a"


def _size_mismatch(header: FrameHeader, *, rows: int, columns: int, samples: int) -> str | None:
    stated = (header.rows, header.columns, header.samples)
    wanted = (rows, columns, samples)
    if all(got is None or got == want for got, want in zip(stated, wanted, strict=True)):
        return None
    shown = " × ".join("?" if got is None else str(got) for got in stated)
    return (
        f"the {header.kind} codestream holds a frame of {shown} (rows × columns × components), not the "
        f"{rows} × {columns} × {samples} that Rows, Columns and SamplesPerPixel state."
    )


def _item_length(view: memoryview, pos: int) -> int | None:
    if pos + 8 > len(view):
        return None
    group, element, length = struct.unpack_from("<HHL", view, pos)
    return int(length) if (group, element) == _ITEM else None


def _j2k_header(stream: memoryview, start: int) -> FrameHeader:
    # SIZ (ISO 15444-1 A.5.1): Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, four tile fields, Csiz.
    if start + 42 > len(stream):
        return FrameHeader(Codestream.JPEG_2000)
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">4L", stream, start + 8)
    (csiz,) = struct.unpack_from(">H", stream, start + 40)
    return FrameHeader(Codestream.JPEG_2000, rows=ysiz - yosiz, columns=xsiz - xosiz, samples=csiz)


def _jp2_header(stream: memoryview) -> FrameHeader:
    # Top-level boxes (ISO 15444-1 I.4): the codestream is the content of the 'jp2c' box.
    pos = 0
    for _ in range(_MAX_BOXES):
        if pos + 8 > len(stream):
            break
        length, kind = struct.unpack_from(">L4s", stream, pos)
        header = 8
        if length == 1 and pos + 16 <= len(stream):
            (length,) = struct.unpack_from(">Q", stream, pos + 8)
            header = 16
        if kind == b"jp2c":
            content = pos + header
            if bytes(stream[content : content + 4]) == _J2K_SOC_SIZ:
                return _j2k_header(stream, content)
            break
        if length < header:  # 0 means "to the end", and only the last box may say it
            break
        pos += length
    return FrameHeader(Codestream.JPEG_2000)


def _jpeg_header(stream: memoryview) -> FrameHeader:
    # Walk the marker segments after SOI (ISO 10918-1 B.1.1) to the first start-of-frame.
    pos = 2
    for _ in range(_MAX_SEGMENTS):
        if pos + 4 > len(stream) or stream[pos] != 0xFF:
            break
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_SOF or marker == _SOF55:
            return _sof_header(stream, pos, marker)
        if marker == _SOS:
            break  # scan data before any frame header: not a stream anyone can decode
        pos += 2 if marker in _STANDALONE else 2 + int.from_bytes(stream[pos + 2 : pos + 4], "big")
    return FrameHeader(None)


def _sof_header(stream: memoryview, pos: int, marker: int) -> FrameHeader:
    kind = Codestream.JPEG_LS if marker == _SOF55 else Codestream.JPEG
    # SOFn and SOF55 share a layout: Lf, P, Y, X, Nf (ISO 10918-1 B.2.2, ISO 14495-1 C.2.2).
    if pos + 10 > len(stream):
        return FrameHeader(kind)
    height, width = struct.unpack_from(">HH", stream, pos + 5)
    # Y = 0 means the height comes later, in a DNL marker.
    return FrameHeader(kind, rows=height or None, columns=width, samples=stream[pos + 9])


def _looks_like_rle(stream: memoryview) -> bool:
    if len(stream) < _RLE_HEADER:
        return False
    segments, first = struct.unpack_from("<2L", stream, 0)
    return bool(1 <= segments <= 15 and first == _RLE_HEADER)
