"""Write the fuzzers' seed corpus: small DICOM files in each transfer syntax family, and FHIR payloads.

Run once, ``.venv/bin/python -m tests.fuzz.make_corpus``; its output is committed under
``tests/fuzz/corpus`` (about 40 KB) so the seeds do not change with pydicom or the payload
builders. Everything is SYNTHETIC: made-up identifiers, a 32 x 32 gradient image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.core.fhir import payloads

CORPUS = Path(__file__).resolve().parent / "corpus"
SIZE = 32
_ROOT = "1.2.826.0.1.3680043.8.498.77"  # pydicom's example root, for made-up UIDs


def _dataset(syntax: str, *, bits: int = 12, nested: bool = False) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(_ROOT + ".1.", entropy_srcs=[syntax, str(bits)])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _ROOT + ".2.1"
    ds.SeriesInstanceUID = _ROOT + ".3.1"
    ds.Modality, ds.BodyPartExamined, ds.PatientID, ds.PatientName = "DX", "CHEST", "FUZZ-0001", "Fuzz^Seed"
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelSpacing = [0.5, 0.5]
    if nested:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "399208008", "SCT", "Chest X-ray"
        inner = Dataset()
        inner.ConceptCodeSequence = Sequence([item])
        ds.ProcedureCodeSequence = Sequence([item, inner])
    pixels = (np.add.outer(np.arange(SIZE), np.arange(SIZE)) * ((1 << bits) - 1) // (2 * SIZE - 2)).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    if syntax in (JPEGLSLossless, JPEG2000Lossless, RLELossless):
        ds.compress(syntax, pixels)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write_corpus() -> list[Path]:
    """Write every seed file and return their paths."""
    seeds = {
        "dicom/explicit-le.dcm": _dicom_bytes(_dataset(ExplicitVRLittleEndian)),
        "dicom/implicit-le.dcm": _dicom_bytes(_dataset(ImplicitVRLittleEndian)),
        "dicom/explicit-be.dcm": _dicom_bytes(_dataset(ExplicitVRBigEndian, bits=16)),
        "dicom/deflated.dcm": _dicom_bytes(_dataset(DeflatedExplicitVRLittleEndian)),
        "dicom/rle.dcm": _dicom_bytes(_dataset(RLELossless)),
        "dicom/jpeg-ls.dcm": _dicom_bytes(_dataset(JPEGLSLossless)),
        "dicom/jpeg-2000.dcm": _dicom_bytes(_dataset(JPEG2000Lossless)),
        "dicom/nested-sequences.dcm": _dicom_bytes(_dataset(ExplicitVRLittleEndian, nested=True)),
        "fhir/bundle-full-record.json": payloads.encode(payloads.bundle(payloads.full_record())),
        "fhir/bundle-transaction.json": payloads.encode(
            payloads.bundle([payloads.patient(), payloads.imaging_study(), payloads.biopsy()], kind="transaction")
        ),
        "fhir/diagnostic-report.json": payloads.encode(payloads.diagnostic_report()),
        "fhir/observation.json": payloads.encode(payloads.observation()),
        "fhir/resources.ndjson": b"\n".join(
            payloads.encode(r) for r in (payloads.patient(), payloads.condition(), payloads.document_reference())
        ),
    }
    written = []
    for name, data in seeds.items():
        path = CORPUS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_corpus():
        print(f"{path.stat().st_size:>7} {path.relative_to(CORPUS)}")
