"""Attribute values as plain Python, read straight from the raw elements where that is safe.

pydicom converts a raw element through hooks and value validation, about 15 microseconds per
element; a header scan reads some 30 of them per file, which would double the cost of parsing.
ASCII values in a character set whose G0 is ASCII decode identically by hand, so they take a
fast path; anything else (escape sequences, ISO_IR 13, an element pydicom has already
converted) goes through pydicom. Malformed values read as absent instead of raising.
"""

from __future__ import annotations

import math
import struct
from functools import cache
from typing import Final

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

__all__ = ["AttributeReader", "first_float", "first_int", "numbers", "text", "texts"]

_BINARY_FORMATS: Final = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
# Text VRs that hold exactly one value, so a backslash in them is just a character.
_SINGLE_VALUE_VRS: Final = frozenset({"LT", "ST", "UT", "UR"})
_ESC: Final = 0x1B
_CHARSET_TAG: Final = Tag(0x00080005)


class AttributeReader:
    """Read the values of one dataset, deciding once whether its raw ASCII can be trusted.

    Parameters
    ----------
    ds : Dataset
        As returned by ``dcmread``; elements already converted are read through pydicom.
    """

    __slots__ = ("_ascii_ok", "_ds")

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._ascii_ok = _charset_keeps_ascii(ds)

    def present(self, keyword: str) -> bool:
        """Whether the dataset holds the attribute (possibly empty)."""
        return self._ds.get_item(_tag(keyword)) is not None

    def is_empty(self, keyword: str) -> bool:
        """Whether the attribute is absent, has no value, or only padding."""
        elem = self._ds.get_item(_tag(keyword))
        if elem is None:
            return True
        if type(elem) is RawDataElement:
            value = elem.value or b""
            # A binary zero is a value; only text is padded with spaces or NULs.
            return not value if _vr(elem) in _BINARY_FORMATS else not value.strip(b" \x00")
        return bool(elem.is_empty) or not str(elem.value).strip(" \x00")

    def text(self, keyword: str) -> str:
        """Read the value as one string (values joined by backslashes); ``""`` when absent."""
        return "\\".join(self._strings(keyword))

    def texts(self, keyword: str) -> tuple[str, ...]:
        """Read each value as a string; ``()`` when absent."""
        return tuple(self._strings(keyword))

    def numbers(self, keyword: str) -> list[float]:
        """Read every value as a finite float; ``[]`` when absent, malformed or not finite."""
        elem = self._ds.get_item(_tag(keyword))
        if type(elem) is RawDataElement and _vr(elem) in _BINARY_FORMATS:
            values = _unpack(elem)
        else:
            try:
                values = [float(v) for v in self._strings(keyword)]
            except ValueError:
                return []
        return values if all(math.isfinite(v) for v in values) else []

    def first_float(self, keyword: str) -> float | None:
        """Read the first value as a float, or ``None``."""
        values = self.numbers(keyword)
        return values[0] if values else None

    def first_int(self, keyword: str) -> int | None:
        """Read the first value as an int (truncated), or ``None``."""
        value = self.first_float(keyword)
        return int(value) if value is not None else None

    def _strings(self, keyword: str) -> list[str]:
        elem = self._ds.get_item(_tag(keyword))
        if elem is None:
            return []
        if type(elem) is RawDataElement and self._ascii_ok:
            value, vr = elem.value, _vr(elem)
            if type(value) is bytes and value.isascii() and _ESC not in value and vr not in _BINARY_FORMATS:
                return _split(value.decode("ascii"), vr)
        return _converted_strings(self._ds, keyword)


def text(ds: Dataset, keyword: str) -> str:
    """Read one value as a string (see :meth:`AttributeReader.text`)."""
    return AttributeReader(ds).text(keyword)


def texts(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """Read one attribute's values as strings (see :meth:`AttributeReader.texts`)."""
    return AttributeReader(ds).texts(keyword)


def numbers(ds: Dataset, keyword: str) -> list[float]:
    """Read one attribute's values as finite floats (see :meth:`AttributeReader.numbers`)."""
    return AttributeReader(ds).numbers(keyword)


def first_float(ds: Dataset, keyword: str) -> float | None:
    """Read one attribute's first value as a float, or ``None``."""
    return AttributeReader(ds).first_float(keyword)


def first_int(ds: Dataset, keyword: str) -> int | None:
    """Read one attribute's first value as an int, or ``None``."""
    return AttributeReader(ds).first_int(keyword)


@cache
def _tag(keyword: str) -> BaseTag:
    # Resolving a keyword costs more than reading a raw value; resolve each one once.
    return Tag(keyword)


def _charset_keeps_ascii(ds: Dataset) -> bool:
    charset = ds.get_item(_CHARSET_TAG)
    if charset is None:
        return True
    raw = charset.value if type(charset) is RawDataElement else str(charset.value).encode()
    # ISO_IR 13 (JIS X 0201) puts a yen sign and an overline where ASCII has \ and ~.
    return b"13" not in (raw or b"")


def _split(value: str, vr: str) -> list[str]:
    parts = [value] if vr in _SINGLE_VALUE_VRS else value.split("\\")
    stripped = [p.strip(" \x00") for p in parts]
    return [] if stripped == [""] else stripped


def _converted_strings(ds: Dataset, keyword: str) -> list[str]:
    try:
        value = ds.get(keyword)
    except Exception:  # pydicom raises many types for malformed values
        return []
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [v.decode("latin-1", errors="replace") if isinstance(v, bytes) else str(v).strip(" \x00") for v in items]


def _vr(elem: RawDataElement) -> str:
    if elem.VR:
        return str(elem.VR)
    try:
        return str(dictionary_VR(elem.tag))  # implicit VR files carry no VR
    except KeyError:
        return "UN"


def _unpack(elem: RawDataElement) -> list[float]:
    code = _BINARY_FORMATS[_vr(elem)]
    data = elem.value or b""
    size = struct.calcsize(code)
    order = "<" if elem.is_little_endian else ">"
    return [float(v) for v in struct.unpack(f"{order}{len(data) // size}{code}", data[: len(data) // size * size])]
