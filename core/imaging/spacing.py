"""Which pixel spacing lengths are measured with, where it came from, and what a length then means.

Projection radiographs (CR, DX, ...) state up to two spacings (PS3.3 10.7.1):

* ``ImagerPixelSpacing`` (0018,1164) is the spacing at the detector's front plane and is never
  corrected. An object in the patient is magnified there by the beam's divergence (typically 5 to
  15 % on a chest film), so a length measured with it is a length *at the detector*.
* ``PixelSpacing`` (0028,0030) is "in the patient", but on a projection film it only is when the
  sender corrected or calibrated it (10.7.1.1): if it was not, it must equal ImagerPixelSpacing;
  if it differs, it was corrected; without ImagerPixelSpacing and without
  ``PixelSpacingCalibrationType`` (0028,0A02) it "cannot be determined" which it is.
* ``PixelSpacingCalibrationType`` (10.7.1.2) names the correction: ``GEOMETRY`` (for an assumed
  or known magnification, true at some unspecified depth) or ``FIDUCIAL`` (against an object of
  known size, true at the depth of that object). Both hold only near the central ray.

Cross-sectional images (CT, MR, ...) have no such question: their PixelSpacing is in the
patient. The rule applied here, from first match:

============================================  ===========================  ==================
header                                        stored source                lengths are
============================================  ===========================  ==================
not a projection modality, PixelSpacing       ``PixelSpacing/patient``     in the patient
PixelSpacing + calibration type GEOMETRY      ``PixelSpacing/GEOMETRY``    calibrated
PixelSpacing + calibration type FIDUCIAL      ``PixelSpacing/FIDUCIAL``    calibrated
PixelSpacing equal to ImagerPixelSpacing      ``PixelSpacing=Imager...``   at detector
PixelSpacing differing from it                ``PixelSpacing/calibrated``  calibrated, how not stated
PixelSpacing alone                            ``PixelSpacing``             unknown basis
ImagerPixelSpacing alone                      ``ImagerPixelSpacing``       at detector
neither                                       (none)                       in pixels
============================================  ===========================  ==================

A calibration type outside the two enumerated values says nothing usable and is ignored.
``PixelSpacing`` is also what rows stored before this rule hold (migration 0018 backfilled it
without the calibration type or ImagerPixelSpacing), so "unknown basis" is the honest reading for
them too. The source travels with the spacing (stored with the instance) so that no screen can
show a detector length as if it were a patient length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from core.errors import BadInputError

__all__ = [
    "PROJECTION_MODALITIES",
    "MeasurementSpacing",
    "SpacingBasis",
    "SpacingSource",
    "measurement_spacing",
]

#: Modalities whose images are projections through the patient (PS3.3 C.7.3.1.1.1 defined terms).
PROJECTION_MODALITIES: Final = frozenset({"CR", "DX", "MG", "IO", "PX", "RF", "RG", "XA", "DF"})
#: Two spacings within this many mm are "the same value" (DS strings round-trip through floats).
_SAME_MM: Final = 1e-6


class SpacingBasis(StrEnum):
    """What a length measured with a spacing means."""

    PATIENT = "patient"  # cross-sectional image plane: in the patient by definition
    DETECTOR = "detector"  # at the detector plane: magnified, larger than in the patient
    GEOMETRY = "geometry"  # corrected for assumed or known geometric magnification
    FIDUCIAL = "fiducial"  # calibrated against an object of known size in the image
    CALIBRATED = "calibrated"  # corrected or calibrated by the sender, method not stated
    UNKNOWN = "unknown"  # the header cannot tell detector from patient


class SpacingSource(StrEnum):
    """Where a measurement spacing was read from and how it was established (its stored value).

    The value is what ``instance.spacing_source`` holds: the attribute's keyword, then what the
    header says about its basis.
    """

    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"
    PIXEL_SPACING_AT_DETECTOR = "PixelSpacing=ImagerPixelSpacing"
    PIXEL_SPACING_GEOMETRY = "PixelSpacing/GEOMETRY"
    PIXEL_SPACING_FIDUCIAL = "PixelSpacing/FIDUCIAL"
    PIXEL_SPACING_CALIBRATED = "PixelSpacing/calibrated"
    PIXEL_SPACING_PATIENT = "PixelSpacing/patient"

    @property
    def attribute(self) -> str:
        """The DICOM keyword the values came from: "PixelSpacing" or "ImagerPixelSpacing"."""
        return "ImagerPixelSpacing" if self is SpacingSource.IMAGER_PIXEL_SPACING else "PixelSpacing"

    @property
    def basis(self) -> SpacingBasis:
        """What a length measured with this spacing means."""
        return _BASIS[self]

    @property
    def at_detector(self) -> bool:
        """True when lengths are at the detector plane (not corrected for magnification)."""
        return self.basis is SpacingBasis.DETECTOR


_BASIS: Final = {
    SpacingSource.PIXEL_SPACING: SpacingBasis.UNKNOWN,
    SpacingSource.IMAGER_PIXEL_SPACING: SpacingBasis.DETECTOR,
    SpacingSource.PIXEL_SPACING_AT_DETECTOR: SpacingBasis.DETECTOR,
    SpacingSource.PIXEL_SPACING_GEOMETRY: SpacingBasis.GEOMETRY,
    SpacingSource.PIXEL_SPACING_FIDUCIAL: SpacingBasis.FIDUCIAL,
    SpacingSource.PIXEL_SPACING_CALIBRATED: SpacingBasis.CALIBRATED,
    SpacingSource.PIXEL_SPACING_PATIENT: SpacingBasis.PATIENT,
}
_CALIBRATION_TYPES: Final = {
    "GEOMETRY": SpacingSource.PIXEL_SPACING_GEOMETRY,
    "FIDUCIAL": SpacingSource.PIXEL_SPACING_FIDUCIAL,
}


@dataclass(frozen=True, slots=True)
class MeasurementSpacing:
    """The spacing lengths are measured with.

    Attributes
    ----------
    row_mm, col_mm : float
        Distance between the centres of adjacent rows and of adjacent columns, in mm (> 0).
    source : SpacingSource
        Where the values came from and what a length measured with them means.
    """

    row_mm: float
    col_mm: float
    source: SpacingSource

    def __post_init__(self) -> None:
        if not (self.row_mm > 0 and self.col_mm > 0):
            raise BadInputError(
                f"a pixel spacing must be positive in both directions, got ({self.row_mm!r}, {self.col_mm!r}) mm "
                f"from {self.source}"
            )

    @property
    def mm(self) -> tuple[float, float]:
        """``(row_mm, col_mm)``."""
        return self.row_mm, self.col_mm

    @property
    def basis(self) -> SpacingBasis:
        """What a length measured with this spacing means."""
        return self.source.basis


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=0.0, abs_tol=_SAME_MM) for x, y in zip(a, b, strict=True))


def _pixel_spacing_source(
    imager_pixel_spacing: tuple[float, float] | None, pixel_spacing: tuple[float, float], calibration_type: str
) -> SpacingSource:
    """How a projection film's PixelSpacing was established (the table in the module docstring)."""
    stated = _CALIBRATION_TYPES.get(calibration_type.strip().upper())
    if stated is not None:
        return stated
    if imager_pixel_spacing is None:
        return SpacingSource.PIXEL_SPACING
    if _same(pixel_spacing, imager_pixel_spacing):
        return SpacingSource.PIXEL_SPACING_AT_DETECTOR
    return SpacingSource.PIXEL_SPACING_CALIBRATED


