"""Which pixel spacing lengths are measured with, and which attribute it came from.

Projection radiographs (CR, DX) state up to two spacings. ``ImagerPixelSpacing`` (0018,1164) is
the spacing at the detector's front plane; an object in the patient is magnified there by the
beam's divergence (typically 5 to 15 % on a chest film), so a length measured with it is a length
*at the detector*. ``PixelSpacing`` (0028,0030), when a projection film has it, is the spacing the
sender asserts for the patient plane or a calibrated one (PS3.3 10.7.1.3; ``PixelSpacingCalibrationType``
says how). Many CR and DX films carry only ``ImagerPixelSpacing``.

The rule, as radiology viewers apply it: measure with ``PixelSpacing`` when it is present, else
with ``ImagerPixelSpacing`` and label the length "at detector", else measure in pixels. The
source travels with the spacing (stored with the instance) so that no screen can show a detector
length as if it were a patient length.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import BadInputError

__all__ = ["MeasurementSpacing", "SpacingSource", "measurement_spacing"]


class SpacingSource(StrEnum):
    """The DICOM attribute a measurement spacing was read from (its keyword, as stored)."""

    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"

    @property
    def at_detector(self) -> bool:
        """True when lengths are at the detector plane (not corrected for magnification)."""
        return self is SpacingSource.IMAGER_PIXEL_SPACING


@dataclass(frozen=True, slots=True)
class MeasurementSpacing:
    """The spacing lengths are measured with.

    Attributes
    ----------
    row_mm, col_mm : float
        Distance between the centres of adjacent rows and of adjacent columns, in mm (> 0).
    source : SpacingSource
        The attribute the values came from.
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


def measurement_spacing(
    pixel_spacing: tuple[float, float] | None, imager_pixel_spacing: tuple[float, float] | None
) -> MeasurementSpacing | None:
    """``PixelSpacing`` when present, else ``ImagerPixelSpacing``, else None (lengths in pixels).

    Parameters
    ----------
    pixel_spacing, imager_pixel_spacing : (float, float) or None
        The header's values in mm, (row, column); None when absent or invalid.
    """
    if pixel_spacing is not None:
        return MeasurementSpacing(pixel_spacing[0], pixel_spacing[1], SpacingSource.PIXEL_SPACING)
    if imager_pixel_spacing is not None:
        return MeasurementSpacing(imager_pixel_spacing[0], imager_pixel_spacing[1], SpacingSource.IMAGER_PIXEL_SPACING)
    return None
