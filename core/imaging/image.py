"""The image and header records every other package receives from ``core.imaging``."""

from __future__ import annotations

from dataclasses import dataclass

from core.imaging.spacing import PROJECTION_MODALITIES, MeasurementSpacing, measurement_spacing
from core.types import FloatArray

__all__ = ["DicomMeta", "DicomImage"]


@dataclass(frozen=True, slots=True)
class DicomMeta:
    """The DICOM attributes Vigil reads, as plain Python values.

    Text attributes that are absent are ``""``; numeric ones are ``None``. Nothing is
    guessed: harmonized values live beside the raw ones (see ``core.imaging.harmonize``).
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    body_part_examined: str
    view_position: str
    image_type: tuple[str, ...]
    manufacturer: str
    manufacturer_model_name: str
    station_name: str
    institution_name: str
    software_versions: str
    protocol_name: str
    patient_id: str
    patient_age: str
    patient_sex: str
    kvp: float | None
    accession_number: str
    study_date: str  # DICOM DA, YYYYMMDD, "" when absent
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float] | None  # (row, column) spacing
    photometric_interpretation: str
    bits_stored: int | None
    transfer_syntax_uid: str
    window_center: float | None
    window_width: float | None
    imager_pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) at the detector plane
    pixel_spacing_calibration_type: str = ""  # (0028,0A02) as written, upper case: GEOMETRY, FIDUCIAL or ""

    @property
    def measurement_spacing(self) -> MeasurementSpacing | None:
        """The spacing lengths are measured with and what they mean (the rule in ``core.imaging.spacing``)."""
        return measurement_spacing(
            self.pixel_spacing_mm,
            self.imager_pixel_spacing_mm,
            calibration_type=self.pixel_spacing_calibration_type,
            projection=self.modality.upper() in PROJECTION_MODALITIES,
        )


@dataclass(frozen=True, slots=True)
class DicomImage:
    """One decoded single-frame image.

    Attributes
    ----------
    pixels : ndarray of shape (rows, columns), float32
        Stored values after rescale slope/intercept (modality units), with MONOCHROME1
        inverted so that higher always means brighter.
    meta : DicomMeta
        The header it came from.
    """

    pixels: FloatArray
    meta: DicomMeta