def measurement_spacing(
    pixel_spacing: tuple[float, float] | None,
    imager_pixel_spacing: tuple[float, float] | None,
    *,
    calibration_type: str = "",
    projection: bool = True,
) -> MeasurementSpacing | None:
    """``PixelSpacing`` when present, else ``ImagerPixelSpacing``, else None (lengths in pixels).

    Parameters
    ----------
    pixel_spacing, imager_pixel_spacing : (float, float) or None
        The header's values in mm, (row, column); None when absent or invalid.
    calibration_type : str, default ""
        ``PixelSpacingCalibrationType`` (0028,0A02) as written; "" when absent.
    projection : bool, default True
        Whether the image is a projection radiograph (see :data:`PROJECTION_MODALITIES`); if not,
        PixelSpacing is in the patient whatever else the header says.

    Returns
    -------
    MeasurementSpacing or None
        The spacing, with the source that says what a length measured with it means.
    """
    if pixel_spacing is not None:
        source = (
            _pixel_spacing_source(imager_pixel_spacing, pixel_spacing, calibration_type)
            if projection
            else SpacingSource.PIXEL_SPACING_PATIENT
        )
        return MeasurementSpacing(pixel_spacing[0], pixel_spacing[1], source)
    if imager_pixel_spacing is not None:
        return MeasurementSpacing(imager_pixel_spacing[0], imager_pixel_spacing[1], SpacingSource.IMAGER_PIXEL_SPACING)
    return None
