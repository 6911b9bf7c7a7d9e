"""The cohort's DICOM writer: coded anatomy and view, DX-only modules kept out of CR, harbor's CR intercept.

``tests/core/imaging/test_dciodvfy.py`` checks the written files against dciodvfy; these tests pin
what that conformance is made of, so that a change which still validates but codes the wrong
thing (another region, another view, a DX module in a CR file) is caught here.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from core.imaging.dicom import read_dicom
from core.sampledata import SITES, CohortSummary, generate_cohort, read_manifest, site_by_name
from core.sampledata.dicom_writer import CHEST, VIEW_CODES, CodedConcept, XrayHeader, write_xray
from core.sampledata.sites import CR_IMAGE_STORAGE, DX_PRESENTATION_STORAGE

#: Attributes of DX modules (DX Anatomy Imaged, DX Positioning, DX Detector, Acquisition Context,
#: DX Image) that the CR IOD does not define.
DX_ONLY = (
    "ImageLaterality",
    "ViewCodeSequence",
    "PositionerType",
    "AcquisitionContextSequence",
    "Grid",
    "DetectorType",
    "PresentationIntentType",
    "PixelIntensityRelationship",
    "PixelIntensityRelationshipSign",
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    """Four studies per site: both views occur, and every site's SOP class."""
    return generate_cohort(tmp_path_factory.mktemp("cohort"), seed=5, studies_per_site=4)


def _datasets(cohort: CohortSummary) -> list[tuple[str, Dataset]]:
    rows = read_manifest(cohort.manifest_path)
    return [(r.site, pydicom.dcmread(cohort.out_dir / r.path, stop_before_pixels=True)) for r in rows]


def _coded(item: Dataset) -> CodedConcept:
    return CodedConcept(str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def _standard(code: Code) -> CodedConcept:
    """A code of pydicom's copy of the standard's context groups, as the writer spells codes."""
    return CodedConcept(code.value, code.scheme_designator, code.meaning)


def test_codes_are_the_standards_chest_and_views() -> None:
    # Assert: CID 4031 Common Anatomic Regions, CID 4010 DX View
    assert _standard(codes.cid4031.Chest) == CHEST
    assert VIEW_CODES == {
        "PA": _standard(codes.cid4010.PosteroAnterior),
        "AP": _standard(codes.cid4010.AnteroPosterior),
    }


def test_every_file_codes_the_chest(cohort: CohortSummary) -> None:
    for site, ds in _datasets(cohort):
        # Assert
        assert [_coded(item) for item in ds.AnatomicRegionSequence] == [CHEST], site


def test_dx_files_carry_the_dx_modules(cohort: CohortSummary) -> None:
    dx = [(site, ds) for site, ds in _datasets(cohort) if ds.SOPClassUID == DX_PRESENTATION_STORAGE]
    assert {site for site, _ in dx} == {s.name for s in SITES if s.detector.object_modality == "DX"}
    assert {str(ds.ViewPosition) for _, ds in dx} == {"PA", "AP"}
    for site, ds in dx:
        # Assert
        assert ds.Modality == "DX" and ds.ImageLaterality == "U", site
        assert [_coded(item) for item in ds.ViewCodeSequence] == [VIEW_CODES[str(ds.ViewPosition)]], site
        assert ds.PositionerType in ("", None) and list(ds.AcquisitionContextSequence) == [], site
        assert ds.Grid in ("FOCUSED", "NONE") and ds.PresentationIntentType == "FOR PRESENTATION", site


def test_cr_files_carry_no_dx_only_attribute(cohort: CohortSummary) -> None:
    cr = [(site, ds) for site, ds in _datasets(cohort) if ds.SOPClassUID == CR_IMAGE_STORAGE]
    assert {site for site, _ in cr} == {"eastgate", "harbor"}
    for site, ds in cr:
        # Assert
        assert ds.Modality == "CR", site
        assert [k for k in DX_ONLY if k in ds] == [], site


def test_harbor_sends_cr_objects_that_keep_its_rescale_intercept(cohort: CohortSummary) -> None:
    # Prepare
    row = next(r for r in read_manifest(cohort.manifest_path) if r.site == "harbor")
    detector = site_by_name("harbor").detector

    # Execute
    ds = pydicom.dcmread(cohort.out_dir / row.path)
    image = read_dicom(cohort.out_dir / row.path)

    # Assert: a flat panel whose objects are CR, so the -1024 intercept is conformant, and ingest applies it
    assert (detector.modality, detector.object_modality, detector.sop_class_uid) == ("DX", "CR", CR_IMAGE_STORAGE)
    assert float(ds.RescaleIntercept) == detector.rescale_intercept == -1024.0
    np.testing.assert_array_equal(image.pixels, ds.pixel_array.astype(np.float32) - 1024.0)


def _header(view: str) -> XrayHeader:
    return XrayHeader(
        sop_class_uid=DX_PRESENTATION_STORAGE, study_uid="1.2.3", series_uid="1.2.3.1", sop_uid="1.2.3.1.1",
        patient_id="P", patient_name="PHANTOM^P", patient_age="050Y", patient_sex="F",
        patient_birth_date=date(1975, 1, 1), study_date=date(2025, 1, 1), study_time="120000",
        accession_number="A1", institution_name="I", station_name="S", manufacturer="M", model_name="N",
        software_versions="1", detector_type="SCINTILLATOR", modality="DX", view_position=view,
        protocol_name="CHEST", kvp=120.0, mas=2.0, distance_mm=1800.0, grid=True, pixel_spacing_mm=1.6,
        bits_stored=12, photometric="MONOCHROME2", rescale_slope=1.0, rescale_intercept=0.0,
        window_center=2048.0, window_width=4096.0,
    )  # fmt: skip


def test_a_view_without_a_code_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "lateral.dcm"

    # Execute / Assert
    with pytest.raises(ValueError, match="view position 'LL' has no view code"):
        write_xray(path, _header("LL"), np.zeros((4, 4), dtype=np.uint16))
    assert not path.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sends_as": None}, "sends DX objects, whose rescale must be slope 1 and intercept 0, not 1 and -1024"),
        ({"sends_as": None, "rescale_intercept": 0.0, "rescale_slope": 2.0}, "not 2 and 0"),
        ({"sends_as": "MR"}, "sends_as 'MR' is not one of"),
        ({"modality": "XA"}, "modality 'XA' is not one of"),
    ],
    ids=["dx-intercept", "dx-slope", "unknown-object-modality", "unknown-modality"],
)
def test_a_detector_that_would_write_a_non_conformant_rescale_is_refused(
    changes: dict[str, object], message: str
) -> None:
    # Prepare: harbor's panel, which keeps its -1024 intercept by sending CR
    harbor = site_by_name("harbor").detector

    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(harbor, **changes)  # type: ignore[arg-type]
