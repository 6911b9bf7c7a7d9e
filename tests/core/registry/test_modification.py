"""Classifying the change between two model cards, and holding it against a change-control plan."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInputError, NoModificationError
from core.registry.modification import classify, determine, recalibration
from core.registry.plan import DEFAULT_PLAN_PATH, ChangePlan, Modification, read_plan

CARD_PATH = Path(__file__).resolve().parents[3] / "core" / "models" / "bundled" / "card.json"


@pytest.fixture(scope="module")
def champion() -> dict[str, Any]:
    card: dict[str, Any] = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    return card


@pytest.fixture(scope="module")
def plan() -> ChangePlan:
    return read_plan(DEFAULT_PLAN_PATH)


def _challenger(champion: dict[str, Any], **changes: Any) -> dict[str, Any]:
    card = copy.deepcopy(champion)
    card["version"] = "cxr-nodule-1.1.0"
    card["created_at"] = "2027-01-01T00:00:00+00:00"
    card["metrics"] = {"changed": True}  # held-out figures are not a modification
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = card
        for key in parents:
            node = node[key]
        node[leaf] = value
    return card


def test_new_weights_are_a_retrain_within_the_default_plan(champion: dict[str, Any], plan: ChangePlan) -> None:
    mod = classify(champion, _challenger(champion, weights__sha256="f" * 64))

    det = determine(plan, mod)

    assert mod.kinds == (Modification.RETRAIN,)
    assert mod.primary is Modification.RETRAIN
    assert "the weights changed (SHA-256 444d4427e90d... -> ffffffffffff...)" == mod.reasons[0]
    assert det.within_plan
    assert "pre-authorised by plan cxr-nodule-pccp v1" in det.reasons[0]


def test_only_a_new_threshold_is_a_threshold_change(champion: dict[str, Any], plan: ChangePlan) -> None:
    mod = classify(champion, _challenger(champion, operating_threshold=0.41))

    assert mod.kinds == (Modification.THRESHOLD,)
    assert mod.reasons == ("the operating threshold changed (0.480008 -> 0.41)",)
    assert determine(plan, mod).within_plan


def test_retrain_and_threshold_are_both_found_most_significant_first(champion: dict[str, Any]) -> None:
    mod = classify(champion, _challenger(champion, operating_threshold=0.41, weights__sha256="f" * 64))

    assert mod.kinds == (Modification.RETRAIN, Modification.THRESHOLD)
    assert len(mod.reasons) == 2


def test_a_new_network_is_a_significant_change(champion: dict[str, Any], plan: ChangePlan) -> None:
    challenger = _challenger(
        champion,
        network={"class": "monai.networks.nets.DenseNet121", "kwargs": {"spatial_dims": 2}},
        weights__sha256="f" * 64,
    )

    mod = classify(champion, challenger)
    det = determine(plan, mod)

    assert mod.primary is Modification.ARCHITECTURE
    assert mod.kinds == (Modification.ARCHITECTURE, Modification.RETRAIN)
    assert mod.reasons[0] == "the network changed (monai...ResNet -> monai...DenseNet121)"
    assert "the network's arguments changed (" in mod.reasons[1]
    assert not det.within_plan
    assert det.reasons[0] == (
        "the network changed (monai...ResNet -> monai...DenseNet121): outside plan cxr-nodule-pccp v1; "
        "this is a significant change that needs a new regulatory submission"
    )


@pytest.mark.parametrize(
    ("changes", "kind", "field_named"),
    [
        ({"target_layer": "layer3"}, Modification.ARCHITECTURE, "Grad-CAM target layer changed (layer2 -> layer3)"),
        ({"input__shape": [1, 256, 256]}, Modification.ARCHITECTURE, "shape: [1,224,224] -> [1,256,256]"),
        ({"preprocessing__size": 256}, Modification.PREPROCESSING, "preprocessing changed (size: 224 -> 256)"),
        ({"intended_use__views": ["PA", "AP", "LL"]}, Modification.INTENDED_USE, 'views: ["PA","AP"]'),
        ({"labels": ["nodule", "mass"]}, Modification.LABELS, 'labels changed (["nodule"] -> ["nodule","mass"])'),
    ],
)
def test_every_significant_field_is_found_and_named(
    champion: dict[str, Any], plan: ChangePlan, changes: dict[str, Any], kind: Modification, field_named: str
) -> None:
    mod = classify(champion, _challenger(champion, **changes))

    det = determine(plan, mod)

    assert mod.kinds == (kind,)
    assert field_named in mod.reasons[0]
    assert not det.within_plan
    assert "needs a new regulatory submission" in det.reasons[0]


def test_a_retrain_the_plan_does_not_list_is_outside_it(champion: dict[str, Any], plan: ChangePlan) -> None:
    narrow = replace(plan, allowed=frozenset({Modification.THRESHOLD}))

    det = determine(narrow, classify(champion, _challenger(champion, weights__sha256="f" * 64)))

    assert not det.within_plan
    assert "does not list 'retrain'" in det.reasons[0]


def test_identical_weights_and_threshold_is_nothing_to_validate(champion: dict[str, Any]) -> None:
    with pytest.raises(NoModificationError, match=r"cxr-nodule-1\.1\.0.*nothing to validate"):
        classify(champion, _challenger(champion))


def test_key_order_and_int_versus_float_are_not_changes(champion: dict[str, Any]) -> None:
    reordered = _challenger(champion, weights__sha256="f" * 64)
    reordered["preprocessing"] = dict(reversed(list(champion["preprocessing"].items())))
    reordered["preprocessing"]["size"] = 224.0

    assert classify(champion, reordered).kinds == (Modification.RETRAIN,)


def test_a_card_missing_a_compared_field_is_refused_naming_it(champion: dict[str, Any]) -> None:
    broken = _challenger(champion)
    del broken["weights"]["sha256"]

    with pytest.raises(BadInputError, match=r"challenger model card 'cxr-nodule-1\.1\.0' lacks .*'weights\.sha256'"):
        classify(champion, broken)


def test_recalibration_is_described_for_callers(plan: ChangePlan) -> None:
    mod = recalibration("riverside", model_version="cxr-nodule-1.0.0")

    assert mod.kinds == (Modification.RECALIBRATE,)
    assert "riverside" in mod.reasons[0]
    assert determine(plan, mod).within_plan
    assert mod.to_dict()["primary"] == "recalibrate"
