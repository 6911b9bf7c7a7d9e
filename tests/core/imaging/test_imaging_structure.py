from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from core.errors import DicomRejectedError
from core.imaging.gate import AcceptedInstance, check_file
from tests.core.imaging.conftest import encode_ct


def _reject_reason(path: Path) -> str:
    with pytest.raises(DicomRejectedError) as info:
        check_file(path)
    return info.value.reason


def _file_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encoded_bytes(syntax: str) -> bytes:
    """The CT example in ``syntax``, without its trailing padding, so that pixel data ends the file."""
    ds = encode_ct(syntax)
    del ds[0xFFFCFFFC]
    return _file_bytes(ds)


def _pixel_data_start(data: bytes) -> int:
    """Offset of the Pixel Data element's value (after its 12-byte explicit VR header)."""
    return int(pydicom.dcmread(io.BytesIO(data)).get_item("PixelData").value_tell)


def _write(tmp_path: Path, data: bytes, name: str = "cut.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- item 4: truncation is named as truncation -------------------------------------------------------


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless])
@pytest.mark.parametrize(
    "where", ["offset table header", "fragment header", "fragment start", "middle", "before delimiter"]
)
def test_cut_inside_encapsulated_pixel_data_is_truncation(tmp_path: Path, syntax: str, where: str) -> None:
    # Prepare: pydicom loses the whole data set when an undefined-length element never closes,
    # which HEAD reported as "missing required attribute PixelData"
    data = _encoded_bytes(syntax)
    value = _pixel_data_start(data)
    cut = {
        "offset table header": value + 5,
        "fragment header": value + 12,
        "fragment start": value + 40,
        "middle": (value + len(data)) // 2,
        "before delimiter": len(data) - 8,
    }[where]

    # Execute
    reason = _reject_reason(_write(tmp_path, data[:cut]))

    # Assert
    assert reason.startswith("the file is truncated: "), reason
    assert "(7FE0,0010)" in reason


def test_cut_fragment_names_its_shortfall(tmp_path: Path) -> None:
    # Prepare: the one fragment follows the offset table item and its own 8-byte header
    data = _encoded_bytes(JPEG2000Lossless)
    value = _pixel_data_start(data)
    (table,) = struct.unpack_from("<L", data, value + 4)
    (declared,) = struct.unpack_from("<L", data, value + 8 + table + 4)
    cut = value + 8 + table + 8 + 1000

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data[:cut])) == (
        f"the file is truncated: fragment 1 of the encapsulated pixel data (7FE0,0010) declares {declared} bytes "
        "but only 1000 remain."
    )


def test_complete_fragments_without_their_delimiter_are_truncation(tmp_path: Path) -> None:
    # Prepare: drop exactly the 8-byte sequence delimiter item
    data = _encoded_bytes(RLELossless)

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data[:-8])) == (
        "the file is truncated: the encapsulated pixel data (7FE0,0010) ends after 1 fragment "
        "without its sequence delimiter."
    )


@pytest.mark.parametrize("length", [0x7FFFFFFF, 0xFFFFFFF0])
def test_fragment_longer_than_the_pixel_data_is_a_bad_length(tmp_path: Path, length: int) -> None:
    # Prepare: pydicom finds the value's end by its delimiter and read such a fragment as "the
    # rest", so HEAD accepted the file
    data = _encoded_bytes(JPEG2000Lossless)
    value = _pixel_data_start(data)
    (table,) = struct.unpack_from("<L", data, value + 4)
    at = value + 8 + table + 4
    (actual,) = struct.unpack_from("<L", data, at)
    patched = data[:at] + struct.pack("<L", length) + data[at + 4 :]

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, patched)) == (
        f"bad element length: fragment 1 of the encapsulated pixel data (7FE0,0010) declares {length} bytes "
        f"but only {actual} remain before its sequence delimiter."
    )


@pytest.mark.parametrize("cut", [136, 143, 150, 180, 250])
def test_cut_inside_file_meta_is_truncation(tmp_path: Path, cut: int) -> None:
    # Prepare: HEAD said "unknown transfer syntax", "non-image SOP class 1.2.8" or "unpack requires..."
    data = _encoded_bytes(JPEG2000Lossless)
    assert cut < 144 + struct.unpack_from("<L", data, 140)[0]

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data[:cut])).startswith(
        "the file is truncated: it ends inside its file meta information"
    )


