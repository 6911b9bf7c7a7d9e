from __future__ import annotations

import json
from importlib import resources

import pytest

from core.imaging.harmonize import (
    TAXONOMY_VERSION,
    UNMAPPED,
    HarmonizedVendor,
    harmonize_vendor,
    normalize_vendor,
    vendor_aliases,
)

VENDOR_CASES = [
    ("GE MEDICAL SYSTEMS", "GE"),
    ("GE Healthcare", "GE"),
    ("ge healthcare", "GE"),
    ("  GE   MEDICAL\tSYSTEMS ", "GE"),
    ("GE Medical Systems, LLC", "GE"),
    ("SIEMENS", "Siemens"),
    ("Siemens Healthineers AG", "Siemens"),
    ("Philips Medical Systems", "Philips"),
    ("PHILIPS-MEDICAL-SYSTEMS", "Philips"),
    ("FUJIFILM Corporation", "Fujifilm"),
    ("FUJI PHOTO FILM Co., ltd.", "Fujifilm"),
    ("Carestream Health", "Carestream"),
    ("KODAK", "Carestream"),
    ("Agfa-Gevaert", "Agfa"),
    ("AGFA", "Agfa"),
    ("KONICA MINOLTA", "Konica Minolta"),
    ("Konica Minolta Medical & Graphic, Inc.", "Konica Minolta"),
    ("Canon Inc.", "Canon"),
    ("TOSHIBA", "Canon"),
]

UNMAPPED_CASES = ["Acme Imaging", "", "GEMINI", "Siemens Energy", "   ", "Hologic"]


@pytest.mark.parametrize(("raw", "vendor"), VENDOR_CASES)
def test_known_manufacturer_strings_map_to_one_vendor(raw: str, vendor: str) -> None:
    # Execute
    result = harmonize_vendor(raw)

    # Assert
    assert result == HarmonizedVendor(raw=raw, vendor=vendor, mapped=True)


@pytest.mark.parametrize("raw", UNMAPPED_CASES)
def test_unknown_strings_stay_visible_as_unmapped(raw: str) -> None:
    # Execute
    result = harmonize_vendor(raw)

    # Assert: the raw value is kept, nothing is guessed
    assert result == HarmonizedVendor(raw=raw, vendor=UNMAPPED, mapped=False)


def test_taxonomy_file_is_versioned_and_names_the_expected_vendors() -> None:
    # Prepare
    text = resources.files("core.imaging").joinpath("vendor_taxonomy.json").read_text(encoding="utf-8")

    # Execute
    taxonomy = json.loads(text)

    # Assert
    assert taxonomy["version"] == TAXONOMY_VERSION == "2026-11-1"
    expected = {"GE", "Siemens", "Philips", "Fujifilm", "Carestream", "Agfa", "Konica Minolta", "Canon"}
    assert set(taxonomy["vendors"]) == expected
    assert all(taxonomy["vendors"][v] for v in expected)


def test_every_listed_alias_maps_back_to_its_own_vendor() -> None:
    # Prepare
    text = resources.files("core.imaging").joinpath("vendor_taxonomy.json").read_text(encoding="utf-8")
    vendors: dict[str, list[str]] = json.loads(text)["vendors"]

    # Execute / Assert: no alias is shadowed by another vendor's
    for vendor, aliases in vendors.items():
        for raw in [vendor, *aliases]:
            assert harmonize_vendor(raw).vendor == vendor, raw
    assert "" not in vendor_aliases()


@pytest.mark.parametrize(
    ("raw", "key"), [("GE Medical Systems, LLC", "gemedicalsystems"), ("Co", "co"), ("A.B.C. GmbH", "abc")]
)
def test_normalization_drops_case_punctuation_and_legal_forms(raw: str, key: str) -> None:
    # Execute / Assert
    assert normalize_vendor(raw) == key
