"""A seeded mutation corpus of the committed sample files, run through the ingest gate.

The bases are sample_data files (JPEG 2000, JPEG-LS, deflated) and re-encodings of one of them
(native explicit and implicit VR, RLE). Each is mutated in memory: cut at many offsets, bit-flipped
in the header and in the pixel data, relabelled with other transfer syntax UIDs, and given huge
element lengths. Every mutant is written under ``tmp_path``; nothing generated is committed. The
seed is fixed, so a failure names a mutant that can be rebuilt.

The invariants: nothing but DicomRejectedError escapes; every rejection is one non-empty sentence;
every accepted mutant decodes to (Rows, Columns) stored values that Bits Stored can hold; a cut
inside the pixel data is called truncation; and a relabelled file is either refused or decodes to
exactly its original pixels (never to a decoder's guess).
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from core.errors import DicomRejectedError
from core.imaging.dicom import dataset_from_bytes
from core.imaging.gate import AcceptedInstance, check_file
from core.imaging.pixels import stored_pixels, stored_value_range

SEED = 20250611
SAMPLES = Path(__file__).resolve().parents[3] / "sample_data" / "dicom"

# Relabelling targets: every family, native and deflated, a syntax nothing decodes, and non-UIDs.
SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    RLELossless,
    "1.2.840.10008.1.2.4.100",
    "1.2.3.4",
    "",
)
HUGE_LONG = (0xFFFFFFF0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x00100000)
HUGE_SHORT = (0xFFFF, 0xFFF0, 0x8000)
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})

Mutant = tuple[str, bytes]


# --- the bases -----------------------------------------------------------------------------------


def _first(site: str) -> bytes:
    return sorted((SAMPLES / site).glob("*.dcm"))[0].read_bytes()


def _reencoded(syntax: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_first("riverside")))
    ds.decompress()
    if syntax == RLELossless:
        ds.compress(RLELossless)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


BASES: dict[str, Callable[[], bytes]] = {
    "j2k": lambda: _first("riverside"),
    "jpeg-ls": lambda: _first("eastgate"),
    "deflated": lambda: _first("benchmark"),
    "native": lambda: _reencoded(ExplicitVRLittleEndian),
    "implicit": lambda: _reencoded(ImplicitVRLittleEndian),
    "rle": lambda: _reencoded(RLELossless),
}


@cache
def _base(name: str) -> bytes:
    return BASES[name]()


@cache
def _base_stored(name: str) -> np.ndarray:
    """The base's stored values, as the gate decodes them."""
    return np.array(stored_pixels(dataset_from_bytes(_base(name), Path(name))))


@cache
def _layout(name: str) -> tuple[int | None, list[tuple[int, int]]]:
    """Where the pixel data's value starts, and the (offset, width) of length fields to inflate.

    Offsets inside a deflated data set are not file offsets, so a deflated base gives only its
    file meta group length.
    """
    data = _base(name)
    fields = [(140, 4)]
    ds = pydicom.dcmread(io.BytesIO(data))
    if ds.file_meta.TransferSyntaxUID.is_deflated:
        return None, fields
    implicit = ds.file_meta.TransferSyntaxUID.is_implicit_VR
    for elem in ds.values():
        if type(elem) is RawDataElement and elem.value_tell:
            wide = implicit or str(elem.VR) in LONG_VRS
            fields.append((int(elem.value_tell) - (4 if wide else 2), 4 if wide else 2))
    pixel = ds.get_item("PixelData")
    start = int(pixel.value_tell)
    if pixel.length == 0xFFFFFFFF:  # the offset table's and the first fragment's item lengths
        (table,) = struct.unpack_from("<L", data, start + 4)
        fields += [(start + 4, 4), (start + 12 + table, 4)]
    return start, fields


# --- the mutations -------------------------------------------------------------------------------


def _truncations(name: str, rng: random.Random) -> list[Mutant]:
    data = _base(name)
    pixel_start, _ = _layout(name)
    cuts = set(rng.sample(range(len(data)), 40))
    if pixel_start is not None:
        cuts |= {pixel_start, pixel_start + 4, pixel_start + 9, len(data) - 1, len(data) - 8}
        cuts |= set(rng.sample(range(pixel_start, len(data)), 12))
    return [(f"cut at {cut}", data[:cut]) for cut in sorted(cuts)]


def _flips(data: bytes, rng: random.Random, low: int, high: int, count: int) -> list[Mutant]:
    mutants = []
    for _ in range(count):
        pos, bit = rng.randrange(low, high), rng.randrange(8)
        flipped = bytearray(data)
        flipped[pos] ^= 1 << bit
        mutants.append((f"bit {bit} of byte {pos} flipped", bytes(flipped)))
    return mutants


def _header_flips(name: str, rng: random.Random) -> list[Mutant]:
    data = _base(name)
    pixel_start, _ = _layout(name)
    return _flips(data, rng, 128, pixel_start or len(data), 60)


def _pixel_flips(name: str, rng: random.Random) -> list[Mutant]:
    data = _base(name)
    pixel_start, _ = _layout(name)
    # In a deflated file every flip after the file meta lands in the compressed data set.
    meta_end = 144 + struct.unpack_from("<L", data, 140)[0]
    return _flips(data, rng, pixel_start or meta_end, len(data), 30)


