"""Every kind of DICOM object Vigil writes passes dciodvfy, dicom3tools' IOD validator, with zero errors.

A PACS, or a reviewer's validator, sees what dciodvfy sees. The objects: the synthetic cohort's
radiographs (one per site, so every device's SOP class and transfer syntax), the Secondary
Capture and Segmentation an explanation is exported as (an unsigned Grad-CAM map and a signed
GradientShap map), and the model result's Structured Report. Each test prints its object's
warning count (``pytest -s`` shows them); warnings are allowed, errors are not.

dciodvfy comes from Debian's ``dicom3tools`` package, which ``scripts/install-system-deps`` installs;
without it these tests fail rather than skip, since a skipped conformance check proves nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from core.imaging.export import ExplanationExport, export_explanation
from core.imaging.sr import ModelResult, write_model_result_sr
from core.sampledata import SITES, CohortSummary, generate_cohort, read_manifest


@dataclass(frozen=True, slots=True)
class Verdict:
    """dciodvfy's findings on one file, one line each."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def _dciodvfy(path: Path) -> Verdict:
    """Run dciodvfy on ``path``, print the counts and warnings, and return its findings."""
    program = shutil.which("dciodvfy")
    if program is None:
        pytest.fail("dciodvfy (Debian package dicom3tools) is not installed: run scripts/install-system-deps")
    run = subprocess.run([program, "-new", str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    verdict = Verdict(
        errors=tuple(line for line in lines if line.startswith("Error")),
        warnings=tuple(line for line in lines if line.startswith("Warning")),
    )
    print(f"\n{path.name}: dciodvfy {len(verdict.errors)} errors, {len(verdict.warnings)} warnings")
    for line in verdict.warnings:
        print(f"  {line}")
    return verdict


def _readable_by_dciodvfy(path: Path, scratch: Path) -> Path:
    """``path``, or for a deflated file the same data set re-encoded as explicit VR little endian.

    Debian's dicom3tools is built without zlib: it parses a deflated stream as raw elements and
    reports nonsense ("Tag read failed"). Inflating changes the encoding only, not one element.
    """
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
        return path
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    inflated = scratch / f"inflated-{path.name}"
    ds.save_as(inflated, enforce_file_format=True)
    return inflated


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    """One study per site: every device's SOP class and transfer syntax, written by the generator."""
    return generate_cohort(tmp_path_factory.mktemp("cohort"), seed=3, studies_per_site=1)


def _source(cohort: CohortSummary, site: str) -> Path:
    return cohort.out_dir / next(r.path for r in read_manifest(cohort.manifest_path) if r.site == site)


@pytest.mark.parametrize("site", [s.name for s in SITES])
def test_synthetic_radiographs_pass(cohort: CohortSummary, site: str, tmp_path: Path) -> None:
    # Prepare
    path = _readable_by_dciodvfy(_source(cohort, site), tmp_path)

    # Execute
    verdict = _dciodvfy(path)

    # Assert
    assert verdict.errors == ()


def _explanation(source: Path, *, signed: bool) -> ExplanationExport:
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    rows, cols = int(ds.Rows), int(ds.Columns)
    ramp = np.linspace(-1.0, 1.0, rows * cols, dtype=np.float32).reshape(rows, cols)
    return ExplanationExport(
        method="gradientshap" if signed else "gradcam",
        method_label="GradientShap" if signed else "Grad-CAM",
        model_version="cxr-nodule-1.0.0",
        artifact_sha256=("ab" if signed else "cd") * 32,
        heatmap=ramp if signed else np.abs(ramp),
        signed=signed,
        overlay_rgb=np.full((rows, cols, 3), 7, dtype=np.uint8),
        software_version="0.1.0",
    )


@pytest.mark.parametrize("signed", [False, True], ids=["gradcam", "gradientshap"])
def test_exported_secondary_capture_and_segmentation_pass(cohort: CohortSummary, signed: bool, tmp_path: Path) -> None:
    # Prepare
    source = _source(cohort, SITES[0].name)

    # Execute
    objects = export_explanation(source, _explanation(source, signed=signed), out_dir=tmp_path / "out")

    # Assert
    assert [o.kind for o in objects] == ["secondary_capture", "segmentation"]
    assert {o.kind: _dciodvfy(o.path).errors for o in objects} == {"secondary_capture": (), "segmentation": ()}


@pytest.mark.parametrize("site", [s.name for s in SITES[:2]])
def test_model_result_structured_report_passes(cohort: CohortSummary, site: str, tmp_path: Path) -> None:
    # Prepare
    result = ModelResult(
        model_name="Vigil chest nodule classifier",
        model_version="cxr-nodule-1.0.0",
        score=0.73,
        threshold=0.48,
        content_datetime=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        software_version="0.1.0",
    )

    # Execute
    written = write_model_result_sr(_source(cohort, site), result, out_dir=tmp_path / "out")

    # Assert
    assert _dciodvfy(written.path).errors == ()
