"""The ingest gate: one file in, an accepted instance or one sentence saying why not.

The gate never crashes on a hostile file: every failure, expected or not, leaves as a
:class:`core.errors.DicomRejectedError` whose ``reason`` is a single sentence a site's PACS
administrator can act on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset

from core.errors import DicomRejectedError
from core.imaging.depth import depth_refusal, sequence_depth
from core.imaging.dicom import (
    dataset_from_bytes,
    has_pixel_data,
    image_from_dataset,
    no_pixel_data_reason,
    rejection_from_exception,
)
from core.imaging.files import DEFAULT_MAX_FILE_BYTES, read_regular_file
from core.imaging.image import DicomImage, DicomMeta
from core.imaging.values import AttributeReader

__all__ = ["REQUIRED_ATTRIBUTES", "AcceptedInstance", "check_file", "is_dicom_uid"]

#: Attributes without which an instance cannot be stored, grouped into studies or decoded
#: (Type 1 in the SOP Common, General Study, General Series and Image Pixel modules).
REQUIRED_ATTRIBUTES: Final = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
)

_UID_KEYWORDS: Final = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
# PS3.5 9.1: dot-separated components of digits, at most 64 characters. Leading zeros in a
# component also break 9.1 but are common from older modalities and harmless to identity, so
# they pass; letters, spaces or empty components mean the value is not a UID at all.
_UID_PATTERN: Final = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True, slots=True)
class AcceptedInstance:
    """A file that passed the gate.

    Attributes
    ----------
    path : Path
        Where it was read from.
    sha256 : str
        Hex SHA-256 of the file's bytes, for duplicate detection and the audit trail.
    data : bytes
        The bytes that were checked and hashed: what the store keeps, even if the source file
        changes after the gate read it.
    meta : DicomMeta
        Its header.
    image : DicomImage
        Its decoded pixels, float32 of shape (rows, columns).
    """

    path: Path
    sha256: str
    data: bytes = field(repr=False)
    meta: DicomMeta
    image: DicomImage


def check_file(path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> AcceptedInstance:
    """Read, validate and decode one file for ingest.

    Parameters
    ----------
    path : Path
        Any path; it need not be DICOM, nor even a regular file (anything else is refused unread).
    max_bytes : int
        The largest file read, in bytes (see :mod:`core.imaging.files`).

    Returns
    -------
    AcceptedInstance
        A single-frame greyscale image with every required attribute.

    Raises
    ------
    DicomRejectedError
        Not a regular file or over ``max_bytes``; sequences nested deeper than
        :data:`~core.imaging.depth.MAX_SEQUENCE_DEPTH`; not DICOM; truncated or a bad element length;
        a non-image SOP class; a missing or invalid required attribute; multi-frame or colour;
        a codestream of another kind or size than the header states; pixels that cannot be decoded
        by the one plugin trusted for the transfer syntax, or decoded values Bits Stored cannot
        hold; or any other failure, named by its exception class and message.
    """
    data = read_regular_file(path, max_bytes=max_bytes)
    try:
        # Before pydicom parses anything: it reads, copies and writes nested sequences by recursion.
        if (too_deep := depth_refusal(sequence_depth(data))) is not None:
            raise DicomRejectedError(path, too_deep)
        ds = dataset_from_bytes(data, path)
        _check_required(ds, path)
        image = image_from_dataset(ds, path)
    except DicomRejectedError:
        raise
    except Exception as exc:  # last line of defence: the gate never crashes
        raise rejection_from_exception(path, exc, while_doing="checking the file") from exc
    return AcceptedInstance(path=path, sha256=hashlib.sha256(data).hexdigest(), data=data, meta=image.meta, image=image)


def _check_required(ds: Dataset, path: Path) -> None:
    if not has_pixel_data(ds):
        # Without pixels the SOP class decides the sentence: a report is not a broken image.
        raise DicomRejectedError(path, no_pixel_data_reason(ds))
    values = AttributeReader(ds)
    missing = [keyword for keyword in REQUIRED_ATTRIBUTES if values.is_empty(keyword)]
    if missing:
        noun = "attribute" if len(missing) == 1 else "attributes"
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise DicomRejectedError(path, f"missing required {noun} {shown}.")
    for keyword in _UID_KEYWORDS:
        uid = values.text(keyword)
        if not is_dicom_uid(uid):
            raise DicomRejectedError(path, f"{keyword} {uid[:80]!r} is not a valid DICOM UID.")


def is_dicom_uid(text: str) -> bool:
    """Whether ``text`` is a DICOM UID: dot-separated digit runs, at most 64 characters (PS3.5 9.1)."""
    return len(text) <= 64 and _UID_PATTERN.fullmatch(text) is not None
