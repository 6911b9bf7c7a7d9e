"""A DICOM Structured Report of one model result, filed in the source image's study.

The report is a Comprehensive SR holding a TID 1500 *Imaging Measurement Report* (built with
highdicom, which checks the template as it builds), so a PACS viewer lists it beside the images
and any TID 1500 reader finds the values where the template puts them:

- observation context: the device observer is Vigil, its model name the model version;
- Image Library: the source image;
- one Measurement Group (TID 1501), finding type (27925004, SCT, "Nodule"), with

  - Algorithm Identification (TID 4019): the model's name and version, family
    (123110, DCM, "Artificial Intelligence"), the operating threshold as a parameter;
  - two numeric measurements, unit (1, UCUM, "no units"): (246262008, SCT, "Score") with the
    model's score and (122411, DCM, "Threshold Value") with the operating threshold;
  - one qualitative evaluation: (27925004, SCT, "Nodule") = (52101004, SCT, "Present") when
    ``score >= threshold``, Vigil's rule everywhere, else (272519000, SCT, "Absent");
  - the source image as the group's (121112, DCM, "Source of Measurement").

Every code is a registered DICOM (DCM), SNOMED CT (SCT) or UCUM one: no private scheme. The
source's patient and study attributes are copied (highdicom copies them from the evidence), and
the source instance is listed in the Current Requested Procedure Evidence Sequence.

:func:`build_model_result_sr` is pure (the content date and time are inputs, and also the
instance's creation date and time); :func:`write_model_result_sr` reads the source file and
writes the report. UIDs are derived from the source SOP Instance UID
and the result, so the same result reported twice has the same identities (idempotent for a
PACS). The report passes dciodvfy (dicom3tools) with zero errors (``tests/core/imaging/test_dciodvfy.py``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, generate_uid

from core.errors import BadInputError
from core.imaging.export import ExportedObject, check_export_dir, read_source

__all__ = [
    "ABSENT",
    "NODULE",
    "PRESENT",
    "SCORE",
    "THRESHOLD",
    "ModelResult",
    "build_model_result_sr",
    "write_model_result_sr",
]

_SR_SERIES_NUMBER: Final = 9003  # after the explanation exports' 9001 (SC) and 9002 (SEG)
NODULE: Final = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
PRESENT: Final = hd.sr.CodedConcept("52101004", "SCT", "Present")
ABSENT: Final = hd.sr.CodedConcept("272519000", "SCT", "Absent")
SCORE: Final = hd.sr.CodedConcept("246262008", "SCT", "Score")
THRESHOLD: Final = hd.sr.CodedConcept("122411", "DCM", "Threshold Value")
_NO_UNITS: Final = hd.sr.CodedConcept("1", "UCUM", "no units")
_CHEST_RADIOGRAPH: Final = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
#: One fixed identity for Vigil as the device observer, the same in every report.
_DEVICE_UID: Final = str(generate_uid(entropy_srcs=["vigil-device-observer"]))
#: Attributes highdicom reads from the source as Type 1 or 2; absent ones are sent empty.
_STUDY_KEYWORDS: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One model result on one image, as the report states it.

    Attributes
    ----------
    model_name : str
        What the model is, e.g. ``"Vigil chest nodule classifier"`` (at most 64 characters kept).
    model_version : str
        The model card's version, e.g. ``"cxr-nodule-1.0.0"``.
    score : float
        The model's score in [0, 1].
    threshold : float
        The card's operating threshold in [0, 1]; ``score >= threshold`` reports a nodule.
    content_datetime : datetime
        When the result was made; the report's Content Date and Time.
    software_version : str
        Vigil's version.
    """

    model_name: str
    model_version: str
    score: float
    threshold: float
    content_datetime: datetime
    software_version: str

    @property
    def nodule_present(self) -> bool:
        """``score >= threshold``, the rule every Vigil decision uses."""
        return self.score >= self.threshold


def _check(result: ModelResult, source: Dataset) -> None:
    for name in ("score", "threshold"):
        value = getattr(result, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise BadInputError(f"{name} must be a finite number in [0, 1], got {value!r}")
    for name in ("model_name", "model_version"):
        if not getattr(result, name).strip():
            raise BadInputError(f"{name} must not be empty")
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in source]
    if missing:
        raise BadInputError(f"the source image lacks {', '.join(missing)}, which the report must reference")


def _uid(result: ModelResult, source: Dataset, what: str) -> UID:
    # The score and threshold are written with repr, so a changed value gives new identities.
    parts = [str(source.SOPInstanceUID), result.model_version, repr(result.score), repr(result.threshold), what]
    return generate_uid(entropy_srcs=["vigil-sr", *parts])


