from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from openjpeg.utils import encode_array
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from core.errors import DicomRejectedError
from core.imaging.gate import check_file
from core.imaging.pixels import stored_value_range, values_outside


def _reject_reason(path: Path) -> str:
    with pytest.raises(DicomRejectedError) as info:
        check_file(path)
    return info.value.reason


def _with_frame(ds: Dataset, syntax: str, frame: bytes) -> Dataset:
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return ds


def _j2k(array: np.ndarray, bits_stored: int) -> bytes:
    # photometric_interpretation=0 is MONOCHROME in openjpeg's encoder.
    return encode_array(array, bits_stored=bits_stored, photometric_interpretation=0, use_mct=False)


@pytest.mark.parametrize(
    ("bits_stored", "signed", "expected"),
    [
        (1, False, (0, 1)),
        (8, False, (0, 255)),
        (12, False, (0, 4095)),
        (8, True, (-128, 127)),
        (16, True, (-32768, 32767)),
    ],
)
def test_stored_value_range_follows_bits_stored(bits_stored: int, signed: bool, expected: tuple[int, int]) -> None:
    # Execute / Assert
    assert stored_value_range(bits_stored, signed=signed) == expected


def test_values_outside_reports_the_span_only_when_outside() -> None:
    # Prepare
    inside = np.array([[0, 4095]], dtype=np.uint16)
    outside = np.array([[3, 60000]], dtype=np.uint16)

    # Execute / Assert
    assert values_outside(inside, bits_stored=12, signed=False) is None
    assert values_outside(outside, bits_stored=12, signed=False) == (3, 60000)
    assert values_outside(np.zeros((2, 2), np.float32), bits_stored=12, signed=False) is None


def test_decoded_values_above_bits_stored_are_rejected(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: a 16-bit JPEG 2000 stream in a dataset that says 12 bits unsigned; pydicom masks
    # unused bits of native data but not of JPEG 2000, so 60000 reaches the pipeline on HEAD
    ct_dataset.BitsStored, ct_dataset.HighBit, ct_dataset.PixelRepresentation = 12, 11, 0
    frame = np.tile(np.linspace(0, 60000, 128, dtype=np.uint16), (128, 1))
    path = write_dataset(_with_frame(ct_dataset, JPEG2000Lossless, _j2k(frame, 16)), "too_many_bits.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the decoded pixel values span 0 to 60000, outside the 0 to 4095 that BitsStored 12 allows for unsigned pixels."
    )


def test_decoded_values_outside_the_signed_range_are_rejected(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: signed values of ±2000 in a dataset that says 8 bits signed
    ct_dataset.BitsStored, ct_dataset.HighBit, ct_dataset.PixelRepresentation = 8, 7, 1
    frame = np.tile(np.linspace(-2000, 2000, 128).astype(np.int16), (128, 1))
    path = write_dataset(_with_frame(ct_dataset, JPEG2000Lossless, _j2k(frame, 16)), "signed.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the decoded pixel values span -2000 to 2000, outside the -128 to 127 that BitsStored 8 allows "
        "for signed pixels."
    )


def test_one_pixel_codestream_is_not_broadcast_over_the_image(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: a 1 × 1 JPEG in a 128 × 128 dataset; numpy broadcast its one value over every
    # pixel and HEAD accepted a constant image
    ct_dataset.BitsAllocated, ct_dataset.BitsStored, ct_dataset.HighBit = 8, 8, 7
    ct_dataset.PixelRepresentation = 0
    buffer = io.BytesIO()
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(buffer, format="JPEG")
    path = write_dataset(_with_frame(ct_dataset, JPEGBaseline8Bit, buffer.getvalue()), "one_pixel.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the JPEG codestream holds a frame of 1 × 1 × 1 (rows × columns × components), "
        "not the 128 × 128 × 1 that Rows, Columns and SamplesPerPixel state."
    )


def test_codestream_of_another_size_is_rejected_by_its_header(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: half the rows
    frame = np.zeros((64, 128), dtype=np.int16)
    path = write_dataset(_with_frame(ct_dataset, JPEG2000Lossless, _j2k(frame, 16)), "half.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the JPEG 2000 codestream holds a frame of 64 × 128 × 1 (rows × columns × components), "
        "not the 128 × 128 × 1 that Rows, Columns and SamplesPerPixel state."
    )


@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("BitsStored", 20, "BitsStored has the invalid value 20; it must be from 1 to BitsAllocated (16)."),
        ("BitsStored", 0, "BitsStored has the invalid value 0; it must be from 1 to BitsAllocated (16)."),
        ("BitsAllocated", 12, "BitsAllocated has the invalid value 12; it must be 1, 8, 16 or 32."),
        ("BitsAllocated", 64, "BitsAllocated has the invalid value 64; it must be 1, 8, 16 or 32."),
        (
            "PixelRepresentation",
            2,
            "PixelRepresentation has the invalid value 2; it must be 0 (unsigned) or 1 (signed).",
        ),
    ],
)
def test_inconsistent_pixel_module_is_rejected(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path], keyword: str, value: int, reason: str
) -> None:
    # Prepare
    setattr(ct_dataset, keyword, value)
    path = write_dataset(ct_dataset, f"{keyword}.dcm")

    # Execute / Assert
    assert _reject_reason(path) == reason
