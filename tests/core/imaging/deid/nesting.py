"""Build DICOM files whose sequences nest to a given depth, iteratively, byte by byte.

pydicom's own writer recurses once per level, which is the fault these files exercise.
"""

from __future__ import annotations

import struct
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

__all__ = ["nested_file"]

# AnatomicRegionSequence: kept by the profile, so the walk goes down every level.
_TAG = (0x0008, 0x2218)


def _nest(depth: int, *, implicit: bool, defined: bool) -> bytes:
    """``depth`` levels of AnatomicRegionSequence, one item each, built from the inside out without recursion."""
    header = struct.pack("<HH", *_TAG) + (b"" if implicit else b"SQ\x00\x00")
    item = struct.pack("<HH", 0xFFFE, 0xE000)
    if not defined:
        opening = header + b"\xff\xff\xff\xff" + item + b"\xff\xff\xff\xff"
        closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        return opening * depth + closing * depth
    inner = b""
    for _ in range(depth):
        wrapped = item + struct.pack("<L", len(inner)) + inner
        inner = header + struct.pack("<L", len(wrapped)) + wrapped
    return inner


def nested_file(
    depth: int,
    *,
    syntax: UID = ExplicitVRLittleEndian,
    defined: bool = True,
    sop_instance_uid: str = "1.2.826.0.1.3680043.8.498.1",
) -> bytes:
    """A small DX header (no pixels) whose sequences nest ``depth`` levels deep, as a Part 10 file."""
    ds = Dataset()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_instance_uid
    ds.Modality = "DX"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, syntax.is_implicit_VR
    write_dataset(head, ds)
    body = bytes(head.getvalue()) + _nest(depth, implicit=syntax.is_implicit_VR, defined=defined)
    if syntax.is_deflated:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = packer.compress(body) + packer.flush()
    prefix = DicomBytesIO()
    prefix.is_little_endian, prefix.is_implicit_VR = True, False
    write_file_meta_info(prefix, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + bytes(prefix.getvalue()) + body
