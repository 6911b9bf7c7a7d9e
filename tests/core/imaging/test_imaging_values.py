from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from core.imaging.values import AttributeReader

TEXT_KEYWORDS = [
    "SOPInstanceUID",
    "StudyInstanceUID",
    "Modality",
    "ImageType",
    "Manufacturer",
    "InstitutionName",
    "PatientID",
    "PatientName",
    "PatientAge",
    "StudyDate",
    "PhotometricInterpretation",
]
NUMBER_KEYWORDS = ["Rows", "Columns", "BitsStored", "KVP", "PixelSpacing", "WindowCenter", "RescaleIntercept"]


def _parsable_packaged_files() -> list[Path]:
    paths = []
    for name in get_testdata_files():
        path = Path(name)
        try:
            if path.is_file():
                pydicom.dcmread(path, stop_before_pixels=True)
                paths.append(path)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
    return sorted(paths)


def _pydicom_strings(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip(" \x00") for v in items]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _parsable_packaged_files(), ids=lambda p: p.name)
def test_raw_fast_path_matches_pydicom_conversion(path: Path) -> None:
    # Prepare: one dataset read by hand from raw bytes, one converted by pydicom
    fast, reference = pydicom.dcmread(path, stop_before_pixels=True), pydicom.dcmread(path, stop_before_pixels=True)
    reader = AttributeReader(fast)

    # Execute / Assert
    for keyword in TEXT_KEYWORDS:
        assert reader.texts(keyword) == tuple(_pydicom_strings(reference, keyword)), keyword
    for keyword in NUMBER_KEYWORDS:
        try:
            expected = [float(v) for v in _pydicom_strings(reference, keyword)]
        except ValueError:
            expected = []
        assert reader.numbers(keyword) == pytest.approx(expected), keyword


def test_binary_zero_is_a_value_and_padding_is_empty(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare
    ct_dataset.PixelRepresentation = 0
    ct_dataset.AccessionNumber = "  "
    reader = AttributeReader(pydicom.dcmread(write_dataset(ct_dataset, "values.dcm")))

    # Execute / Assert
    assert not reader.is_empty("PixelRepresentation")
    assert reader.numbers("PixelRepresentation") == [0.0]
    assert reader.is_empty("AccessionNumber")
    assert reader.is_empty("ViewPosition") and not reader.present("ViewPosition")


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
def test_non_ascii_text_goes_through_pydicom(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path], charset: str
) -> None:
    # Prepare
    ct_dataset.SpecificCharacterSet = charset
    ct_dataset.InstitutionName = "Hôpital Européen"
    reader = AttributeReader(pydicom.dcmread(write_dataset(ct_dataset, "latin.dcm")))

    # Execute / Assert
    assert reader.text("InstitutionName") == "Hôpital Européen"


def test_implicit_vr_values_use_the_dictionary(tmp_path: Path) -> None:
    # Prepare
    path = Path(get_testdata_files("MR_small_implicit.dcm")[0])
    reader = AttributeReader(pydicom.dcmread(path))

    # Execute / Assert
    assert reader.first_int("Rows") == 64
    assert reader.text("Modality") == "MR"
