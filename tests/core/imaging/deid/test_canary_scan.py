"""The canary scan (issue 17): no value planted in an identifying element survives in the output bytes.

Unique canaries are planted in every text-valued and UID element the profile or Vigil's rules
touch, in private blocks, and in items two sequence levels deep (``canaries.py`` says exactly
what), in realistic DX files from the synthetic cohort generator of three sites (deflated and
compressed transfer syntaxes). After de-identification every byte of each output file, and its
inflated data set, is searched for every canary as ASCII/Latin-1, lower-cased and UTF-16.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from core.imaging.deid import Action, Profile, deidentify_bytes, load_profile
from tests.core.imaging.deid.canaries import Planter, found, plant_all, searchable
from tests.core.imaging.deid.conftest import SECRET

# Canaries are not valid dates, times or numbers, on purpose: pydicom warns as they are planted.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")


def _planted(path: Path, profile: Profile) -> tuple[bytes, list[str]]:
    ds = pydicom.dcmread(path)
    planter = Planter()
    plant_all(ds, planter, profile)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), planter.canaries


@pytest.fixture(scope="module")
def scanned(dx_files: list[Path]) -> list[tuple[list[str], bytes, bytes]]:
    """(canaries, input bytes searched, output bytes searched) for every file."""
    profile = load_profile()
    runs = []
    for path in dx_files:
        data, canaries = _planted(path, profile)
        result = deidentify_bytes(data, path, secret=SECRET)
        assert result.data is not None, result.quarantine_reason
        runs.append((canaries, searchable(data), searchable(result.data)))
    return runs


def test_every_canary_is_in_the_input(scanned: list[tuple[list[str], bytes, bytes]]) -> None:
    # A control: the search would find each canary had it survived.
    missing = [c for canaries, given, _ in scanned for c in canaries if not found(c, given)]
    assert missing == []
    assert all(len(set(canaries)) == len(canaries) for canaries, _, _ in scanned)


def test_no_canary_leaks_into_the_output(
    scanned: list[tuple[list[str], bytes, bytes]], record_property: pytest.RecordProperty
) -> None:
    # Execute
    planted = sum(len(canaries) for canaries, _, _ in scanned)
    leaked = sorted({c for canaries, _, out in scanned for c in canaries if found(c, out)})

    # Assert (the figures go to the README's reliability section: leaks must be 0)
    record_property("deid_canaries_planted", planted)
    record_property("deid_canaries_leaked", len(leaked))
    print(f"\n{_figure(planted, len(leaked))}")  # noqa: T201
    assert planted > 3000  # a floor against a planter that silently plants nothing
    assert leaked == []


def _figure(planted: int, leaked: int) -> str:
    """The line the scan prints, and the README quotes word for word."""
    return f"DICOM de-identification canary scan: planted {planted}, leaked {leaked}"


def test_the_readme_quotes_the_figure_the_scan_prints(scanned: list[tuple[list[str], bytes, bytes]]) -> None:
    # The README's figure is this test's output, not a number written by hand: when the planter or
    # the cohort changes, this fails until the README quotes the new line.
    planted = sum(len(canaries) for canaries, _, _ in scanned)
    leaked = len({c for canaries, _, out in scanned for c in canaries if found(c, out)})
    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")
    assert _figure(planted, leaked) in readme


def _walk(ds: Dataset) -> Iterator[pydicom.DataElement]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def test_only_elements_the_profile_allows_survive(scanned: list[tuple[list[str], bytes, bytes]]) -> None:
    # Element by element: no private element, no table row the profile removes, Z rows empty,
    # D rows dummies, U rows new UIDs, nothing of a VR Vigil removes beyond the table.
    profile = load_profile()
    marks = {"DeidentificationMethod", "PatientIdentityRemoved", "LongitudinalTemporalInformationModified"}
    for _, _, out in scanned:
        ds = pydicom.dcmread(io.BytesIO(out))
        for elem in _walk(ds):
            assert not elem.tag.is_private, elem
            rule = profile.rules.get(int(elem.tag))
            if rule is None:
                assert elem.VR not in profile.remove_unlisted_vrs or elem.keyword in marks, elem
                continue
            assert rule.action is not Action.REMOVE, elem
            if rule.action is Action.EMPTY:
                assert elem.is_empty, elem
            elif rule.action is Action.REPLACE_UID:
                assert str(elem.value).startswith("2.25."), elem
            elif rule.action is Action.DUMMY and elem.VR not in ("SQ", "UI"):
                assert elem.value in (*profile.dummies.values(), 0, b"\x00" * 8), elem


def test_the_scan_finds_what_an_option_keeps(dx_files: list[Path]) -> None:
    # A control of the scan itself: with the Retain Institution Identity option on, the institution
    # canaries are kept, and the same search must find them.
    profile = load_profile()
    data, canaries = _planted(dx_files[0], profile)
    result = deidentify_bytes(data, dx_files[0], secret=SECRET, options=["retain_institution_identity"])
    assert result.data is not None
    out = searchable(result.data)
    leaked = [c for c in canaries if found(c, out)]
    assert len(leaked) >= 3 * 3  # InstitutionName, InstitutionAddress, department name ... at three levels
