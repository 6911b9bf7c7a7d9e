"""Fixtures for core.imaging.deid: realistic DX files from the repository's synthetic cohort generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.sampledata import generate_cohort

#: Sites drawn: the benchmark writes Deflated Explicit VR Little Endian, the others compressed pixel data.
SITES = {"benchmark": 2, "northfield": 1, "riverside": 1}
SECRET = b"site-secret-for-tests-0123456789"
OTHER_SECRET = b"another-site-secret-abcdefghijkl"


@pytest.fixture(scope="session")
def dx_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three sites' synthetic chest radiographs (SYNTHETIC phantoms), generated once per session."""
    out = tmp_path_factory.mktemp("deid-cohort")
    generate_cohort(out, seed=17, studies_per_site=SITES)
    files = sorted((out / "dicom").rglob("*.dcm"))
    assert len(files) == sum(SITES.values())
    return files
