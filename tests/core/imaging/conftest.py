"""Fixtures for core.imaging: small DICOM files built from the examples inside the pydicom wheel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset


def packaged_file(name: str) -> Path:
    """Path of a test file shipped inside the installed pydicom package (never downloaded)."""
    matches = get_testdata_files(name)
    assert matches, f"{name} is not inside the installed pydicom package"
    return Path(matches[0])


@pytest.fixture
def ct_dataset() -> Dataset:
    """A fresh copy of pydicom's CT example (int16, RescaleSlope 1, RescaleIntercept -1024)."""
    return pydicom.dcmread(packaged_file("CT_small.dcm"))


@pytest.fixture
def ct_path(tmp_path: Path) -> Path:
    """A copy of pydicom's CT example in ``tmp_path``."""
    path = tmp_path / "ct.dcm"
    path.write_bytes(packaged_file("CT_small.dcm").read_bytes())
    return path


@pytest.fixture
def write_dataset(tmp_path: Path) -> Callable[[Dataset, str], Path]:
    """Save a dataset as a DICOM Part 10 file in ``tmp_path`` and return its path."""

    def write(ds: Dataset, name: str) -> Path:
        path = tmp_path / name
        ds.save_as(path, enforce_file_format=True)
        return path

    return write


def encode_ct(syntax: str) -> Dataset:
    """pydicom's CT example re-encoded in a compressed transfer syntax, with pydicom's own encoders."""
    ds = pydicom.dcmread(packaged_file("CT_small.dcm"))
    ds.compress(syntax)
    return ds


def relabel(ds: Dataset, syntax: str) -> Dataset:
    """Change only the Transfer Syntax UID, leaving the encoded pixel data as it is."""
    ds.file_meta.TransferSyntaxUID = syntax
    return ds
