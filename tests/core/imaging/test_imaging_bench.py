from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from core.bench.imaging import LOAD_TARGET, SCAN_TARGET, run


@pytest.fixture
def bench_files(ct_dataset: Dataset, write_dataset: Callable[[Dataset, str], Path]) -> list[Path]:
    """Native and deflated, MONOCHROME2 and MONOCHROME1, with a non-trivial rescale."""
    paths = []
    for i, (syntax, photometric) in enumerate(
        [(None, "MONOCHROME2"), (None, "MONOCHROME1"), (DeflatedExplicitVRLittleEndian, "MONOCHROME1")]
    ):
        ct_dataset.SOPInstanceUID = generate_uid()
        ct_dataset.PhotometricInterpretation = photometric
        ct_dataset.RescaleSlope, ct_dataset.RescaleIntercept = 0.5 + i, -1000 + i
        if syntax is not None:
            ct_dataset.file_meta.TransferSyntaxUID = syntax
        paths.append(write_dataset(ct_dataset, f"bench{i}.dcm"))
    return paths


def test_both_cases_run_and_their_guards_hold(bench_files: list[Path]) -> None:
    # Execute
    load, scan = run(bench_files, rounds=1)

    # Assert: timings are not asserted here (shared CPUs); `vigil bench` judges the ratios
    assert load.guard_ok and scan.guard_ok
    assert (load.target, scan.target) == (LOAD_TARGET, SCAN_TARGET)
    assert load.absolutes["files"] == 3 and scan.absolutes["files"] == 3
    assert load.ratio > 0 and scan.ratio > 0
    assert set(load.to_dict()) >= {"name", "ratio", "target", "passed", "guard_ok", "absolutes"}


def test_load_case_needs_a_file() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="needs at least one"):
        run([], rounds=1)
