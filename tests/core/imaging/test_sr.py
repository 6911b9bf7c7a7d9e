"""The model-result Structured Report: filed in the source study, values and codes kept, pure, bad input refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage

from core.errors import BadInputError
from core.imaging.sr import (
    ABSENT,
    NODULE,
    PRESENT,
    SCORE,
    THRESHOLD,
    ModelResult,
    build_model_result_sr,
    write_model_result_sr,
)
from core.sampledata import generate_cohort, read_manifest

RESULT = ModelResult(
    model_name="Vigil chest nodule classifier",
    model_version="cxr-nodule-1.0.0",
    score=0.73,
    threshold=0.48,
    content_datetime=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    software_version="0.1.0",
)
#: Copied from the source so that a PACS files the report under the source's patient and study.
COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
)


@pytest.fixture(scope="module")
def source_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic benchmark radiograph, written by the cohort generator."""
    out = tmp_path_factory.mktemp("cohort")
    cohort = generate_cohort(out, seed=5, studies_per_site={"benchmark": 1})
    return out / read_manifest(cohort.manifest_path)[0].path


@pytest.fixture(scope="module")
def source(source_path: Path) -> Dataset:
    return pydicom.dcmread(source_path, stop_before_pixels=True)


def _concepts(items: Iterable[Dataset]) -> dict[str, Dataset]:
    """``{code value of the concept name: the first item so named}`` over a content tree, depth first."""
    found: dict[str, Dataset] = {}
    for item in items:
        if "ConceptNameCodeSequence" in item:
            found.setdefault(item.ConceptNameCodeSequence[0].CodeValue, item)
        found.update({k: v for k, v in _concepts(item.get("ContentSequence", [])).items() if k not in found})
    return found


def test_report_files_into_the_source_study_and_references_the_image(source_path: Path, tmp_path: Path) -> None:
    # Execute
    written = write_model_result_sr(source_path, RESULT, out_dir=tmp_path / "out")

    # Assert: re-read by pydicom and by highdicom as a Comprehensive SR in the source's study
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    ds = pydicom.dcmread(written.path)
    assert isinstance(hd.sr.srread(written.path), hd.sr.ComprehensiveSR)
    assert ds.SOPClassUID == ComprehensiveSRStorage == written.sop_class_uid and ds.Modality == "SR"
    assert {k: ds.get(k) for k in COPIED} == {k: source.get(k) for k in COPIED}
    assert written.study_instance_uid == source.StudyInstanceUID
    assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, "") and ds.SeriesNumber == 9003
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    sop = series.ReferencedSOPSequence[0]
    assert (sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert written.path.name == f"{ds.SOPInstanceUID}.dcm"


def test_report_carries_the_model_score_threshold_and_finding_with_registered_codes(source: Dataset) -> None:
    # Execute
    sr = build_model_result_sr(source, RESULT)

    # Assert: TID 1500 as highdicom reads it back
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    assert report.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    (group,) = report.content.get_image_measurement_groups()
    assert group.finding_type == NODULE
    values = {m.name.value: (m.value, m.unit.value, m.unit.scheme_designator) for m in group.get_measurements()}
    assert values == {SCORE.value: (0.73, "1", "UCUM"), THRESHOLD.value: (0.48, "1", "UCUM")}
    evaluations = {q.name: q.value for q in group.get_qualitative_evaluations()}
    assert evaluations[NODULE] == PRESENT
    (image,) = group.source_images
    assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    concepts = _concepts(sr.ContentSequence)
    assert concepts["111001"].TextValue == "Vigil chest nodule classifier"  # Algorithm Name
    assert concepts["111003"].TextValue == "cxr-nodule-1.0.0"  # Algorithm Version
    assert concepts["121015"].TextValue == "cxr-nodule-1.0.0"  # Device Observer Model Name
    assert {c.CodingSchemeDesignator for c in _codes(sr)} <= {"DCM", "SCT", "UCUM", "RFC5646"}  # no private scheme
    assert list(sr.SoftwareVersions) == ["vigil 0.1.0", "model cxr-nodule-1.0.0"]


def _codes(ds: Dataset) -> list[Dataset]:
    """Every coded item (concept names and code values) in a dataset, nested ones included."""
    found: list[Dataset] = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                if "CodingSchemeDesignator" in item:
                    found.append(item)
                found.extend(_codes(item))
    return found


@pytest.mark.parametrize(
    ("score", "threshold", "finding"),
    [(0.30, 0.48, ABSENT), (0.48, 0.48, PRESENT), (0.90, 0.48, PRESENT), (0.0, 0.0, PRESENT)],
)
def test_the_finding_is_present_exactly_when_the_score_reaches_the_threshold(
    source: Dataset, score: float, threshold: float, finding: hd.sr.CodedConcept
) -> None:
    # Prepare
    result = dataclasses.replace(RESULT, score=score, threshold=threshold)

    # Execute
    (group,) = hd.sr.ComprehensiveSR.from_dataset(
        build_model_result_sr(source, result)
    ).content.get_image_measurement_groups()

    # Assert
    assert {q.name: q.value for q in group.get_qualitative_evaluations()}[NODULE] == finding


def test_the_build_is_pure_and_identities_follow_the_result(source: Dataset) -> None:
    # Execute
    first, again = build_model_result_sr(source, RESULT), build_model_result_sr(source, RESULT)
    other = build_model_result_sr(source, dataclasses.replace(RESULT, score=0.74))

    # Assert: the same result is the same object; another score is another object
    assert first == again
    assert (first.ContentDate, first.ContentTime) == ("20260102", "030405")
    assert first.SOPInstanceUID != other.SOPInstanceUID and first.SeriesInstanceUID != other.SeriesInstanceUID


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"score": float("nan")}, "score must be a finite number in \\[0, 1\\], got nan"),
        ({"score": 1.5}, "score must be .* got 1.5"),
        ({"threshold": -0.1}, "threshold must be .* got -0.1"),
        ({"model_version": " "}, "model_version must not be empty"),
        ({"model_name": ""}, "model_name must not be empty"),
    ],
)
def test_bad_results_are_refused_before_writing(
    source_path: Path, tmp_path: Path, change: dict[str, object], match: str
) -> None:
    # Prepare
    result = dataclasses.replace(RESULT, **change)  # type: ignore[arg-type]

    # Execute / Assert
    with pytest.raises(BadInputError, match=match):
        write_model_result_sr(source_path, result, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_source_without_identities_or_not_dicom_is_refused(source: Dataset, tmp_path: Path) -> None:
    # Prepare
    bare = Dataset()
    bare.PatientID = "x"
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")

    # Execute / Assert
    with pytest.raises(BadInputError, match="lacks SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID"):
        build_model_result_sr(bare, RESULT)
    with pytest.raises(BadInputError, match="cannot read the source image"):
        write_model_result_sr(junk, RESULT, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
