from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from core.errors import DicomRejectedError
from core.imaging.dicom import read_dicom, read_header
from core.imaging.spacing import MeasurementSpacing, SpacingSource


def test_read_dicom_gives_float32_modality_units(ct_path: Path) -> None:
    # Prepare
    ds = pydicom.dcmread(ct_path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)

    # Execute
    image = read_dicom(ct_path)

    # Assert
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (ds.Rows, ds.Columns)
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    assert image.meta.sop_instance_uid == ds.SOPInstanceUID


@pytest.mark.parametrize(("slope", "intercept"), [(2.5, -100.0), (1.0, 0.0), (0.5, 17.0), (-1.0, 3.0)])
def test_rescale_slope_and_intercept_are_applied(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path], slope: float, intercept: float
) -> None:
    # Prepare
    ct_dataset.RescaleSlope, ct_dataset.RescaleIntercept = slope, intercept
    stored = ct_dataset.pixel_array.astype(np.float64)
    path = write_dataset(ct_dataset, "rescaled.dcm")

    # Execute
    pixels = read_dicom(path).pixels

    # Assert
    np.testing.assert_allclose(pixels, stored * slope + intercept, rtol=0, atol=1e-3)


def test_monochrome1_is_inverted_so_higher_is_brighter(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: the same stored values, once as MONOCHROME2 and once as MONOCHROME1
    mono2 = read_dicom(write_dataset(ct_dataset, "mono2.dcm")).pixels
    ct_dataset.PhotometricInterpretation = "MONOCHROME1"

    # Execute
    mono1 = read_dicom(write_dataset(ct_dataset, "mono1.dcm")).pixels

    # Assert: exact negation, so the order of brightness is reversed and spacing kept
    np.testing.assert_array_equal(mono1, -mono2)
    brightest_stored = np.unravel_index(np.argmin(mono2), mono2.shape)
    assert mono1[brightest_stored] == mono1.max()


def test_read_header_matches_full_read_without_pixels(ct_path: Path) -> None:
    # Execute
    header = read_header(ct_path)
    image = read_dicom(ct_path)

    # Assert
    assert header == image.meta
    assert header.rows == 128 and header.columns == 128
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert header.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert header.manufacturer == "GE MEDICAL SYSTEMS"
    assert header.kvp == pytest.approx(120.0)


def test_absent_attributes_are_empty_or_none(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare
    for keyword in ("BodyPartExamined", "KVP", "PixelSpacing", "StationName"):
        if keyword in ct_dataset:
            delattr(ct_dataset, keyword)
    path = write_dataset(ct_dataset, "sparse.dcm")

    # Execute
    meta = read_header(path)

    # Assert
    assert meta.body_part_examined == "" and meta.station_name == ""
    assert meta.kvp is None and meta.pixel_spacing_mm is None
    assert meta.view_position == ""
    assert meta.imager_pixel_spacing_mm is None and meta.measurement_spacing is None


def test_a_film_with_only_imager_pixel_spacing_is_measured_at_the_detector(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: as many CR and DX films are, ImagerPixelSpacing (0018,1164) and no PixelSpacing
    del ct_dataset.PixelSpacing
    ct_dataset.ImagerPixelSpacing = ["0.148", "0.15"]
    path = write_dataset(ct_dataset, "imager-only.dcm")

    # Execute
    meta = read_header(path)

    # Assert
    assert meta.pixel_spacing_mm is None
    assert meta.imager_pixel_spacing_mm == pytest.approx((0.148, 0.15))
    assert meta.measurement_spacing == MeasurementSpacing(0.148, 0.15, SpacingSource.IMAGER_PIXEL_SPACING)


def test_window_is_read_from_the_file(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare: multi-valued window attributes, as many scanners write them
    ct_dataset.WindowCenter, ct_dataset.WindowWidth = [40, 300], [400, 1500]
    path = write_dataset(ct_dataset, "windowed.dcm")

    # Execute
    meta = read_header(path)

    # Assert
    assert (meta.window_center, meta.window_width) == (40.0, 400.0)


def test_read_header_ignores_damage_in_the_pixels(ct_path: Path, tmp_path: Path) -> None:
    # Prepare: cut the file in the middle of its pixel data
    cut = tmp_path / "cut.dcm"
    data = ct_path.read_bytes()
    cut.write_bytes(data[: len(data) - 5000])

    # Execute
    header = read_header(cut)

    # Assert: the fast scan stops before the pixels; the full read rejects the file
    assert header.sop_instance_uid
    with pytest.raises(DicomRejectedError, match="truncated"):
        read_dicom(cut)


def test_colour_is_rejected_not_converted(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare: a single-frame YBR_FULL image that pydicom would silently convert to RGB
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    ct_dataset.set_pixel_data(rgb, photometric_interpretation="RGB", bits_stored=8)
    ct_dataset.PhotometricInterpretation = "YBR_FULL"
    path = write_dataset(ct_dataset, "ybr.dcm")

    # Execute / Assert
    with pytest.raises(DicomRejectedError, match=r"colour image \(YBR_FULL, 3 samples per pixel\)"):
        read_dicom(path)


def test_read_dicom_on_a_directory_is_a_rejection(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(DicomRejectedError, match="cannot be read"):
        read_dicom(tmp_path)


def _accepted_packaged_files() -> list[Path]:
    accepted = []
    for name in get_testdata_files():
        path = Path(name)
        try:
            if path.is_file():
                read_dicom(path)
                accepted.append(path)
        except DicomRejectedError:
            continue
    return sorted(accepted)


@pytest.mark.parametrize("path", _accepted_packaged_files(), ids=lambda p: p.name)
def test_pixels_equal_pydicoms_own_decode(path: Path) -> None:
    # Prepare: pydicom's reference decode, modality LUT and MONOCHROME1 sign, without our fast paths
    ds = pydicom.dcmread(path)
    expected = np.asarray(apply_modality_lut(pixel_array(ds, raw=True), ds), dtype=np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        expected = -expected

    # Execute
    pixels = read_dicom(path).pixels

    # Assert
    np.testing.assert_allclose(pixels, expected, rtol=1e-6, atol=1e-3)
