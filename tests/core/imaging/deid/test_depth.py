"""Sequences nested too deep are refused before pydicom recurses into them (issue 17, the outside probe).

Files are built iteratively, byte by byte (``nesting.py``): pydicom's own writer recurses once per
level, which is the fault under test.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from core.errors import BadInputError, DicomRejectedError
from core.imaging.deid import deidentify, deidentify_bytes
from core.imaging.depth import MAX_SEQUENCE_DEPTH, dataset_depth, sequence_depth
from tests.core.imaging.deid.conftest import SECRET
from tests.core.imaging.deid.nesting import nested_file

_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


@pytest.mark.parametrize("syntax", _SYNTAXES, ids=lambda s: s.name)
@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
@pytest.mark.parametrize("depth", [0, 1, 3, MAX_SEQUENCE_DEPTH])
def test_the_byte_walk_counts_what_pydicom_parses(syntax: UID, defined: bool, depth: int) -> None:
    data = nested_file(depth, syntax=syntax, defined=defined)
    assert sequence_depth(data) == depth
    assert dataset_depth(pydicom.dcmread(io.BytesIO(data))) == depth


@pytest.mark.parametrize("syntax", _SYNTAXES, ids=lambda s: s.name)
@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
def test_the_limit_is_de_identified_and_one_more_is_refused_naming_file_and_depth(syntax: UID, defined: bool) -> None:
    # Execute
    at_limit = deidentify_bytes(
        nested_file(MAX_SEQUENCE_DEPTH, syntax=syntax, defined=defined), Path("a.dcm"), secret=SECRET
    )
    with pytest.raises(DicomRejectedError) as caught:
        deidentify_bytes(
            nested_file(MAX_SEQUENCE_DEPTH + 1, syntax=syntax, defined=defined), Path("b.dcm"), secret=SECRET
        )

    # Assert
    assert at_limit.data is not None
    assert dataset_depth(pydicom.dcmread(io.BytesIO(at_limit.data))) == MAX_SEQUENCE_DEPTH
    assert str(caught.value).startswith("b.dcm: its sequences nest 65 levels deep")
    assert f"at most {MAX_SEQUENCE_DEPTH}" in caught.value.reason


def test_the_cohort_files_nest_as_parsed(dx_files: list[Path]) -> None:
    # Real files (deflated and compressed transfer syntaxes): the byte walk agrees with pydicom.
    for path in dx_files:
        data = path.read_bytes()
        assert sequence_depth(data) == dataset_depth(pydicom.dcmread(io.BytesIO(data))), path


# Run in a child with its address space capped at 1 GiB: before the check, de-identifying such a
# file grew a process past 24 GB; a test that only watched would take the machine down with it.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from core.imaging.deid import deidentify_bytes
data = Path(sys.argv[1]).read_bytes()
start = time.perf_counter()
try:
    deidentify_bytes(data, Path(sys.argv[1]), secret=b"s" * 32)
    outcome = "released"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec (a large pytest).
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_mib": peak}))
"""


@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
def test_500_levels_are_refused_first_quickly_and_in_little_memory(tmp_path: Path, defined: bool) -> None:
    # Prepare
    path = tmp_path / "deep.dcm"
    path.write_bytes(nested_file(500, defined=defined))

    # Execute
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        cwd=Path(__file__).resolve().parents[4],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Assert: the depth refusal, not a RecursionError or MemoryError from pydicom, within bounds
    assert child.returncode == 0, child.stderr
    measured = json.loads(child.stdout)
    print(f"\n500 levels ({'defined' if defined else 'undefined'} lengths): {measured}")  # noqa: T201
    assert measured["outcome"] == f"DicomRejectedError: {path}: " + (
        "its sequences nest 500 levels deep; Vigil reads at most 64 "
        "(deeper nesting is refused: reading and writing it would recurse once per level)."
    )
    assert measured["seconds"] < 5 and measured["peak_mib"] < 400


def test_a_deep_data_set_given_directly_is_refused_before_it_is_copied() -> None:
    # Prepare: 500 levels built in memory, iteratively
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    inner = ds
    for _ in range(500):
        item = Dataset()
        inner.AnatomicRegionSequence = [item]
        inner = item

    # Execute / Assert
    with pytest.raises(BadInputError, match="nest 500 levels deep"):
        deidentify(ds, secret=SECRET)


@pytest.mark.parametrize("syntax", _SYNTAXES, ids=lambda s: s.name)
@pytest.mark.filterwarnings("error")
def test_a_cut_or_damaged_stream_stops_the_walk_without_an_error(syntax: UID) -> None:
    # The walk only measures; refusing damage is the strict parse's job, with its own reason.
    data = nested_file(3, syntax=syntax)
    for end in range(len(data) + 1):
        assert 0 <= sequence_depth(data[:end]) <= 3
    for at in range(132, len(data)):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        assert sequence_depth(damaged) >= 0