@pytest.mark.parametrize("into", [10, 14, 100, 300])
def test_cut_inside_a_sequence_of_undefined_length_is_truncation(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path], tmp_path: Path, into: int
) -> None:
    # Prepare: pydicom reads such a sequence at once and raises OSError("No tag to read ...") in an
    # item header, or struct.error in the sequence's own length, which HEAD reported as "the file
    # cannot be read" and "pydicom failed"
    items = []
    for _ in range(3):
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ct_dataset.SOPClassUID, generate_uid()
        item.is_undefined_length_sequence_item = True
        items.append(item)
    ct_dataset.ReferencedImageSequence = Sequence(items)
    ct_dataset["ReferencedImageSequence"].is_undefined_length = True
    data = write_dataset(ct_dataset, "with_sequence.dcm").read_bytes()
    start = data.index(b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff")

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data[: start + into])).startswith("the file is truncated")


# --- item 6: private elements do not decide by heuristics ----------------------------------------------


def _add_private(ds: Dataset, vr: str, value: str) -> int:
    """Add a private element in group 0011 and return its tag."""
    block = ds.private_block(0x0011, "VIGIL PROBE", create=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that a CS over 16 characters is invalid
        block.add_new(0x01, vr, value)
    return int(block.get_tag(0x01))


def _set_length(data: bytes, tag: int, length: int, *, drop: int = 0) -> bytes:
    """Rewrite the 2-byte explicit VR length of ``tag`` and drop ``drop`` bytes of its value."""
    elem = pydicom.dcmread(io.BytesIO(data)).get_item(tag)
    start = int(elem.value_tell)
    kept = data[start : start + length] + data[start + length + drop :]
    return data[: start - 2] + struct.pack("<H", length) + kept


def test_odd_length_private_element_does_not_decide(ct_dataset: Dataset, tmp_path: Path) -> None:
    # Prepare: de-identification tools often leave an odd-length private value
    tag = _add_private(ct_dataset, "LO", "ANON5")  # written padded to 6 bytes; made 5 again below
    data = _set_length(_file_bytes(ct_dataset), tag, 5, drop=1)

    # Execute
    accepted = check_file(_write(tmp_path, data))

    # Assert
    assert isinstance(accepted, AcceptedInstance)


def test_odd_length_public_element_still_rejected(ct_dataset: Dataset, tmp_path: Path) -> None:
    # Prepare
    ct_dataset.StationName = "ABCDEF"
    data = _set_length(_file_bytes(ct_dataset), 0x00081010, 5, drop=1)

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data)) == "bad element length: element (0008,1010) has odd length 5."


def test_long_private_cs_on_a_colour_image_is_rejected_for_colour(ct_dataset: Dataset, tmp_path: Path) -> None:
    # Prepare: an RGB ultrasound-like image with a vendor's private CS of 20 bytes
    ct_dataset.set_pixel_data(np.zeros((16, 16, 3), dtype=np.uint8), photometric_interpretation="RGB", bits_stored=8)
    _add_private(ct_dataset, "CS", "VENDOR_MODE_COLOR_20")

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, _file_bytes(ct_dataset))) == (
        "colour image (RGB, 3 samples per pixel): the single-frame greyscale pipeline cannot score it."
    )


def test_long_public_cs_still_rejected(ct_dataset: Dataset, tmp_path: Path) -> None:
    # Prepare
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct_dataset.Modality = "CTCTCTCTCTCTCTCTCT"

    # Execute / Assert
    assert "longer than the 16 bytes its VR allows" in _reject_reason(_write(tmp_path, _file_bytes(ct_dataset)))


def test_truncated_private_element_is_still_truncation(ct_dataset: Dataset, tmp_path: Path) -> None:
    # Prepare: a private value that declares more bytes than the file holds
    tag = _add_private(ct_dataset, "LO", "ANON56")
    data = _set_length(_file_bytes(ct_dataset), tag, 60000)

    # Execute / Assert
    assert _reject_reason(_write(tmp_path, data)).startswith("the file is truncated")