def _relabelled(name: str, rng: random.Random) -> list[Mutant]:
    return [(f"transfer syntax {uid!r}", _with_transfer_syntax(_base(name), uid)) for uid in SYNTAXES]


def _huge_lengths(name: str, rng: random.Random) -> list[Mutant]:
    data = _base(name)
    _, fields = _layout(name)
    # The group length, the last two fields (pixel data items, where encapsulated), and a sample.
    middle = fields[1:-2]
    chosen = list(dict.fromkeys([fields[0], *fields[-2:], *rng.sample(middle, min(12, len(middle)))]))
    mutants = []
    for offset, width in chosen:
        value = rng.choice(HUGE_LONG if width == 4 else HUGE_SHORT)
        patched = data[:offset] + value.to_bytes(width, "little") + data[offset + width :]
        mutants.append((f"length at {offset} set to {value:#x}", patched))
    return mutants


def _with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """Rewrite (0002,0010) in the raw file meta, leaving the data set's bytes as they are."""
    at = data.index(b"\x02\x00\x10\x00UI", 132)
    (old_length,) = struct.unpack_from("<H", data, at + 6)
    value = uid.encode() + b"\x00" * (len(uid) % 2)
    (group_length,) = struct.unpack_from("<L", data, 140)
    meta = data[:140] + struct.pack("<L", group_length + len(value) - old_length) + data[144:at]
    return meta + data[at : at + 6] + struct.pack("<H", len(value)) + value + data[at + 8 + old_length :]


MUTATIONS: dict[str, Callable[[str, random.Random], list[Mutant]]] = {
    "truncation": _truncations,
    "header bit flip": _header_flips,
    "pixel bit flip": _pixel_flips,
    "transfer syntax": _relabelled,
    "huge length": _huge_lengths,
}


# --- the invariants ------------------------------------------------------------------------------


def _verdict(path: Path) -> AcceptedInstance | str:
    try:
        return check_file(path)
    except DicomRejectedError as rejection:
        return rejection.reason


def _broken_invariant(name: str, kind: str, label: str, path: Path) -> str | None:
    """Run one mutant through the gate; say which invariant it breaks, if any."""
    try:
        verdict = _verdict(path)
    except BaseException as exc:  # noqa: B036 - a Rust panic (pyo3) is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return f"{type(exc).__name__} escaped the gate: {exc}"
    if isinstance(verdict, str):
        return _bad_reason(verdict, kind, label, name)
    return _bad_acceptance(verdict, kind, name)


def _bad_reason(reason: str, kind: str, label: str, name: str) -> str | None:
    if not reason.strip() or not reason.endswith(".") or not reason.isprintable() or "Traceback" in reason:
        return f"not one sentence: {reason!r}"
    pixel_start, _ = _layout(name)
    if kind == "truncation" and pixel_start is not None:
        cut = int(label.split()[-1])
        if cut >= pixel_start and "truncated" not in reason:
            return f"a cut inside the pixel data is not called truncation: {reason!r}"
    return None


def _bad_acceptance(accepted: AcceptedInstance, kind: str, name: str) -> str | None:
    ds = dataset_from_bytes(accepted.data, accepted.path)
    stored = stored_pixels(ds)
    rows, columns = int(ds.Rows), int(ds.Columns)
    if stored.shape != (rows, columns) or accepted.image.pixels.shape != (rows, columns):
        return f"accepted with shape {stored.shape}, not (Rows, Columns) = ({rows}, {columns})"
    low, high = stored_value_range(int(ds.BitsStored), signed=int(ds.PixelRepresentation) == 1)
    if stored.size and (int(stored.min()) < low or int(stored.max()) > high):
        return f"accepted with values {stored.min()}..{stored.max()} outside {low}..{high}"
    if not np.isfinite(accepted.image.pixels).all():
        return "accepted with non-finite pixels"
    if kind == "transfer syntax" and not np.array_equal(stored, _base_stored(name)):
        return "a relabelled file was accepted with pixels that differ from its original's"
    return None


@pytest.mark.parametrize("kind", list(MUTATIONS))
@pytest.mark.parametrize("name", list(BASES))
def test_mutants_are_refused_with_a_sentence_or_accepted_sound(tmp_path: Path, name: str, kind: str) -> None:
    # Prepare: a generator seeded by the corpus seed, the base and the mutation (str seeds are stable)
    rng = random.Random(f"{SEED}/{name}/{kind}")
    mutants = MUTATIONS[kind](name, rng)
    path = tmp_path / "mutant.dcm"

    # Execute
    failures = []
    for label, data in mutants:
        path.write_bytes(data)
        broken = _broken_invariant(name, kind, label, path)
        if broken is not None:
            failures.append(f"{name}, {label}: {broken}")

    # Assert
    assert mutants
    assert not failures, f"{len(failures)} of {len(mutants)} mutants:\n" + "\n".join(failures[:10])


def test_the_bases_pass_the_gate(tmp_path: Path) -> None:
    # Assert: a mutant is only informative if its original is accepted
    for name in BASES:
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(_base(name))
        assert isinstance(check_file(path), AcceptedInstance), name
