"""Strict reading of one DICOM file into :class:`DicomMeta` and :class:`DicomImage`.

Only single-frame greyscale images are decoded here; anything else raises
:class:`core.errors.DicomRejectedError` with one sentence naming the problem, so that no caller
ever receives a silently mangled study. Every pydicom failure is translated into that error.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID

from core.errors import DicomRejectedError
from core.imaging.codestream import codestream_mismatch
from core.imaging.image import DicomImage, DicomMeta
from core.imaging.pixels import decoding_plugin, stored_pixels, stored_value_range, values_outside
from core.imaging.structure import UNDEFINED_LENGTH, check_file_meta, check_structure, unclosed_element_reason
from core.imaging.values import AttributeReader, first_float, first_int, text
from core.types import FloatArray

__all__ = [
    "GREYSCALE",
    "read_dicom",
    "read_header",
    "dataset_from_bytes",
    "meta_from_dataset",
    "image_from_dataset",
    "has_pixel_data",
    "sop_class_label",
    "no_pixel_data_reason",
    "rejection_from_exception",
]

#: Photometric interpretations the single-frame greyscale pipeline can score.
GREYSCALE: Final = frozenset({"MONOCHROME1", "MONOCHROME2"})

# Single integers the decoder relies on; a malformed one would surface as a confusing decode error.
_INTEGER_KEYWORDS: Final = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "NumberOfFrames",
)
_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Bits Allocated of integer pixel data: bit-packed, or whole bytes (PS3.5 8.1.1; 64 is float only).
_BITS_ALLOCATED: Final = (1, 8, 16, 32)


def read_header(path: Path) -> DicomMeta:
    """Read the header of one DICOM file, stopping before the pixel data.

    Parameters
    ----------
    path : Path
        A DICOM Part 10 file (preamble and ``DICM`` prefix required).

    Returns
    -------
    DicomMeta
        The attributes Vigil reads; absent text is ``""``, absent numbers ``None`` (rows and
        columns ``0``).

    Raises
    ------
    DicomRejectedError
        The file is not DICOM or its header is damaged.
    """
    with _rejecting(path):
        ds = dcmread(path, stop_before_pixels=True, force=False)
        check_structure(ds, path, complete=False)
        return meta_from_dataset(ds)


def read_dicom(path: Path, *, sha256: str | None = None) -> DicomImage:
    """Read and decode one single-frame greyscale DICOM image.

    Parameters
    ----------
    path : Path
        A DICOM Part 10 file.
    sha256 : str, optional
        The SHA-256 the file's bytes must have (a cohort manifest's record of them), checked on
        the bytes that are then decoded.

    Returns
    -------
    DicomImage
        ``pixels`` is float32 of shape (rows, columns) in modality units (rescale slope and
        intercept, or the Modality LUT, applied); MONOCHROME1 pixels are negated so that higher
        always means brighter.

    Raises
    ------
    DicomRejectedError
        Not DICOM, truncated, damaged, no pixel data, undecodable, multi-frame or colour, or
        bytes whose SHA-256 is not ``sha256``.
    """
    with _rejecting(path):
        data = path.read_bytes()
        if sha256 is not None and (actual := hashlib.sha256(data).hexdigest()) != sha256.lower():
            raise DicomRejectedError(path, f"its SHA-256 is {actual}, not the {sha256} its manifest records.")
        return image_from_dataset(dataset_from_bytes(data, path), path)


def dataset_from_bytes(data: bytes, path: Path) -> Dataset:
    """Parse a whole DICOM Part 10 file already read into memory and check its structure.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    path : Path
        Names the file in errors; it is not read again.

    Raises
    ------
    DicomRejectedError
        The bytes are not DICOM, or are truncated or damaged (see ``core.imaging.structure``).
    """
    check_file_meta(data, path)
    with _rejecting(path):
        ds = dcmread(io.BytesIO(data), force=False)
    # Offsets in a deflated file refer to the inflated stream; zlib reports damage there.
    deflated = _parsed_syntax(ds, path).is_deflated
    if not deflated and len(ds) == 0:
        _reject_unclosed(data, path)
    check_structure(ds, path, data=None if deflated else data)
    return ds


def _parsed_syntax(ds: Dataset, path: Path) -> UID:
    # pydicom parses a data set whatever its file meta says, guessing the encoding of a missing or
    # unknown transfer syntax; a strict gate does not guess.
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise DicomRejectedError(path, "missing required attribute TransferSyntaxUID in the file meta information.")
    uid = UID(str(syntax))
    if not uid.is_transfer_syntax:
        raise DicomRejectedError(path, f"the transfer syntax UID {str(uid)[:64]!r} is not a transfer syntax.")
    return uid


def _reject_unclosed(data: bytes, path: Path) -> None:
    # pydicom returns an empty data set, with only a warning, when an element of undefined length
    # runs off the end of the file. Only then is the file read again, up to its pixel data, to
    # learn where that element starts; a sound file never pays for this.
    fp = io.BytesIO(data)
    with _rejecting(path):
        head = dcmread(fp, stop_before_pixels=True, force=False)
    reason = unclosed_element_reason(data, pixel_data_at=fp.tell() if len(head) else None)
    if reason is not None:
        raise DicomRejectedError(path, reason)


def meta_from_dataset(ds: Dataset) -> DicomMeta:
    """Copy the attributes Vigil reads out of a parsed dataset into plain Python values."""
    values = AttributeReader(ds)
    center, width = values.first_float("WindowCenter"), values.first_float("WindowWidth")
    return DicomMeta(
        sop_instance_uid=values.text("SOPInstanceUID"),
        sop_class_uid=values.text("SOPClassUID"),
        study_instance_uid=values.text("StudyInstanceUID"),
        series_instance_uid=values.text("SeriesInstanceUID"),
        modality=values.text("Modality"),
        body_part_examined=values.text("BodyPartExamined"),
        view_position=values.text("ViewPosition"),
        image_type=values.texts("ImageType"),
        manufacturer=values.text("Manufacturer"),
        manufacturer_model_name=values.text("ManufacturerModelName"),
        station_name=values.text("StationName"),
        institution_name=values.text("InstitutionName"),
        software_versions=values.text("SoftwareVersions"),
        protocol_name=values.text("ProtocolName"),
        patient_id=values.text("PatientID"),
        patient_age=values.text("PatientAge"),
        patient_sex=values.text("PatientSex"),
        kvp=values.first_float("KVP"),
        accession_number=values.text("AccessionNumber"),
        study_date=values.text("StudyDate"),
        rows=values.first_int("Rows") or 0,
        columns=values.first_int("Columns") or 0,
        pixel_spacing_mm=_spacing(values, "PixelSpacing"),
        photometric_interpretation=values.text("PhotometricInterpretation").upper(),
        bits_stored=values.first_int("BitsStored"),
        transfer_syntax_uid=_transfer_syntax(ds),
        # A window of width < 1 is undefined in PS3.3 C.11.2.1.2; treat it as absent.
        window_center=center if width is not None and width >= 1 else None,
        window_width=width if width is not None and width >= 1 else None,
        imager_pixel_spacing_mm=_spacing(values, "ImagerPixelSpacing"),
        pixel_spacing_calibration_type=values.text("PixelSpacingCalibrationType").upper(),
    )


def image_from_dataset(ds: Dataset, path: Path) -> DicomImage:
    """Decode the single greyscale frame of a parsed dataset.

    Parameters
    ----------
    ds : Dataset
        Parsed with its pixel data (see :func:`dataset_from_bytes`).
    path : Path
        Names the file in errors.

    Raises
    ------
    DicomRejectedError
        No pixel data, multi-frame, colour, an inconsistent Image Pixel module, a codestream of
        another kind or size than the header states, pixels that cannot be decoded, or decoded
        values that Bits Stored cannot hold.
    """
    meta = meta_from_dataset(ds)
    _check_scorable(ds, meta, path)
    _check_codestream(ds, meta, path)
    with _rejecting(path, while_doing="decoding the pixel data"):
        stored = _decode(ds, path)
        _check_stored_values(stored, ds, path)
        pixels = _to_modality_units(stored, ds)
    if pixels.shape != (meta.rows, meta.columns):
        raise DicomRejectedError(
            path, f"decoded pixels have shape {pixels.shape}, not (Rows, Columns) = ({meta.rows}, {meta.columns})."
        )
    if meta.photometric_interpretation == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; negating keeps modality spacing and the window width
        # while making higher mean brighter (core.imaging.window negates the file's centre to match).
        pixels = np.negative(pixels, out=pixels)
    return DicomImage(pixels=pixels, meta=meta)


def rejection_from_exception(
    path: Path, exc: Exception, *, while_doing: str = "reading the file"
) -> DicomRejectedError:
    """Turn an exception raised by pydicom or numpy into a one-sentence rejection.

    Known failures get a plain reason; anything else names the exception's class and message,
    so that nothing unexpected ever escapes the gate as a crash.
    """
    message = " ".join(str(exc).split())
    if isinstance(exc, InvalidDicomError):
        return DicomRejectedError(path, "not a DICOM file: no 128-byte preamble with the 'DICM' prefix was found.")
    damage = _damage_reason(exc, message, while_doing)
    if damage is not None:
        return DicomRejectedError(path, damage)
    if isinstance(exc, OSError):
        return DicomRejectedError(path, f"the file cannot be read ({type(exc).__name__}: {message}).")
    if "not a transfer syntax" in message:
        return DicomRejectedError(path, f"the pixel data cannot be decoded: unknown transfer syntax ({message}).")
    if isinstance(exc, NotImplementedError | RuntimeError) and while_doing.startswith("decoding"):
        return DicomRejectedError(path, f"the pixel data cannot be decoded ({type(exc).__name__}: {message}).")
    return DicomRejectedError(path, f"pydicom failed while {while_doing} ({type(exc).__name__}: {message}).")


def _damage_reason(exc: Exception, message: str, while_doing: str) -> str | None:
    # pydicom meets the end of the file as EOFError, as OSError("No tag to read at file position
    # ...") inside a sequence, or as struct.error in a 4-byte length cut short; it converts values
    # lazily, so a corrupt VR can surface only while decoding.
    parsing = while_doing == "reading the file"
    if (
        isinstance(exc, EOFError)
        or "less than expected" in message
        or "end of the file" in message
        or (parsing and (isinstance(exc, struct.error) or message.startswith("No tag to read")))
    ):
        return f"the file is truncated or has a bad element length ({message})."
    if isinstance(exc, zlib.error):
        if "truncated" in message:
            return f"the file is truncated: its deflated data set ends mid-stream ({message})."
        return f"the deflated data set is damaged and cannot be inflated ({message})."
    if isinstance(exc, NotImplementedError) and message.startswith("Unknown Value Representation"):
        return f"the file is damaged: an element has an unknown value representation ({message})."
    if "encapsulated pixel data" in message or "Basic Offset Table" in message:
        return f"the encapsulated pixel data is damaged ({message})."
    return None


@contextmanager
def _rejecting(path: Path, *, while_doing: str = "reading the file") -> Iterator[None]:
    # One choke point: inside core.imaging every pydicom failure becomes a DicomRejectedError.
    try:
        yield
    except DicomRejectedError:
        raise
    except Exception as exc:  # the gate must never crash on a hostile file
        raise rejection_from_exception(path, exc, while_doing=while_doing) from exc


def _check_scorable(ds: Dataset, meta: DicomMeta, path: Path) -> None:
    if not has_pixel_data(ds):
        raise DicomRejectedError(path, no_pixel_data_reason(ds))
    values = AttributeReader(ds)
    for keyword in _INTEGER_KEYWORDS:
        _check_integer(values, keyword, path)
    frames = first_int(ds, "NumberOfFrames") or 1
    if frames > 1:
        raise DicomRejectedError(
            path, f"multi-frame image ({frames} frames): the single-frame greyscale pipeline cannot score it."
        )
    if not meta.photometric_interpretation:
        raise DicomRejectedError(path, "missing required attribute PhotometricInterpretation.")
    samples = first_int(ds, "SamplesPerPixel") or 1
    if samples != 1 or meta.photometric_interpretation not in GREYSCALE:
        raise DicomRejectedError(
            path,
            f"colour image ({meta.photometric_interpretation}, {samples} samples per pixel): "
            "the single-frame greyscale pipeline cannot score it.",
        )
    if meta.rows <= 0 or meta.columns <= 0:
        raise DicomRejectedError(path, f"invalid image size Rows={meta.rows}, Columns={meta.columns}.")
    _check_bit_depths(values, path)


def _check_bit_depths(values: AttributeReader, path: Path) -> None:
    # pydicom checks these too, but only while decoding and in words about its own arguments.
    allocated, stored = values.first_int("BitsAllocated"), values.first_int("BitsStored")
    representation = values.first_int("PixelRepresentation")
    if allocated is not None and allocated not in _BITS_ALLOCATED:
        raise DicomRejectedError(path, f"BitsAllocated has the invalid value {allocated}; it must be 1, 8, 16 or 32.")
    if stored is not None and allocated is not None and not 1 <= stored <= allocated:
        raise DicomRejectedError(
            path, f"BitsStored has the invalid value {stored}; it must be from 1 to BitsAllocated ({allocated})."
        )
    if representation is not None and representation not in (0, 1):
        raise DicomRejectedError(
            path, f"PixelRepresentation has the invalid value {representation}; it must be 0 (unsigned) or 1 (signed)."
        )


def _check_codestream(ds: Dataset, meta: DicomMeta, path: Path) -> None:
    elem = ds.get_item("PixelData")
    if elem is None or not isinstance(elem.value, bytes):
        return  # float pixel data is never compressed
    # A converted element keeps the flag; a raw one says so by its length.
    encapsulated = bool(getattr(elem, "is_undefined_length", False)) or getattr(elem, "length", 0) == UNDEFINED_LENGTH
    reason = codestream_mismatch(
        meta.transfer_syntax_uid, elem.value, encapsulated=encapsulated, rows=meta.rows, columns=meta.columns, samples=1
    )
    if reason is not None:
        raise DicomRejectedError(path, reason)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    try:
        decoding_plugin(_transfer_syntax(ds))
    except NotImplementedError as exc:
        raise DicomRejectedError(path, f"the pixel data cannot be decoded: {exc}.") from exc
    return stored_pixels(ds)


def _check_stored_values(stored: np.ndarray, ds: Dataset, path: Path) -> None:
    # Native, JPEG and RLE data come out masked to Bits Stored; JPEG 2000 and JPEG-LS do not, so
    # a codestream of higher precision than the header says shows here.
    bits_stored, signed = first_int(ds, "BitsStored"), first_int(ds, "PixelRepresentation") == 1
    if bits_stored is None:
        return
    span = values_outside(stored, bits_stored=bits_stored, signed=signed)
    if span is not None:
        low, high = stored_value_range(bits_stored, signed=signed)
        raise DicomRejectedError(
            path,
            f"the decoded pixel values span {span[0]} to {span[1]}, outside the {low} to {high} that BitsStored "
            f"{bits_stored} allows for {'signed' if signed else 'unsigned'} pixels.",
        )


def _check_integer(values: AttributeReader, keyword: str, path: Path) -> None:
    if not values.present(keyword):
        return  # absence is the gate's "missing required attribute"; NumberOfFrames is optional
    found = values.numbers(keyword)
    if len(found) != 1 or not found[0].is_integer() or found[0] < 0:
        raise DicomRejectedError(
            path, f"{keyword} has the invalid value {values.text(keyword)[:40]!r}; it must be one integer."
        )


def has_pixel_data(ds: Dataset) -> bool:
    """Whether the dataset holds Pixel Data, Float Pixel Data or Double Float Pixel Data."""
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


def sop_class_label(ds: Dataset) -> str:
    """Name the SOP class: its UID and registered name, from the dataset or else its file meta."""
    uid = text(ds, "SOPClassUID") or text(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    if not uid:
        return "(none)"
    if len(uid) > 64 or not uid.isprintable():
        # A damaged length can make the value swallow what follows it; show it escaped and short.
        return ascii(uid[:64])
    name = UID(uid).name
    return f"{uid} ({name})" if name and name != uid else uid


def no_pixel_data_reason(ds: Dataset) -> str:
    """One sentence for a dataset without pixels: a non-image SOP class, or an image missing them."""
    label = sop_class_label(ds)
    # Registered image classes are named "... Image Storage"; anything else (SR, RT plan,
    # presentation state, waveform, DICOMDIR) is not an image at all.
    if "Image Storage" in label or label == "(none)":
        return "missing required attribute PixelData."
    return f"non-image SOP class {label}: it has no pixel data to score."


def _to_modality_units(stored: np.ndarray, ds: Dataset) -> FloatArray:
    if "ModalityLUTSequence" in ds and ds.ModalityLUTSequence:
        # A non-linear Modality LUT (PS3.3 C.11.1) replaces rescale; pydicom implements the lookup.
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    pixels = stored.astype(np.float32, copy=True)
    slope, intercept = first_float(ds, "RescaleSlope"), first_float(ds, "RescaleIntercept")
    if slope is not None and slope != 1.0:
        pixels *= np.float32(slope)
    if intercept is not None and intercept != 0.0:
        pixels += np.float32(intercept)
    return pixels


def _transfer_syntax(ds: Dataset) -> str:
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None:
        return ""
    return str(file_meta.get("TransferSyntaxUID", "") or "").strip()


def _spacing(values: AttributeReader, keyword: str) -> tuple[float, float] | None:
    spacing = values.numbers(keyword)
    if len(spacing) != 2 or min(spacing) <= 0:
        return None
    return spacing[0], spacing[1]
