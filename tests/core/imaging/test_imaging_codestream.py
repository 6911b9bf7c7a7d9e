from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

import core.imaging.pixels as pixels_module
from core.errors import DicomRejectedError
from core.imaging.codestream import Codestream, FrameHeader, codestream_mismatch, first_fragment, frame_header
from core.imaging.gate import check_file
from tests.core.imaging.conftest import encode_ct, relabel

# What each kind of stream pydicom's encoders write opens with (the CT example is 128 × 128, signed).
J2K_PIXEL_DATA = encode_ct(JPEG2000Lossless).PixelData
JLS_PIXEL_DATA = encode_ct(JPEGLSLossless).PixelData
RLE_PIXEL_DATA = encode_ct(RLELossless).PixelData


def _jpeg_baseline(array: np.ndarray) -> bytes:
    # pydicom has no JPEG encoder; Pillow writes a plain baseline (SOF0) stream.
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """Rewrite (0002,0010) in the raw file meta, leaving the data set's bytes as they are."""
    at = data.index(b"\x02\x00\x10\x00UI", 132)
    (old_length,) = struct.unpack_from("<H", data, at + 6)
    value = uid.encode() + b"\x00" * (len(uid) % 2)
    (group_length,) = struct.unpack_from("<L", data, 140)
    meta = data[:140] + struct.pack("<L", group_length + len(value) - old_length) + data[144:at]
    return meta + data[at : at + 6] + struct.pack("<H", len(value)) + value + data[at + 8 + old_length :]


def _reject_reason(path: Path) -> str:
    with pytest.raises(DicomRejectedError) as info:
        check_file(path)
    return info.value.reason


# --- the pure marker checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixel_data", "expected"),
    [
        (J2K_PIXEL_DATA, FrameHeader(Codestream.JPEG_2000, rows=128, columns=128, samples=1)),
        (JLS_PIXEL_DATA, FrameHeader(Codestream.JPEG_LS, rows=128, columns=128, samples=1)),
        (RLE_PIXEL_DATA, FrameHeader(Codestream.RLE)),
        (encapsulate([_jpeg_baseline(np.zeros((16, 24), np.uint8))]), FrameHeader(Codestream.JPEG, 16, 24, 1)),
    ],
    ids=["j2k", "jpeg-ls", "rle", "jpeg"],
)
def test_frame_header_names_the_codestream_and_its_size(pixel_data: bytes, expected: FrameHeader) -> None:
    # Prepare
    fragment = first_fragment(pixel_data)
    assert fragment is not None

    # Execute / Assert
    assert frame_header(fragment) == expected


def test_jp2_file_format_is_a_jpeg_2000_codestream() -> None:
    # Prepare: the JP2 signature box, a file-type box, then the codestream in a 'jp2c' box
    codestream = bytes(first_fragment(J2K_PIXEL_DATA) or b"")
    boxes = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x14ftypjp2 \x00\x00\x00\x00jp2 "
    boxes += (8 + len(codestream)).to_bytes(4, "big") + b"jp2c" + codestream

    # Execute
    header = frame_header(memoryview(boxes))

    # Assert
    assert header == FrameHeader(Codestream.JPEG_2000, rows=128, columns=128, samples=1)


def test_jpeg_stream_whose_frame_marker_is_out_of_reach_is_left_to_the_decoder() -> None:
    # Prepare: SOI, then an APP0 segment longer than the fragment
    fragment = memoryview(b"\xff\xd8\xff\xe0\x40\x00" + b"\x00" * 30)

    # Execute / Assert
    assert frame_header(fragment) == FrameHeader(None)
    assert (
        codestream_mismatch(
            JPEGBaseline8Bit, encapsulate([bytes(fragment)]), encapsulated=True, rows=1, columns=1, samples=1
        )
        is None
    )


@pytest.mark.parametrize(
    "fragment",
    [b"", b"\x00" * 80, b"\x01\x02" * 40, b"\xff\x4f\xff\x52" + b"\x00" * 60],
    ids=["empty", "zeros", "junk", "soc-cod"],
)
def test_unknown_bytes_are_no_codestream(fragment: bytes) -> None:
    # Execute / Assert
    assert frame_header(memoryview(fragment)) is None


def test_broken_item_structure_is_left_to_pydicom() -> None:
    # Execute / Assert: no offset table item, so there is no first fragment to judge
    assert first_fragment(b"\x01\x02\x03\x04" * 8) is None
    assert (
        codestream_mismatch(JPEG2000Lossless, b"\x01\x02\x03\x04" * 8, encapsulated=True, rows=1, columns=1, samples=1)
        is None
    )


def test_native_syntax_has_no_codestream_to_check() -> None:
    # Execute / Assert
    assert (
        codestream_mismatch("1.2.840.10008.1.2.1", b"\x00" * 64, encapsulated=False, rows=4, columns=8, samples=1)
        is None
    )


def test_matching_codestream_and_size_pass() -> None:
    # Execute / Assert
    pairs = [(JPEG2000Lossless, J2K_PIXEL_DATA), (JPEGLSLossless, JLS_PIXEL_DATA), (RLELossless, RLE_PIXEL_DATA)]
    for syntax, data in pairs:
        assert codestream_mismatch(syntax, data, encapsulated=True, rows=128, columns=128, samples=1) is None


