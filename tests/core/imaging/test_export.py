"""DICOM export of explanations: re-readable, in the source study, values kept, bad input refused."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from core.errors import BadInputError
from core.imaging.export import ExplanationExport, check_export_dir, export_explanation

ROWS, COLS = 24, 20


def _dx(path: Path, *, spacing_keyword: str = "PixelSpacing") -> Path:
    """A minimal single-frame DX image, as the cohort writes them."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = "SYN^ONE", "SYN-1", "F", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
        "20240101",
        "120000",
        "1",
        "A1",
        "",
    )
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "DX", 1, 1, ["L", "F"]
    ds.Manufacturer = "ACME"
    setattr(ds, spacing_keyword, [0.2, 0.2])
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelData = np.arange(ROWS * COLS, dtype=np.uint16).reshape(ROWS, COLS).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _export(heat: np.ndarray, *, signed: bool) -> ExplanationExport:
    return ExplanationExport(
        method="gradientshap" if signed else "gradcam",
        method_label="GradientShap" if signed else "Grad-CAM",
        model_version="demo-1.0",
        artifact_sha256="ab" * 32,
        heatmap=heat.astype(np.float32),
        signed=signed,
        overlay_rgb=np.full((*heat.shape, 3), 7, dtype=np.uint8),
        software_version="0.1.0",
    )


def test_signed_map_becomes_two_fractional_segments_in_the_source_study(tmp_path: Path) -> None:
    # Prepare
    src = _dx(tmp_path / "src.dcm")
    heat = np.linspace(-1.0, 1.0, ROWS * COLS).reshape(ROWS, COLS)

    # Execute
    sc, seg = export_explanation(src, _export(heat, signed=True), out_dir=tmp_path / "out")

    # Assert
    source = pydicom.dcmread(src)
    sc_ds, seg_ds = pydicom.dcmread(sc.path), hd.seg.segread(seg.path)
    assert sc_ds.StudyInstanceUID == seg_ds.StudyInstanceUID == source.StudyInstanceUID
    assert sc_ds.SeriesInstanceUID != source.SeriesInstanceUID and sc_ds.Modality == "OT"
    assert sc_ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc_ds.pixel_array.shape == (ROWS, COLS, 3) and int(sc_ds.pixel_array.max()) == 7
    planes = seg_ds.pixel_array.astype(np.float64) / 255.0  # (segments, rows, cols)
    np.testing.assert_allclose(planes[0], np.clip(heat, 0, 1), atol=1 / 255)
    np.testing.assert_allclose(planes[1], np.clip(-heat, 0, 1), atol=1 / 255)
    assert list(seg_ds.SoftwareVersions) == ["vigil 0.1.0", "model demo-1.0"]
    assert seg_ds.get_segment_description(2).segment_label == "Evidence against finding"


def test_unsigned_map_is_one_segment_and_uses_imager_spacing_when_needed(tmp_path: Path) -> None:
    # Prepare: a source with ImagerPixelSpacing only.
    src = _dx(tmp_path / "src.dcm", spacing_keyword="ImagerPixelSpacing")
    heat = np.zeros((ROWS, COLS))
    heat[5:9, 4:8] = 1.0

    # Execute
    _, seg = export_explanation(src, _export(heat, signed=False), out_dir=tmp_path / "out")

    # Assert
    seg_ds = hd.seg.segread(seg.path)
    assert seg_ds.number_of_segments == 1
    assert seg_ds.get_segment_description(1).algorithm_identification[0].AlgorithmVersion == "demo-1.0"


def test_exporting_twice_gives_the_same_identities(tmp_path: Path) -> None:
    # Prepare
    src = _dx(tmp_path / "src.dcm")
    export = _export(np.zeros((ROWS, COLS)), signed=False)

    # Execute
    first = export_explanation(src, export, out_dir=tmp_path / "a")
    second = export_explanation(src, export, out_dir=tmp_path / "b")

    # Assert
    assert [o.sop_instance_uid for o in first] == [o.sop_instance_uid for o in second]


@pytest.mark.parametrize(
    ("heat", "signed", "match"),
    [
        (np.zeros((3, 3)), False, "do not match the source image"),
        (np.full((ROWS, COLS), -0.5), False, r"in \[0.0, 1\]"),
        (np.full((ROWS, COLS), np.nan), True, "finite"),
    ],
)
def test_bad_maps_are_refused_before_writing(tmp_path: Path, heat: np.ndarray, signed: bool, match: str) -> None:
    # Prepare
    src = _dx(tmp_path / "src.dcm")
    export = _export(heat, signed=signed)
    export = ExplanationExport(
        **{**{f: getattr(export, f) for f in export.__slots__}, "overlay_rgb": np.zeros((*heat.shape, 3), np.uint8)}
    )  # type: ignore[arg-type]

    # Execute / Assert
    with pytest.raises(BadInputError, match=match):
        export_explanation(src, export, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_is_not_an_export_folder(tmp_path: Path) -> None:
    # Prepare
    taken = tmp_path / "taken"
    taken.write_text("x")

    # Execute / Assert
    with pytest.raises(BadInputError, match="must name a folder"):
        check_export_dir(taken)


@pytest.mark.parametrize(
    ("signed", "types"),
    [
        (False, [("130403", "DCM")]),  # Gradient-weighted class activation
        (True, [("EVIDENCE_FOR", "99VIGIL"), ("EVIDENCE_AGAINST", "99VIGIL")]),
    ],
)
def test_segments_use_registered_codes_and_name_the_private_scheme_they_need(
    tmp_path: Path, signed: bool, types: list[tuple[str, str]]
) -> None:
    # Prepare
    src = _dx(tmp_path / "src.dcm")
    heat = np.zeros((ROWS, COLS))

    # Execute
    _, seg = export_explanation(src, _export(heat, signed=signed), out_dir=tmp_path / "out")

    # Assert: DICOM's "Visual explanation" category; a private type only where DICOM has none, declared
    ds = pydicom.dcmread(seg.path)
    categories = {
        (
            s.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            s.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator,
        )
        for s in ds.SegmentSequence
    }
    assert categories == {("130401", "DCM")}
    got = [
        (
            s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
        )
        for s in ds.SegmentSequence
    ]
    assert got == types
    declared = [item.CodingSchemeDesignator for item in ds.get("CodingSchemeIdentificationSequence", [])]
    assert declared == (["99VIGIL"] if signed else [])
    assert ds.PatientOrientation == ["L", "F"]
