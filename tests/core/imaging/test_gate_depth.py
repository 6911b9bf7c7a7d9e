"""The ingest gate refuses a file nested too deep before pydicom parses it (pydicom recurses per level)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from core.errors import DicomRejectedError
from core.imaging.depth import MAX_SEQUENCE_DEPTH
from core.imaging.gate import check_file
from tests.core.imaging.deid.nesting import nested_file


@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
def test_gate_refuses_sequences_nested_past_the_limit(tmp_path: Path, syntax: str, defined: bool) -> None:
    # Prepare: 300 levels, past where pydicom's reader overflows the stack with undefined lengths
    path = tmp_path / "deep.dcm"
    path.write_bytes(nested_file(300, syntax=syntax, defined=defined))

    # Execute
    with pytest.raises(DicomRejectedError) as caught:
        check_file(path)

    # Assert: the depth is the reason, not a RecursionError or the missing pixels
    expected = f"its sequences nest 300 levels deep; Vigil reads at most {MAX_SEQUENCE_DEPTH}"
    assert caught.value.reason.startswith(expected)


def test_gate_lets_the_limit_itself_through_to_its_other_checks(tmp_path: Path) -> None:
    # Prepare: exactly the limit; the header has no pixels, so the gate refuses it for that instead
    path = tmp_path / "at-limit.dcm"
    path.write_bytes(nested_file(MAX_SEQUENCE_DEPTH))

    # Execute
    with pytest.raises(DicomRejectedError) as caught:
        check_file(path)

    # Assert
    assert "nest" not in caught.value.reason
