"""The measurement spacing rule: PixelSpacing, else ImagerPixelSpacing (at detector), else pixels."""

from __future__ import annotations

import pytest

from core.errors import BadInputError
from core.imaging.spacing import MeasurementSpacing, SpacingSource, measurement_spacing


@pytest.mark.parametrize(
    ("pixel", "imager", "expected"),
    [
        ((0.2, 0.3), (0.15, 0.15), MeasurementSpacing(0.2, 0.3, SpacingSource.PIXEL_SPACING)),
        (None, (0.15, 0.16), MeasurementSpacing(0.15, 0.16, SpacingSource.IMAGER_PIXEL_SPACING)),
        ((0.2, 0.2), None, MeasurementSpacing(0.2, 0.2, SpacingSource.PIXEL_SPACING)),
        (None, None, None),
    ],
)
def test_pixel_spacing_first_then_imager_pixel_spacing(
    pixel: tuple[float, float] | None, imager: tuple[float, float] | None, expected: MeasurementSpacing | None
) -> None:
    assert measurement_spacing(pixel, imager) == expected


def test_only_imager_pixel_spacing_is_at_the_detector() -> None:
    assert SpacingSource.IMAGER_PIXEL_SPACING.at_detector and not SpacingSource.PIXEL_SPACING.at_detector


def test_a_spacing_that_is_not_positive_is_named() -> None:
    with pytest.raises(BadInputError, match=r"\(0\.2, 0\.0\) mm from ImagerPixelSpacing"):
        MeasurementSpacing(0.2, 0.0, SpacingSource.IMAGER_PIXEL_SPACING)