# --- the gate: item 2 of the ingest probe ------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded_as", "labelled_as", "found"),
    [
        (JPEG2000Lossless, JPEGBaseline8Bit, "a JPEG 2000"),
        (JPEG2000Lossless, JPEGLSLossless, "a JPEG 2000"),
        (JPEG2000Lossless, RLELossless, "a JPEG 2000"),
        (JPEGLSLossless, JPEGBaseline8Bit, "a JPEG-LS"),
        (JPEGLSLossless, JPEGExtended12Bit, "a JPEG-LS"),
        (JPEGLSLossless, JPEGLosslessSV1, "a JPEG-LS"),
        (JPEGLSLossless, JPEG2000, "a JPEG-LS"),
        (RLELossless, JPEG2000Lossless, "an RLE"),
        (RLELossless, JPEGLSLossless, "an RLE"),
    ],
)
def test_codestream_of_another_kind_than_the_syntax_is_rejected(
    write_dataset: Callable[[Dataset, str], Path], encoded_as: str, labelled_as: str, found: str
) -> None:
    # Prepare
    path = write_dataset(relabel(encode_ct(encoded_as), labelled_as), "relabelled.dcm")

    # Execute
    reason = _reject_reason(path)

    # Assert: the probe's case (JPEG 2000 labelled JPEG Baseline) was accepted as garbage
    name = UID(labelled_as).name
    assert reason == f"the pixel data is {found} codestream but the transfer syntax says {name} ({labelled_as})."


@pytest.mark.parametrize(
    ("encoded_as", "labelled_as", "reason"),
    [
        (
            JPEG2000Lossless,
            ExplicitVRLittleEndian,
            "the pixel data is encapsulated but the transfer syntax says Explicit VR Little Endian "
            "(1.2.840.10008.1.2.1), which is uncompressed.",
        ),
        (
            None,
            JPEGBaseline8Bit,
            "the pixel data is not encapsulated but the transfer syntax says JPEG Baseline (Process 1) "
            "(1.2.840.10008.1.2.4.50), which is compressed.",
        ),
    ],
)
def test_encapsulation_that_contradicts_the_syntax_is_rejected(
    ct_dataset: Dataset,
    write_dataset: Callable[[Dataset, str], Path],
    encoded_as: str | None,
    labelled_as: str,
    reason: str,
) -> None:
    # Prepare: HEAD blamed a short buffer or a broken item instead
    ds = ct_dataset if encoded_as is None else encode_ct(encoded_as)
    del ds[0xFFFCFFFC]  # trailing padding, so that the relabelled file still parses to its end
    path = write_dataset(ds, "encoded.dcm")
    path.write_bytes(_with_transfer_syntax(path.read_bytes(), labelled_as))

    # Execute / Assert
    assert _reject_reason(path) == reason


def test_jpeg_2000_labelled_baseline_names_both(write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare
    path = write_dataset(relabel(encode_ct(JPEG2000Lossless), JPEGBaseline8Bit), "j2k_as_jpeg.dcm")

    # Execute / Assert: the sentence of the probe report
    assert _reject_reason(path) == (
        "the pixel data is a JPEG 2000 codestream but the transfer syntax says JPEG Baseline (Process 1) "
        "(1.2.840.10008.1.2.4.50)."
    )


def test_bytes_of_no_codestream_are_named(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> None:
    # Prepare
    ct_dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ct_dataset.PixelData = encapsulate([b"\x01\x02" * 50])
    ct_dataset["PixelData"].VR = "OB"
    path = write_dataset(ct_dataset, "junk.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the pixel data is not a JPEG 2000 codestream (its first fragment starts 01 02 01 02) but the transfer "
        "syntax says JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)."
    )


@pytest.mark.parametrize(
    ("syntax", "plugin"),
    [(JPEG2000Lossless, "pylibjpeg"), (JPEGLSLossless, "pyjpegls"), (RLELossless, "pydicom")],
)
def test_decoding_uses_only_the_plugin_the_syntax_names(
    write_dataset: Callable[[Dataset, str], Path], monkeypatch: pytest.MonkeyPatch, syntax: str, plugin: str
) -> None:
    # Prepare: record how pydicom is asked to decode
    calls: list[dict[str, Any]] = []
    real = pixels_module.pixel_array

    def spy(ds: Dataset, **kwargs: Any) -> np.ndarray:
        calls.append(kwargs)
        return real(ds, **kwargs)

    monkeypatch.setattr(pixels_module, "pixel_array", spy)
    path = write_dataset(encode_ct(syntax), "encoded.dcm")

    # Execute
    check_file(path)

    # Assert: never pydicom's "try every plugin" default, which ends in Pillow
    assert [call.get("decoding_plugin") for call in calls] == [plugin]


def test_jpeg_ls_without_pyjpegls_is_undecodable(
    write_dataset: Callable[[Dataset, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: pydicom sees pylibjpeg only, as on an install without pyjpegls
    monkeypatch.delitem(get_decoder(JPEGLSLossless)._available, "pyjpegls")
    path = write_dataset(encode_ct(JPEGLSLossless), "jls.dcm")

    # Execute / Assert
    assert _reject_reason(path) == (
        "the pixel data cannot be decoded: JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) "
        "needs pyjpegls, which is not installed."
    )


def test_rle_segment_that_overruns_its_frame_does_not_crash_the_gate(
    ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]
) -> None:
    # Prepare: two segments (16 bits) of 129 replicate runs of 128 bytes, one run more than the
    # 128 × 128 pixels hold; pylibjpeg-rle, which HEAD tried first, panics with a BaseException
    runs = b"\x81\x00" * 129
    header = struct.pack("<16L", 2, 64, 64 + len(runs), *([0] * 13))
    ct_dataset.file_meta.TransferSyntaxUID = RLELossless
    ct_dataset.PixelData = encapsulate([header + runs + runs])
    ct_dataset["PixelData"].VR = "OB"
    path = write_dataset(ct_dataset, "overrun.dcm")

    # Execute
    try:
        accepted = check_file(path)
    except DicomRejectedError as rejection:
        assert rejection.reason.endswith(".")
        return

    # Assert: pydicom's decoder keeps the frame's own length
    assert accepted.image.pixels.shape == (128, 128)
