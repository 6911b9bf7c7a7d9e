"""De-identify one DICOM file's bytes into new bytes: the edge the services call (they never touch pydicom).

Before pydicom parses anything, the nesting of the file's sequences is measured on its bytes
(:mod:`core.imaging.depth`): a file nested deeper than ``MAX_SEQUENCE_DEPTH`` is refused,
because pydicom reads, copies and writes sequences by recursion. The file is then parsed strictly
(:func:`core.imaging.dicom.dataset_from_bytes`: a truncated or damaged file is refused, not
half-read), de-identified by :func:`core.imaging.deid.apply.deidentify`, and written back in its
own transfer syntax (pixel data, compressed or not, is carried unchanged). The file meta
information is rebuilt from scratch, and the 128-byte preamble zeroed, because both can hold
identifying data the profile's table does not reach (a source AE title, a TIFF header).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset

from core.errors import BadInputError, DicomRejectedError
from core.imaging.deid.apply import deidentify
from core.imaging.deid.private import PrivateElement
from core.imaging.deid.profile import ProfileOption
from core.imaging.depth import dataset_depth, depth_refusal, sequence_depth
from core.imaging.dicom import dataset_from_bytes, meta_from_dataset
from core.imaging.image import DicomMeta

__all__ = ["DeidFile", "deidentify_bytes"]

_PREAMBLE: Final = b"\x00" * 128
_NO_REPLACEMENTS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeidFile:
    """One file de-identified, or quarantined.

    Attributes
    ----------
    data : bytes or None
        The de-identified DICOM Part 10 file; None when quarantined.
    sop_instance_uid : str
        The new SOPInstanceUID (names the output file); ``""`` when quarantined.
    quarantine_reason : str or None
        Why the file is not released (see :func:`core.imaging.deid.burned_in.burned_in_risk`).
    actions : Mapping[str, int]
        As :attr:`core.imaging.deid.apply.DeidResult.actions`.
    profile_version, table_sha256 : str
        The table applied.
    meta : DicomMeta or None
        The de-identified copy's header, as the ingest gate reads one (what ingest stores in its
        rows); None when quarantined.
    """

    data: bytes | None = field(repr=False)
    sop_instance_uid: str
    quarantine_reason: str | None
    actions: Mapping[str, int]
    profile_version: str
    table_sha256: str
    meta: DicomMeta | None = field(default=None, repr=False)


def deidentify_bytes(
    data: bytes,
    path: Path,
    *,
    secret: bytes,
    options: Iterable[ProfileOption | str] = (),
    private_allowlist: Iterable[PrivateElement] = (),
    replacements: Mapping[str, str] = _NO_REPLACEMENTS,
) -> DeidFile:
    """Parse, de-identify and re-encode one file's bytes.

    Parameters
    ----------
    data : bytes
        A DICOM Part 10 file.
    path : Path
        Names the file in errors; it is not read.
    secret, options, private_allowlist, replacements
        As :func:`core.imaging.deid.apply.deidentify`.

    Raises
    ------
    DicomRejectedError
        Sequences nested deeper than ``MAX_SEQUENCE_DEPTH`` (checked first), not DICOM, truncated
        or damaged, without a SOPInstanceUID to name the output by, or a
        value pydicom cannot encode; the reason never quotes a value of the file.
    BadInputError
        As :func:`core.imaging.deid.apply.deidentify`.
    """
    if (too_deep := depth_refusal(sequence_depth(data))) is not None:
        raise DicomRejectedError(path, too_deep)
    ds = dataset_from_bytes(data, path)
    if not str(ds.get("SOPInstanceUID", "") or "").strip("\x00 "):
        raise DicomRejectedError(path, "it has no SOPInstanceUID, so its de-identified copy could not be named.")
    try:
        # The parsed data set is measured again: a nesting the byte walk could not follow (it stops
        # at what it cannot make sense of) must still be refused before anything copies it.
        if (too_deep := depth_refusal(dataset_depth(ds))) is not None:
            raise DicomRejectedError(path, too_deep)
        result = deidentify(
            ds, secret=secret, options=options, private_allowlist=private_allowlist, replacements=replacements
        )
        out = result.dataset
        encoded = None if out is None else _encode(out, ds)
        meta = None if out is None else meta_from_dataset(out)
    except (DicomRejectedError, BadInputError):
        raise
    except Exception as exc:  # one hostile file must not end a folder's run; its message may quote a value
        reason = f"it could not be de-identified and encoded again ({type(exc).__name__})."
        raise DicomRejectedError(path, reason) from exc
    return DeidFile(
        data=encoded,
        sop_instance_uid="" if out is None else str(out.SOPInstanceUID),
        quarantine_reason=result.quarantine_reason,
        actions=result.actions,
        profile_version=result.profile_version,
        table_sha256=result.table_sha256,
        meta=meta,
    )


def _encode(out: Dataset, source: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = out.SOPClassUID
    meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
    out.file_meta = meta
    out.preamble = _PREAMBLE
    buffer = io.BytesIO()
    dcmwrite(buffer, out, enforce_file_format=True)
    return buffer.getvalue()
