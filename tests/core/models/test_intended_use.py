from __future__ import annotations

from dataclasses import replace

import pytest

from core.imaging.image import DicomMeta
from core.models.card import IntendedUse
from core.models.intended_use import _example_meta, check_intended_use

CHEST = IntendedUse(("DX", "CR"), ("CHEST",), ("PA", "AP"), ("ORIGINAL",), "adult chest PA/AP")


def _meta(**changes: object) -> DicomMeta:
    return replace(_example_meta(), **changes)  # type: ignore[arg-type]


def test_chest_pa_is_inside() -> None:
    # Prepare / Execute / Assert
    assert check_intended_use(_meta(), CHEST) is None


def test_values_are_compared_upper_cased_and_stripped() -> None:
    # Prepare
    meta = _meta(modality=" cr ", body_part_examined="chest", view_position="ap ", image_type=("original",))

    # Execute / Assert
    assert check_intended_use(meta, CHEST) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"modality": "MR"}, "Modality 'MR' is not one of DX, CR"),
        ({"modality": "mr", "body_part_examined": "HEAD"}, "Modality 'MR' is not one of DX, CR"),
        ({"body_part_examined": "ABDOMEN"}, "BodyPartExamined 'ABDOMEN' is not one of CHEST"),
        ({"view_position": "LL"}, "ViewPosition 'LL' is not one of PA, AP"),
        ({"image_type": ("DERIVED", "SECONDARY")}, "ImageType[0] 'DERIVED' is not one of ORIGINAL"),
        ({"modality": ""}, "Modality missing"),
        ({"body_part_examined": "  "}, "BodyPartExamined missing"),
        ({"view_position": ""}, "ViewPosition missing"),
        ({"image_type": ()}, "ImageType[0] missing"),
    ],
)
def test_outside_names_attribute_and_value(changes: dict[str, object], reason: str) -> None:
    # Prepare
    meta = _meta(**changes)

    # Execute / Assert
    assert check_intended_use(meta, CHEST) == reason


def test_empty_tuple_means_any() -> None:
    # Prepare: a card that restricts only the modality.
    any_dx = IntendedUse(("DX",), (), (), (), "any DX")
    meta = _meta(body_part_examined="", view_position="LL", image_type=("DERIVED",))

    # Execute / Assert
    assert check_intended_use(meta, any_dx) is None
    assert check_intended_use(_meta(modality="CT"), any_dx) == "Modality 'CT' is not one of DX"


def test_card_values_are_normalized_too() -> None:
    # Prepare: a card written in lower case.
    lower = IntendedUse(("dx",), ("chest",), ("pa",), ("original",), "lower-case card")

    # Execute / Assert
    assert check_intended_use(_meta(), lower) is None
