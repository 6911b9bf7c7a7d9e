from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, BasicTextSRStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

import core.imaging.gate as gate_module
from core.errors import DicomRejectedError
from core.imaging.gate import AcceptedInstance, check_file

# Every file inside the installed pydicom package (get_testdata_files never downloads).
PACKAGED_FILES = sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())

# Files whose verdict is known: None means accepted, a string is a fragment of the reason.
KNOWN_VERDICTS = {
    "CT_small.dcm": None,
    "MR_small.dcm": None,
    "MR_small_RLE.dcm": None,
    "MR_small_bigendian.dcm": None,
    "JPEG2000.dcm": None,
    "image_dfl.dcm": None,
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "rtplan.dcm": "non-image SOP class",
    "test-SR.dcm": "non-image SOP class",
    "waveform_ecg.dcm": "non-image SOP class",
    "rtdose.dcm": "multi-frame image (15 frames)",
    "SC_rgb_rle.dcm": "colour image (RGB",
    "examples_palette.dcm": "colour image (PALETTE COLOR",
    "README.txt": "not a DICOM file",
    "JPEG-lossy.dcm": "pixel data cannot be decoded",
    "badVR.dcm": "NumberOfFrames has the invalid value",
}


def _reject_reason(path: Path) -> str:
    with pytest.raises(DicomRejectedError) as info:
        check_file(path)
    return info.value.reason


@pytest.mark.parametrize("path", PACKAGED_FILES, ids=lambda p: str(p.relative_to(PACKAGED_FILES[0].parents[0])))
def test_every_packaged_file_is_accepted_or_rejected_with_a_reason(path: Path) -> None:
    # Execute
    try:
        accepted = check_file(path)
    except DicomRejectedError as rejection:
        # Assert: one sentence, no traceback text
        assert rejection.reason.strip() and rejection.reason.endswith(".")
        assert "\n" not in rejection.reason
        return

    # Assert
    assert accepted.image.pixels.dtype == np.float32
    assert accepted.image.pixels.shape == (accepted.meta.rows, accepted.meta.columns)


def test_the_package_holds_the_files_the_verdict_table_names() -> None:
    # Assert
    names = {p.name for p in PACKAGED_FILES}
    assert len(PACKAGED_FILES) > 100
    assert set(KNOWN_VERDICTS) <= names


@pytest.mark.parametrize(("name", "fragment"), sorted(KNOWN_VERDICTS.items()))
def test_known_packaged_files_get_the_expected_verdict(name: str, fragment: str | None) -> None:
    # Prepare
    path = next(p for p in PACKAGED_FILES if p.name == name)

    # Execute / Assert
    if fragment is None:
        assert isinstance(check_file(path), AcceptedInstance)
    else:
        assert fragment in _reject_reason(path)


def test_accepted_instance_carries_the_file_hash(ct_path: Path) -> None:
    # Execute
    accepted = check_file(ct_path)

    # Assert
    assert accepted.sha256 == hashlib.sha256(ct_path.read_bytes()).hexdigest()
    assert accepted.path == ct_path
    assert accepted.meta is accepted.image.meta


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.98, 0.9995])
def test_truncated_copy_is_rejected(ct_path: Path, tmp_path: Path, keep: float) -> None:
    # Prepare
    data = ct_path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep)])

    # Execute / Assert
    assert "truncated" in _reject_reason(cut)


def test_truncated_compressed_file_is_rejected(tmp_path: Path) -> None:
    # Prepare: a JPEG 2000 file cut just before its closing sequence delimiter
    data = get_testdata_files("JPEG2000.dcm")[0]
    cut = tmp_path / "j2k_cut.dcm"
    cut.write_bytes(Path(data).read_bytes()[:-3])

    # Execute / Assert
    assert "truncated" in _reject_reason(cut)


