"""The protocol taxonomy that the validation strata use: versioned, unambiguous, unmapped values kept visible."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from core.imaging.protocol import (
    PROTOCOL_TAXONOMY_VERSION,
    UNMAPPED_PROTOCOL,
    harmonize_protocol,
    normalize_protocol,
    protocol_aliases,
)
from core.sampledata import SITES


@pytest.mark.parametrize("site", SITES, ids=lambda s: s.name)
def test_every_sample_site_protocol_maps(site: object) -> None:
    # Execute
    pa, ap = harmonize_protocol(site.protocol_pa), harmonize_protocol(site.protocol_ap)  # type: ignore[attr-defined]

    # Assert
    assert (pa.protocol, ap.protocol) == ("Chest PA", "Chest AP portable")
    assert pa.mapped and ap.mapped


def test_unmapped_value_stays_visible() -> None:
    # Execute
    result = harmonize_protocol("  Abdomen 2 views ")

    # Assert
    assert result.protocol == UNMAPPED_PROTOCOL and not result.mapped and result.raw == "  Abdomen 2 views "


def test_empty_protocol_is_unmapped() -> None:
    # Execute / Assert
    assert not harmonize_protocol("").mapped


def test_taxonomy_is_versioned_and_no_alias_is_listed_twice() -> None:
    # Prepare
    taxonomy = json.loads(resources.files("core.imaging").joinpath("protocol_taxonomy.json").read_text("utf-8"))
    keys = [normalize_protocol(a) for raws in taxonomy["protocols"].values() for a in raws]

    # Assert
    assert PROTOCOL_TAXONOMY_VERSION == taxonomy["version"]
    assert len(keys) == len(set(keys))
    assert set(protocol_aliases().values()) == set(taxonomy["protocols"])
