from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.imaging.image import DicomImage
from core.imaging.window import apply_window, default_window

# (x, center, width, expected y) from PS3.3 C.11.2.1.2.1 worked by hand.
LINEAR_VOI_CASES = [
    (40.0, 40.0, 400.0, (40 - 39.5) / 399 + 0.5),
    (-160.0, 40.0, 400.0, 0.0),  # at or below c - 0.5 - (w - 1) / 2 = -160
    (-159.0, 40.0, 400.0, (-159 - 39.5) / 399 + 0.5),
    (239.0, 40.0, 400.0, 1.0),  # at c - 0.5 + (w - 1) / 2 = 239
    (1000.0, 40.0, 400.0, 1.0),
    (0.0, 40.5, 81.0, 0.0),
    (40.0, 40.5, 81.0, 0.5),
    (80.0, 40.5, 81.0, 1.0),
    (5.0, 5.5, 2.0, 0.5),
    (5.0, 5.0, 1.0, 1.0),  # width 1: threshold at c - 0.5
    (4.5, 5.0, 1.0, 0.0),
]


@pytest.mark.parametrize(("x", "center", "width", "expected"), LINEAR_VOI_CASES)
def test_linear_voi_matches_the_standard(x: float, center: float, width: float, expected: float) -> None:
    # Execute
    y = apply_window(np.array([x], dtype=np.float32), center=center, width=width)

    # Assert
    assert y.dtype == np.float32
    assert y[0] == pytest.approx(expected, abs=1e-6)


def test_window_output_is_in_unit_interval_and_keeps_shape_and_nan() -> None:
    # Prepare
    x = np.linspace(-3000, 3000, 64, dtype=np.float32).reshape(8, 8)
    x[0, 0] = np.nan

    # Execute
    y = apply_window(x, center=0.0, width=500.0)

    # Assert
    assert y.shape == (8, 8)
    assert np.isnan(y[0, 0])
    finite = y[np.isfinite(y)]
    assert finite.min() == 0.0 and finite.max() == 1.0
    assert np.all(np.diff(finite) >= 0)


@pytest.mark.parametrize(("center", "width"), [(0.0, 0.5), (0.0, 0.0), (0.0, -10.0), (np.nan, 10.0), (0.0, np.inf)])
def test_undefined_window_raises(center: float, width: float) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="undefined window"):
        apply_window(np.zeros(3, dtype=np.float32), center=center, width=width)


def test_default_window_comes_from_the_file(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare
    ct_dataset.WindowCenter, ct_dataset.WindowWidth = 40, 400
    image = read_dicom(write_dataset(ct_dataset, "windowed.dcm"))

    # Execute / Assert
    assert default_window(image) == (40.0, 400.0)


def test_default_window_follows_monochrome1_inversion(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: the same image and window as MONOCHROME2 and as MONOCHROME1
    ct_dataset.WindowCenter, ct_dataset.WindowWidth = 40, 400
    mono2 = read_dicom(write_dataset(ct_dataset, "mono2.dcm"))
    ct_dataset.PhotometricInterpretation = "MONOCHROME1"
    mono1 = read_dicom(write_dataset(ct_dataset, "mono1.dcm"))

    # Execute
    (center2, width2), (center1, width1) = default_window(mono2), default_window(mono1)
    shown2 = apply_window(mono2.pixels, center=center2, width=width2)
    shown1 = apply_window(mono1.pixels, center=center1, width=width1)

    # Assert: MONOCHROME1 displays as the inverse of MONOCHROME2 (to within the standard's half-unit offset)
    assert (center1, width1) == (-40.0, 400.0)
    np.testing.assert_allclose(shown1, 1.0 - shown2, atol=1.0 / 399 + 1e-6)


def test_default_window_falls_back_to_percentiles(ct_path: Path) -> None:
    # Prepare
    image = read_dicom(ct_path)
    assert image.meta.window_center is None
    lo, hi = np.percentile(image.pixels, [0.5, 99.5])

    # Execute
    center, width = default_window(image)
    shown = apply_window(np.array([lo, hi], dtype=np.float32), center=center, width=width)

    # Assert
    np.testing.assert_allclose(shown, [0.0, 1.0], atol=1e-6)


def test_default_window_without_finite_pixels_raises(ct_path: Path) -> None:
    # Prepare
    image = read_dicom(ct_path)
    blank = DicomImage(pixels=np.full((2, 2), np.nan, dtype=np.float32), meta=image.meta)

    # Execute / Assert
    with pytest.raises(BadInputError, match="no finite pixel"):
        default_window(blank)