def test_text_file_is_not_dicom(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "notes.txt"
    path.write_text("patient list\n", encoding="utf-8")

    # Execute / Assert
    assert _reject_reason(path).startswith("not a DICOM file")


def test_empty_file_is_not_dicom(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / ".DS_Store"
    path.write_bytes(b"")

    # Execute / Assert
    assert _reject_reason(path).startswith("not a DICOM file")


@pytest.mark.parametrize(
    ("keyword", "new_length", "fragment"),
    [
        ("PatientID", 3, "odd length 3"),
        ("PatientName", 60000, "truncated"),
        ("SOPInstanceUID", 4000, "bad element length"),
        ("StudyInstanceUID", 200, "bad element length"),
        ("Rows", 4, "bad element length"),
    ],
)
def test_corrupted_element_length_is_rejected(ct_path: Path, keyword: str, new_length: int, fragment: str) -> None:
    # Prepare: overwrite the 2-byte length of an explicit VR little endian element in place
    elem = pydicom.dcmread(ct_path).get_item(keyword)
    data = bytearray(ct_path.read_bytes())
    data[elem.value_tell - 2 : elem.value_tell] = struct.pack("<H", new_length)
    ct_path.write_bytes(bytes(data))

    # Execute / Assert
    assert fragment in _reject_reason(ct_path)


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Rows"])
def test_missing_required_attribute_is_named(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path], keyword: str
) -> None:
    # Prepare
    delattr(ct_dataset, keyword)
    path = write_dataset(ct_dataset, f"no_{keyword}.dcm")

    # Execute / Assert
    assert _reject_reason(path) == f"missing required attribute {keyword}."


def test_invalid_uid_is_rejected(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare
    ct_dataset.StudyInstanceUID = "1.2.03.abc"
    path = write_dataset(ct_dataset, "bad_uid.dcm")

    # Execute / Assert
    assert "StudyInstanceUID '1.2.03.abc' is not a valid DICOM UID" in _reject_reason(path)


def test_structured_report_without_pixels_is_a_non_image(write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare: an SR-like dataset with every UID but no pixel data
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "SR"
    path = write_dataset(ds, "report.dcm")

    # Execute
    reason = _reject_reason(path)

    # Assert
    assert reason.startswith("non-image SOP class 1.2.840.10008.5.1.4.1.1.88.11 (Basic Text SR Storage)")


def test_image_without_pixel_data_is_missing_it(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare
    del ct_dataset.PixelData
    path = write_dataset(ct_dataset, "no_pixels.dcm")

    # Execute / Assert
    assert _reject_reason(path) == "missing required attribute PixelData."


# A JPEG 2000 main header (SOC, SIZ for 128 × 128 × 1) that passes the marker check, then junk.
_J2K_HEADER_THEN_JUNK = (
    b"\xff\x4f\xff\x51\x00\x29\x00\x00"
    + struct.pack(">8L", 128, 128, 0, 0, 128, 128, 0, 0)
    + b"\x00\x01\x0f\x01\x01"
    + b"\x01\x02" * 50
)


@pytest.mark.parametrize(
    ("transfer_syntax", "stream", "fragment"),
    [
        (JPEG2000Lossless, _J2K_HEADER_THEN_JUNK, "pixel data cannot be decoded (RuntimeError"),
        (UID("1.2.840.10008.1.2.4.100"), b"\x01\x02" * 50, "pixel data cannot be decoded: Vigil trusts no decoder"),
    ],
    ids=["j2k-header-then-junk", "mpeg2"],
)
def test_undecodable_pixels_are_rejected(
    ct_dataset: Dataset,
    write_dataset: Callable[[Dataset, str], Path],
    transfer_syntax: UID,
    stream: bytes,
    fragment: str,
) -> None:
    # Prepare: a compressed transfer syntax whose fragment is not a valid codestream
    ct_dataset.file_meta.TransferSyntaxUID = transfer_syntax
    ct_dataset.PixelData = encapsulate([stream])
    ct_dataset["PixelData"].VR = "OB"
    path = write_dataset(ct_dataset, "garbage_stream.dcm")

    # Execute / Assert
    assert fragment in _reject_reason(path)


def test_multi_frame_is_rejected_with_a_reason(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare
    frames = np.zeros((3, 16, 16), dtype=np.uint16)
    ct_dataset.set_pixel_data(frames, photometric_interpretation="MONOCHROME2", bits_stored=12)
    path = write_dataset(ct_dataset, "frames.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "multi-frame image (3 frames): the single-frame greyscale pipeline cannot score it."
    )


def test_unexpected_exception_becomes_a_rejection(ct_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    def explode(ds: Dataset, path: Path) -> None:
        raise ZeroDivisionError("division by zero in a plugin")

    monkeypatch.setattr(gate_module, "image_from_dataset", explode)

    # Execute
    reason = _reject_reason(ct_path)

    # Assert
    assert "ZeroDivisionError: division by zero in a plugin" in reason


def test_unreadable_path_is_a_rejection(tmp_path: Path) -> None:
    # Execute / Assert: core.imaging.files refuses anything but a regular file, unread
    assert _reject_reason(tmp_path) == "a folder, not a regular file: nothing was read."


def test_unprintable_sop_class_is_shown_escaped(write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare: a damaged length can make a UID swallow the bytes after it, NULs included
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.3\x00\x02\x00UI"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    path = write_dataset(ds, "swallowed.dcm")

    # Execute
    reason = _reject_reason(path)

    # Assert: one printable sentence
    assert reason == "non-image SOP class '1.2.3\\x00\\x02\\x00UI': it has no pixel data to score."
    assert reason.isprintable()
