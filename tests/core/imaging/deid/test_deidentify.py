"""The pure de-identification function and its bytes-level edge: UIDs, private tags, quarantine, marks, the gate."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, UltrasoundImageStorage, generate_uid

from core.errors import BadInputError
from core.imaging.deid import (
    PRIVATE_KEPT,
    PrivateElement,
    deidentify,
    deidentify_bytes,
    load_profile,
    parse_private_element,
    pseudonymous_uid,
)
from core.imaging.gate import check_file
from tests.core.imaging.deid.conftest import OTHER_SECRET, SECRET

_UID = re.compile(r"2\.25\.[1-9][0-9]*")


def _second_instance(ds: Dataset) -> Dataset:
    """Another image of the same study: a new series and instance, the same StudyInstanceUID."""
    other = copy.deepcopy(ds)
    other.SeriesInstanceUID = generate_uid(entropy_srcs=[ds.SeriesInstanceUID, "2"])
    other.SOPInstanceUID = generate_uid(entropy_srcs=[ds.SOPInstanceUID, "2"])
    return other


def _released(ds: Dataset, **kwargs: object) -> Dataset:
    result = deidentify(ds, secret=SECRET, **kwargs)  # type: ignore[arg-type]
    assert result.dataset is not None, result.quarantine_reason
    return result.dataset


def test_one_study_maps_to_one_new_study_uid_under_one_key(dx_files: list[Path]) -> None:
    # Prepare
    first = pydicom.dcmread(dx_files[0])
    second = _second_instance(first)

    # Execute
    a, b = _released(first), _released(second)
    other_key = deidentify(first, secret=OTHER_SECRET).dataset

    # Assert
    assert a.StudyInstanceUID == b.StudyInstanceUID != first.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    assert other_key is not None and other_key.StudyInstanceUID != a.StudyInstanceUID
    for uid in (a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID):
        assert _UID.fullmatch(uid) and len(uid) <= 64
    assert a.SOPClassUID == first.SOPClassUID  # a kind, not an instance: kept


def test_pseudonymous_uids_are_uuid_v8() -> None:
    n = int(pseudonymous_uid(SECRET, "1.2.3")[5:])
    assert (n >> 76) & 0xF == 8 and (n >> 62) & 0x3 == 0b10


def test_the_output_is_deterministic(dx_files: list[Path]) -> None:
    data = dx_files[1].read_bytes()
    first = deidentify_bytes(data, dx_files[1], secret=SECRET)
    again = deidentify_bytes(data, dx_files[1], secret=SECRET)
    assert first.data is not None and first.data == again.data
    assert first.sop_instance_uid == again.sop_instance_uid


def test_the_input_is_not_changed(dx_files: list[Path]) -> None:
    ds = pydicom.dcmread(dx_files[0])
    before = copy.deepcopy(ds)
    _released(ds)
    assert ds == before and ds.PatientName == before.PatientName


def test_an_allow_listed_private_element_is_kept_and_the_rest_removed(dx_files: list[Path]) -> None:
    # Prepare: the creator lands in block 0x11 of group 0019; the allow-list names it by offset 0x05
    ds = pydicom.dcmread(dx_files[0])
    ds.add_new(0x00190010, "LO", "OTHER VENDOR")
    ds.add_new(0x00191001, "LO", "removed")
    block = ds.private_block(0x0019, "ACME 1.1", create=True)
    block.add_new(0x05, "DS", "1.5")
    block.add_new(0x06, "LO", "not allow-listed")
    allow = [parse_private_element("0019,ACME 1.1,05")]

    # Execute
    result = deidentify(ds, secret=SECRET, private_allowlist=allow)

    # Assert
    out = result.dataset
    assert out is not None
    kept = [(e.tag, e.value) for e in out if e.tag.is_private]
    assert kept == [(0x00190011, "ACME 1.1"), (0x00191105, "1.5")]
    assert result.actions[PRIVATE_KEPT] == 1
    assert "113111" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]


def test_private_allow_list_entries_are_checked() -> None:
    with pytest.raises(BadInputError, match="'0018,ACME,05'"):
        parse_private_element("0018,ACME,05")  # an even group is not private
    with pytest.raises(BadInputError, match="odd"):
        PrivateElement(0x0008, "ACME", 1)


def test_a_directory_record_file_path_is_removed(dx_files: list[Path]) -> None:
    ds = pydicom.dcmread(dx_files[0])
    ds.add_new(0x00041500, "CS", ["DOE_JOHN", "IMG1"])  # ReferencedFileID, spelled with the patient's name
    assert not [e for e in _released(ds) if e.tag.group < 0x0008]


def test_curves_overlays_and_other_patient_ids_are_removed(dx_files: list[Path]) -> None:
    ds = pydicom.dcmread(dx_files[0])
    ds.add_new(0x60000010, "US", 4)  # Overlay Rows
    ds.add_new(0x60003000, "OW", b"\x01\x00")
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.OtherPatientIDs = "MRN-OTHER-1"
    item = Dataset()
    item.PatientID = "MRN-OTHER-2"
    ds.OtherPatientIDsSequence = [item]
    out = _released(ds)
    assert not [e for e in out if e.tag.group in (0x5000, 0x6000)]
    assert "OtherPatientIDs" not in out and "OtherPatientIDsSequence" not in out


def test_the_method_and_the_table_hash_are_recorded(dx_files: list[Path]) -> None:
    # Execute
    plain = _released(pydicom.dcmread(dx_files[0]))
    dated = _released(pydicom.dcmread(dx_files[0]), options=["retain_longitudinal_full_dates"])

    # Assert
    profile = load_profile()
    assert plain.PatientIdentityRemoved == "YES"
    assert (
        profile.sha256 in plain.DeidentificationMethod
        and f"Vigil table {profile.version}" in plain.DeidentificationMethod
    )
    assert [i.CodeValue for i in plain.DeidentificationMethodCodeSequence] == ["113100"]
    assert [i.CodeValue for i in dated.DeidentificationMethodCodeSequence] == ["113100", "113106"]
    assert plain.LongitudinalTemporalInformationModified == "REMOVED" and plain["StudyDate"].is_empty
    assert dated.LongitudinalTemporalInformationModified == "UNMODIFIED" and len(dated.StudyDate) == 8


@pytest.mark.parametrize(
    ("change", "quarantined"),
    [
        ({"BurnedInAnnotation": "YES"}, "BurnedInAnnotation is YES"),
        ({"RecognizableVisualFeatures": "YES"}, "RecognizableVisualFeatures is YES"),
        ({"BurnedInAnnotation": "MAYBE"}, "neither YES nor NO"),
        ({"BurnedInAnnotation": None, "SOPClassUID": SecondaryCaptureImageStorage}, "Secondary Capture"),
        ({"BurnedInAnnotation": None, "SOPClassUID": UltrasoundImageStorage}, "Ultrasound Image Storage"),
        ({"BurnedInAnnotation": None, "Modality": "US"}, "modality US"),
        ({"BurnedInAnnotation": None, "ImageType": ["DERIVED", "SECONDARY"]}, "SECONDARY and DERIVED"),
        ({"BurnedInAnnotation": None}, None),  # an original DX says nothing, but is not of a risky kind
        ({"BurnedInAnnotation": "NO", "ImageType": ["DERIVED", "SECONDARY"]}, None),  # a clear statement
        ({"BurnedInAnnotation": "NO", "SOPClassUID": SecondaryCaptureImageStorage}, None),
    ],
)
def test_burned_in_annotation_risk_is_quarantined(
    dx_files: list[Path], change: dict[str, object], quarantined: str | None
) -> None:
    # Prepare
    ds = pydicom.dcmread(dx_files[0])
    for keyword, value in change.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)

    # Execute
    result = deidentify(ds, secret=SECRET)

    # Assert
    if quarantined is None:
        assert result.released and result.dataset is not None
    else:
        assert not result.released and result.dataset is None and result.actions == {}
        assert result.quarantine_reason is not None and quarantined in result.quarantine_reason


def test_output_passes_the_ingest_gate_where_the_input_did(dx_files: list[Path], tmp_path: Path) -> None:
    for path in dx_files:
        accepted = check_file(path)  # the input passes
        result = deidentify_bytes(path.read_bytes(), path, secret=SECRET)
        assert result.data is not None
        out = tmp_path / f"{result.sop_instance_uid}.dcm"
        out.write_bytes(result.data)
        again = check_file(out)
        assert again.meta.study_instance_uid == pseudonymous_uid(SECRET, accepted.meta.study_instance_uid)
        assert again.meta.patient_id == "" and again.meta.institution_name == ""
        assert again.meta.transfer_syntax_uid == accepted.meta.transfer_syntax_uid
        assert (again.image.pixels == accepted.image.pixels).all()
        reread = pydicom.dcmread(io.BytesIO(result.data))
        assert reread.file_meta.MediaStorageSOPInstanceUID == reread.SOPInstanceUID
        assert reread.preamble == b"\x00" * 128


def test_weak_keys_and_unknown_options_are_refused(dx_files: list[Path]) -> None:
    ds = pydicom.dcmread(dx_files[0])
    with pytest.raises(BadInputError, match="holds 4 bytes"):
        deidentify(ds, secret=b"weak")
    with pytest.raises(BadInputError, match="'retain_everything'"):
        deidentify(ds, secret=SECRET, options=["retain_everything"])