def _evidence(source: Dataset) -> Dataset:
    """A header-only copy of the source with the attributes highdicom reads always present."""
    header = Dataset()
    for element in source:
        if element.tag != 0x7FE00010:  # the report references the image; it never carries its pixels
            header.add(element)
    for keyword in _STUDY_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _measurement_group(result: ModelResult, source: Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    algorithm = hd.sr.AlgorithmIdentification(
        name=result.model_name[:64],
        version=result.model_version[:64],
        parameters=[f"operating threshold {result.threshold!r}"],
        family=codes.cid7162.ArtificialIntelligence,
        manufacturer="Vigil",
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(result, source, "tracking"), identifier=f"Vigil result, model {result.model_version}"[:64]
        ),
        finding_type=NODULE,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(name=SCORE, value=float(result.score), unit=_NO_UNITS),
            hd.sr.Measurement(name=THRESHOLD, value=float(result.threshold), unit=_NO_UNITS),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=NODULE, value=PRESENT if result.nodule_present else ABSENT)
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def build_model_result_sr(source: Dataset, result: ModelResult) -> Dataset:
    """Build the Comprehensive SR that reports ``result`` on ``source``, in ``source``'s study.

    Parameters
    ----------
    source : Dataset
        The image the model scored (its header is enough; pixel data is not read).
    result : ModelResult

    Returns
    -------
    Dataset
        A ``highdicom.sr.ComprehensiveSR`` with file meta, ready for ``save_as``.

    Raises
    ------
    BadInputError
        A score or threshold outside [0, 1] or not finite, an empty model name or version, or a
        source without the SOP, study and series UIDs the report references.
    """
    _check(result, source)
    evidence = _evidence(source)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=_DEVICE_UID,
                    name="Vigil",
                    manufacturer_name="Vigil",
                    model_name=result.model_version[:64],
                ),
            )
        ),
        procedure_reported=_CHEST_RADIOGRAPH,
        imaging_measurements=[_measurement_group(result, evidence)],
        referenced_images=[evidence],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on optional attributes of the source
        sr = hd.sr.ComprehensiveSR(
            evidence=[evidence],
            content=report,
            series_instance_uid=_uid(result, source, "series"),
            series_number=_SR_SERIES_NUMBER,
            sop_instance_uid=_uid(result, source, "sop"),
            instance_number=1,
            manufacturer="Vigil",
            is_complete=True,
            # A model's output is never verified by a person: Verification Flag UNVERIFIED.
            is_verified=False,
        )
    # highdicom stamps the instance with the wall clock; the result's own time keeps the build pure
    # (the same inputs give an equal dataset, and so the same bytes).
    day, time = result.content_datetime.strftime("%Y%m%d"), result.content_datetime.strftime("%H%M%S")
    sr.ContentDate, sr.ContentTime = day, time
    sr.InstanceCreationDate, sr.InstanceCreationTime = day, time
    for equipment in sr.get("ContributingEquipmentSequence", []):  # highdicom names itself, also at "now"
        equipment.ContributionDateTime = day + time
    sr.SeriesDescription = f"Vigil result, model {result.model_version}"[:64]
    # Two values (Vigil's and the model's); highdicom's SR type allows only one, so set it untyped.
    sr.add_new(
        "SoftwareVersions", "LO", [f"vigil {result.software_version}"[:64], f"model {result.model_version}"[:64]]
    )
    return sr


def write_model_result_sr(source_path: Path, result: ModelResult, *, out_dir: Path) -> ExportedObject:
    """Write the report of ``result`` on the image at ``source_path`` into ``out_dir``.

    Parameters
    ----------
    source_path : Path
        The scored DICOM image.
    result : ModelResult
    out_dir : Path
        Created when missing; the file is named ``<SOPInstanceUID>.dcm``.

    Returns
    -------
    ExportedObject
        ``kind`` ``"structured_report"``.

    Raises
    ------
    BadInputError
        ``out_dir`` cannot be a folder, the source cannot be read, or :func:`build_model_result_sr`
        refuses the inputs.
    """
    check_export_dir(out_dir)
    source = read_source(source_path, stop_before_pixels=True)
    sr = build_model_result_sr(source, result)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{sr.SOPInstanceUID}.dcm"
    sr.save_as(path, enforce_file_format=True)
    return ExportedObject(
        "structured_report",
        path,
        str(sr.SOPClassUID),
        str(sr.SOPInstanceUID),
        str(sr.SeriesInstanceUID),
        str(sr.StudyInstanceUID),
    )
