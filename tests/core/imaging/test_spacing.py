"""The measurement spacing rule (PS3.3 10.7.1): which spacing a length uses and what the length means.

One case per row of the table in ``core.imaging.spacing``, the same cases read from real DICOM
headers (pydicom's CT example re-labelled as a DX film), and the stored source's round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from core.errors import BadInputError
from core.imaging.dicom import read_header
from core.imaging.spacing import MeasurementSpacing, SpacingBasis, SpacingSource, measurement_spacing

PS = (0.2, 0.3)  # PixelSpacing
IPS = (0.15, 0.16)  # ImagerPixelSpacing, different from PS

# (pixel, imager, calibration type, projection, expected source or None)
CASES = [
    pytest.param(PS, IPS, "", False, SpacingSource.PIXEL_SPACING_PATIENT, id="cross-sectional: in the patient"),
    pytest.param(PS, IPS, "GEOMETRY", True, SpacingSource.PIXEL_SPACING_GEOMETRY, id="GEOMETRY: calibrated"),
    pytest.param(PS, None, "FIDUCIAL", True, SpacingSource.PIXEL_SPACING_FIDUCIAL, id="FIDUCIAL: calibrated"),
    pytest.param(PS, PS, "geometry ", True, SpacingSource.PIXEL_SPACING_GEOMETRY, id="type read case-blind"),
    pytest.param(PS, PS, "", True, SpacingSource.PIXEL_SPACING_AT_DETECTOR, id="PS equal to IPS: at detector"),
    pytest.param(PS, IPS, "", True, SpacingSource.PIXEL_SPACING_CALIBRATED, id="PS differs from IPS: calibrated"),
    pytest.param(PS, None, "", True, SpacingSource.PIXEL_SPACING, id="PS alone: unknown basis"),
    pytest.param(PS, PS, "MAGIC", True, SpacingSource.PIXEL_SPACING_AT_DETECTOR, id="unknown type ignored"),
    pytest.param(None, IPS, "GEOMETRY", True, SpacingSource.IMAGER_PIXEL_SPACING, id="IPS alone: at detector"),
    pytest.param(None, None, "FIDUCIAL", True, None, id="neither: pixels"),
]


@pytest.mark.parametrize(("pixel", "imager", "calibration", "projection", "expected"), CASES)
def test_each_header_gets_the_source_the_standard_gives_it(
    pixel: tuple[float, float] | None,
    imager: tuple[float, float] | None,
    calibration: str,
    projection: bool,
    expected: SpacingSource | None,
) -> None:
    # Execute
    spacing = measurement_spacing(pixel, imager, calibration_type=calibration, projection=projection)

    # Assert: PixelSpacing's values whenever it is present, ImagerPixelSpacing's otherwise
    if expected is None:
        assert spacing is None
    else:
        values = pixel if pixel is not None else imager
        assert spacing == MeasurementSpacing(*values, expected)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("source", "basis"),
    [
        (SpacingSource.PIXEL_SPACING, SpacingBasis.UNKNOWN),
        (SpacingSource.IMAGER_PIXEL_SPACING, SpacingBasis.DETECTOR),
        (SpacingSource.PIXEL_SPACING_AT_DETECTOR, SpacingBasis.DETECTOR),
        (SpacingSource.PIXEL_SPACING_GEOMETRY, SpacingBasis.GEOMETRY),
        (SpacingSource.PIXEL_SPACING_FIDUCIAL, SpacingBasis.FIDUCIAL),
        (SpacingSource.PIXEL_SPACING_CALIBRATED, SpacingBasis.CALIBRATED),
        (SpacingSource.PIXEL_SPACING_PATIENT, SpacingBasis.PATIENT),
    ],
)
def test_every_source_says_what_a_length_means_and_survives_storage(source: SpacingSource, basis: SpacingBasis) -> None:
    # Assert: the stored string (instance.spacing_source, 64 characters) reads back as the same source
    assert source.basis is basis
    assert source.at_detector is (basis is SpacingBasis.DETECTOR)
    assert SpacingSource(str(source)) is source and len(str(source)) <= 64
    assert source.attribute == (
        "ImagerPixelSpacing" if source is SpacingSource.IMAGER_PIXEL_SPACING else "PixelSpacing"
    )


def test_only_detector_spacings_are_at_the_detector() -> None:
    assert SpacingSource.IMAGER_PIXEL_SPACING.at_detector and not SpacingSource.PIXEL_SPACING.at_detector


def test_a_spacing_that_is_not_positive_is_named() -> None:
    with pytest.raises(BadInputError, match=r"\(0\.2, 0\.0\) mm from ImagerPixelSpacing"):
        MeasurementSpacing(0.2, 0.0, SpacingSource.IMAGER_PIXEL_SPACING)


@pytest.mark.parametrize(("pixel", "imager", "calibration", "projection", "expected"), CASES)
def test_the_header_reader_applies_the_rule(
    ct_dataset: Dataset,
    write_dataset: Callable[[Dataset, str], Path],
    pixel: tuple[float, float] | None,
    imager: tuple[float, float] | None,
    calibration: str,
    projection: bool,
    expected: SpacingSource | None,
) -> None:
    # Prepare: the CT example as a DX film (or left a CT), with the attributes of the case
    ct_dataset.Modality = "DX" if projection else "CT"
    for keyword, value in (("PixelSpacing", pixel), ("ImagerPixelSpacing", imager)):
        if value is None:
            if keyword in ct_dataset:
                delattr(ct_dataset, keyword)
        else:
            setattr(ct_dataset, keyword, [f"{v:g}" for v in value])
    if calibration:
        ct_dataset.PixelSpacingCalibrationType = calibration.strip()
        ct_dataset.PixelSpacingCalibrationDescription = "test"
    path = write_dataset(ct_dataset, "film.dcm")

    # Execute
    spacing = read_header(path).measurement_spacing

    # Assert
    assert (None if spacing is None else spacing.source) is expected


@pytest.mark.parametrize("source", list(SpacingSource), ids=str)
def test_the_viewer_payload_says_what_each_length_means(source: SpacingSource) -> None:
    # The words the reader sees (ui.components.dicom_viewer.payload), checked here beside the rule
    # they put into words: no source may be written as a plain "mm" unless it is in the patient.
    from ui.components.dicom_viewer.payload import CORNERSTONE_CALIBRATION, length_unit, spacing_note

    # Prepare
    spacing = MeasurementSpacing(0.2, 0.2, source)

    # Execute
    unit, note = length_unit(spacing), spacing_note(spacing)

    # Assert
    expected_words = {
        SpacingBasis.PATIENT: ("mm", "in the patient"),
        SpacingBasis.DETECTOR: ("mm at detector", "at detector"),
        SpacingBasis.GEOMETRY: ("mm calibrated (geometry)", "GEOMETRY"),
        SpacingBasis.FIDUCIAL: ("mm calibrated (fiducial)", "FIDUCIAL"),
        SpacingBasis.CALIBRATED: ("mm calibrated", "how it was corrected is not stated"),
        SpacingBasis.UNKNOWN: ("mm (basis unknown)", "basis unknown"),
    }[source.basis]
    assert unit == expected_words[0]
    assert expected_words[1] in note and source.attribute in note
    assert (CORNERSTONE_CALIBRATION[source.basis] == "") is (source.basis is SpacingBasis.PATIENT)
