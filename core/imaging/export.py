"""Export an explanation as DICOM objects a PACS can show, in the source image's study.

Two objects per explanation, each in its own new series of the *source study*, both naming
the source image and the model version:

- a **Secondary Capture** (written with pydicom): the explanation blended over the windowed
  image as RGB, what any viewer displays;
- a **fractional Segmentation** (written with highdicom): the map's values, one segment for a
  Grad-CAM map, two for a signed SHAP map ("evidence for" = the positive part, "evidence
  against" = the magnitude of the negative part), each in [0, 1]. The model version is the
  segment's Algorithm Version, as DICOM intends.

Why not a Parametric Map: highdicom 0.28 cannot build one from a projection radiograph (no
frame of reference, no plane positions); it raises while building its dimension index. A
fractional Segmentation carries the same values for non-negative maps, and the two-segment
split keeps a signed map's information.

Codes: every segment's category is DICOM's (130401, DCM, "Visual explanation"); a Grad-CAM
segment's type is (130403, DCM, "Gradient-weighted class activation") and another non-negative
map's (130404, DCM, "Saliency"). DICOM has no concept for the two halves of a signed map, so
those two types come from Vigil's private coding scheme ``99VIGIL`` (the "99" prefix PS3.16
reserves for private schemes), which the object identifies in its Coding Scheme Identification
Sequence as PS3.3 C.12.1.1.4 asks.

Both objects pass dciodvfy (dicom3tools) with zero errors (``tests/core/imaging/test_dciodvfy.py``).

UIDs are derived from the explanation's SHA-256 and the source SOP Instance UID, so exporting
the same explanation twice writes identical identities (idempotent for a PACS).
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from core.errors import BadInputError
from core.types import FloatArray

__all__ = ["ExplanationExport", "ExportedObject", "check_export_dir", "export_explanation", "read_source"]

_SC_SERIES_NUMBER: Final = 9001
_SEG_SERIES_NUMBER: Final = 9002
_SCHEME: Final = "99VIGIL"  # a private coding scheme (DICOM PS3.16: "99" prefix)
_SCHEME_NAME: Final = "Vigil explanation concepts"
_CATEGORY: Final = hd.sr.CodedConcept("130401", "DCM", "Visual explanation")
_GRAD_CAM: Final = hd.sr.CodedConcept("130403", "DCM", "Gradient-weighted class activation")
_SALIENCY: Final = hd.sr.CodedConcept("130404", "DCM", "Saliency")
_EVIDENCE_FOR: Final = hd.sr.CodedConcept("EVIDENCE_FOR", _SCHEME, "Evidence for finding")
_EVIDENCE_AGAINST: Final = hd.sr.CodedConcept("EVIDENCE_AGAINST", _SCHEME, "Evidence against finding")
#: Patient and study attributes copied from the source so the objects file into its study.
_COPIED: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientOrientation",
)


@dataclass(frozen=True, slots=True, eq=False)
class ExplanationExport:
    """What to export.

    Attributes
    ----------
    method, method_label : str
        ``"gradientshap"`` and ``"GradientShap"``.
    model_version : str
        The version that made the map; written to the headers.
    artifact_sha256 : str
        The explanation artifact's address; seeds the UIDs and is written to the headers.
    heatmap : ndarray of shape (rows, columns), float32
        [0, 1], or [-1, 1] when ``signed``.
    signed : bool
    overlay_rgb : ndarray of shape (rows, columns, 3), uint8
        The map blended over the windowed image.
    software_version : str
        Vigil's version.
    """

    method: str
    method_label: str
    model_version: str
    artifact_sha256: str
    heatmap: FloatArray
    signed: bool
    overlay_rgb: npt.NDArray[np.uint8]
    software_version: str


@dataclass(frozen=True, slots=True)
class ExportedObject:
    """One written DICOM file; ``kind`` is ``"secondary_capture"`` or ``"segmentation"``."""

    kind: str
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str


def check_export_dir(out_dir: Path) -> None:
    """Refuse an output path that is not a folder and cannot become one (checked before any work).

    The path itself, or its nearest existing ancestor when it is new, must be a writable folder:
    an existing file, device or FIFO, or a path under a regular file, is refused here rather than
    by ``mkdir`` after the export's work is done.

    Raises
    ------
    BadInputError
    """
    for place in (out_dir, *out_dir.parents):
        try:
            info = place.stat()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # nothing there (ENOTDIR: a component is a file)
                continue
            raise BadInputError(f"--export-dicom cannot use {out_dir}: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(info.st_mode):
            what = "is not a folder" if place == out_dir else f"is under {place}, which is not a folder"
            raise BadInputError(f"--export-dicom must name a folder, but {out_dir} {what}")
        if not os.access(place, os.W_OK | os.X_OK):
            raise BadInputError(f"--export-dicom must name a writable folder, but {place} is not writable")
        return


def _uid(export: ExplanationExport, source_uid: str, what: str) -> UID:
    return generate_uid(entropy_srcs=[export.artifact_sha256, source_uid, what])


def _descriptions(export: ExplanationExport) -> tuple[str, list[str]]:
    series = f"Vigil {export.method_label} explanation, model {export.model_version}"[:64]
    software = [f"vigil {export.software_version}"[:64], f"model {export.model_version}"[:64]]
    return series, software


def _check(source: Dataset, export: ExplanationExport) -> None:
    shape = (int(source.Rows), int(source.Columns))
    if export.heatmap.shape != shape or export.overlay_rgb.shape != (*shape, 3):
        raise BadInputError(
            f"map {export.heatmap.shape} / overlay {export.overlay_rgb.shape} do not match the source image {shape}"
        )
    lo = -1.0 if export.signed else 0.0
    if not (np.isfinite(export.heatmap).all() and lo <= export.heatmap.min() and export.heatmap.max() <= 1.0):
        raise BadInputError(f"map values must be finite and in [{lo}, 1]")


def _body_part_and_laterality(ds: Dataset, source: Dataset) -> None:
    """Copy the source's body part and laterality, which General Series' Type 2C rule ties together.

    Laterality must be present for a paired body part and absent for an unpaired one (a chest);
    naming the body part tells a reader which case applies. Without one, an empty Laterality says
    "unknown", the only honest value left.
    """
    for keyword in ("BodyPartExamined", "Laterality"):
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)
    if "BodyPartExamined" not in ds and "Laterality" not in ds:
        ds.Laterality = ""


def _secondary_capture(source: Dataset, export: ExplanationExport, path: Path) -> ExportedObject:
    series, software = _descriptions(export)
    sop_uid = _uid(export, source.SOPInstanceUID, "sc")
    series_uid = _uid(export, source.SOPInstanceUID, "sc-series")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for keyword in _COPIED:
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)
    now = datetime.now(UTC)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop_uid
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, _SC_SERIES_NUMBER, 1
    ds.Modality, ds.ConversionType, ds.Manufacturer = "OT", "WSD", "Vigil"
    ds.SeriesDescription, ds.SoftwareVersions = series, software
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"{export.method_label} map of model {export.model_version} over the source image"[:1024]
    ds.ImageComments = f"explanation artifact sha256 {export.artifact_sha256}; not a diagnostic image"
    ds.BurnedInAnnotation = "NO"
    _body_part_and_laterality(ds, source)
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID, source_ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    ds.SourceImageSequence = DicomSequence([source_ref])
    rgb = np.ascontiguousarray(export.overlay_rgb, dtype=np.uint8)
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ExportedObject("secondary_capture", path, str(ds.SOPClassUID), sop_uid, series_uid, str(ds.StudyInstanceUID))


def _segment(
    number: int, label: str, kind: hd.sr.CodedConcept, algorithm: hd.AlgorithmIdentificationSequence
) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=_CATEGORY,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )


def _segment_planes(
    export: ExplanationExport, algorithm: hd.AlgorithmIdentificationSequence
) -> tuple[FloatArray, list[hd.seg.SegmentDescription]]:
    heat = export.heatmap.astype(np.float32)
    if not export.signed:
        kind = _GRAD_CAM if export.method == "gradcam" else _SALIENCY
        return heat[None, :, :, None], [_segment(1, export.method_label, kind, algorithm)]
    planes = np.stack([np.clip(heat, 0.0, 1.0), np.clip(-heat, 0.0, 1.0)], axis=-1)[None]
    return planes, [
        _segment(1, "Evidence for finding", _EVIDENCE_FOR, algorithm),
        _segment(2, "Evidence against finding", _EVIDENCE_AGAINST, algorithm),
    ]


def _private_scheme() -> Dataset:
    """The Coding Scheme Identification item that names ``99VIGIL`` (PS3.3 C.12.1.1.4)."""
    item = Dataset()
    item.CodingSchemeDesignator = _SCHEME
    item.CodingSchemeName = _SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "Vigil"
    return item


def _spacing(source: Dataset) -> list[float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in source and source.data_element(keyword).value:
            return [float(v) for v in source.data_element(keyword).value]
    return [1.0, 1.0]  # unknown: one pixel per unit, as DICOM assumes without a spacing


def _segmentation(source: Dataset, export: ExplanationExport, path: Path) -> ExportedObject:
    series, software = _descriptions(export)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"Vigil {export.method_label}"[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=export.model_version[:64],
        parameters={"artifact_sha256": export.artifact_sha256, "method": export.method},
    )
    planes, segments = _segment_planes(export, algorithm)
    sop_uid = _uid(export, source.SOPInstanceUID, "seg")
    series_uid = _uid(export, source.SOPInstanceUID, "seg-series")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on optional modules of the source
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=planes,
            segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
            segment_descriptions=segments,
            series_instance_uid=series_uid,
            series_number=_SEG_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer="Vigil",
            manufacturer_model_name="Vigil explanations",
            software_versions=software[0],
            device_serial_number="vigil",
            max_fractional_value=255,
            series_description=series,
            content_label="EXPLANATION",
            content_description=f"{export.method_label}, model {export.model_version}"[:64],
            pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=_spacing(source), slice_thickness=1.0),
        )
    seg["SoftwareVersions"].value = software  # highdicom writes one value; keep both
    # Type 2C in General Image: a projection radiograph has no Image Orientation (Patient), and
    # the map shares the source's pixel grid, so the source's orientation is the map's.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    if export.signed:
        seg.CodingSchemeIdentificationSequence = DicomSequence([_private_scheme()])
    seg.save_as(path)
    return ExportedObject("segmentation", path, str(seg.SOPClassUID), sop_uid, series_uid, str(seg.StudyInstanceUID))


def export_explanation(source_path: Path, export: ExplanationExport, *, out_dir: Path) -> list[ExportedObject]:
    """Write the Secondary Capture and the Segmentation of one explanation into ``out_dir``.

    Parameters
    ----------
    source_path : Path
        The explained DICOM image (its study, patient and SOP identities are referenced).
    export : ExplanationExport
    out_dir : Path
        Created when missing; files are named ``<SOPInstanceUID>.dcm``.

    Returns
    -------
    list of ExportedObject
        ``[secondary capture, segmentation]``.

    Raises
    ------
    BadInputError
        ``out_dir`` is a file, the source cannot be read, or the map does not fit its image.
    """
    check_export_dir(out_dir)
    source = read_source(source_path)
    _check(source, export)
    out_dir.mkdir(parents=True, exist_ok=True)
    sc = _secondary_capture(source, export, out_dir / f"{_uid(export, source.SOPInstanceUID, 'sc')}.dcm")
    seg = _segmentation(source, export, out_dir / f"{_uid(export, source.SOPInstanceUID, 'seg')}.dcm")
    return [sc, seg]


def read_source(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """The source image an exported object refers to.

    Raises
    ------
    BadInputError
        It cannot be read, or it is not a DICOM file at all.
    """
    try:
        return dcmread(path, stop_before_pixels=stop_before_pixels)
    except (OSError, ValueError, InvalidDicomError) as exc:
        raise BadInputError(f"cannot read the source image {path}: {exc}") from exc
