"""What changed between two model versions, and whether a change-control plan pre-authorises it.

:func:`classify` compares two model cards (``ModelCard.to_dict()``) field by field and names every
difference; :func:`determine` holds the differences against a :class:`~core.registry.plan.ChangePlan`.
A change of network, input, Grad-CAM layer, preprocessing, intended use or labels is always a
significant change; new weights are a retrain and a new operating threshold is a threshold change,
each allowed only when the plan lists it. A per-site recalibration leaves the card as it is, so it
cannot be found by comparing cards: callers describe it with :func:`recalibration`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from core.errors import BadInputError, NoModificationError
from core.registry.plan import PREAUTHORISABLE, ChangePlan, Modification
from core.types import JSONObject

__all__ = [
    "SIGNIFICANCE",
    "CardDifference",
    "Determination",
    "ModificationClass",
    "classify",
    "determine",
    "recalibration",
]

#: Modification kinds, most significant first (the order of :attr:`ModificationClass.kinds`).
SIGNIFICANCE: Final = (
    Modification.ARCHITECTURE,
    Modification.PREPROCESSING,
    Modification.INTENDED_USE,
    Modification.LABELS,
    Modification.RETRAIN,
    Modification.RECALIBRATE,
    Modification.THRESHOLD,
)

# (kind, path in the card, what the sentence calls it), in the order of SIGNIFICANCE.
_COMPARED: Final[tuple[tuple[Modification, tuple[str, ...], str], ...]] = (
    (Modification.ARCHITECTURE, ("network", "class"), "the network"),
    (Modification.ARCHITECTURE, ("network", "kwargs"), "the network's arguments"),
    (Modification.ARCHITECTURE, ("input",), "the input"),
    (Modification.ARCHITECTURE, ("target_layer",), "the Grad-CAM target layer"),
    (Modification.PREPROCESSING, ("preprocessing",), "the preprocessing"),
    (Modification.INTENDED_USE, ("intended_use",), "the intended use"),
    (Modification.LABELS, ("labels",), "the labels"),
    (Modification.RETRAIN, ("weights", "sha256"), "the weights"),
    (Modification.THRESHOLD, ("operating_threshold",), "the operating threshold"),
)

_SIGNIFICANT: Final = "this is a significant change that needs a new regulatory submission"


@dataclass(frozen=True, slots=True)
class CardDifference:
    """One field that differs between the champion's and the challenger's cards.

    Attributes
    ----------
    kind : Modification
    field : str
        Dotted path in the card, e.g. ``"network.class"``.
    reason : str
        One sentence naming the field and both values (shortened).
    """

    kind: Modification
    field: str
    reason: str

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {"kind": str(self.kind), "field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ModificationClass:
    """Every difference found between two model versions.

    Attributes
    ----------
    kinds : tuple of Modification
        Each kind found once, most significant first; never empty.
    reasons : tuple of str
        One sentence per differing field, most significant first.
    differences : tuple of CardDifference
        The same, with the kind and field of each.
    """

    kinds: tuple[Modification, ...]
    reasons: tuple[str, ...]
    differences: tuple[CardDifference, ...]

    @property
    def primary(self) -> Modification:
        """The most significant kind."""
        return self.kinds[0]

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "primary": str(self.primary),
            "kinds": [str(k) for k in self.kinds],
            "reasons": list(self.reasons),
            "differences": [d.to_dict() for d in self.differences],
        }


@dataclass(frozen=True, slots=True)
class Determination:
    """Whether a modification lies within a plan.

    Attributes
    ----------
    within_plan : bool
        False when any kind found is not pre-authorised by the plan.
    reasons : tuple of str
        One sentence per difference, saying whether the plan covers it.
    """

    within_plan: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {"within_plan": self.within_plan, "reasons": list(self.reasons)}


def classify(champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> ModificationClass:
    """Name every difference between two model cards that a change-control gate judges.

    Parameters
    ----------
    champion, challenger : Mapping
        Model cards as ``ModelCard.to_dict()`` gives them.

    Returns
    -------
    ModificationClass

    Raises
    ------
    BadInputError
        A card lacks a compared field (the message names the card and the field).
    NoModificationError
        The cards differ in no compared field: same weights, same threshold, same everything else.
    """
    found: list[CardDifference] = []
    for kind, path, label in _COMPARED:
        a, b = _lookup(champion, path, "champion"), _lookup(challenger, path, "challenger")
        if not _same(a, b):
            found.append(CardDifference(kind, ".".join(path), _sentence(label, path, a, b)))
    if not found:
        raise NoModificationError(_version(challenger), _version(champion))
    return _from_differences(found)


def recalibration(site: str, *, model_version: str) -> ModificationClass:
    """Describe a per-site recalibration of ``model_version`` at ``site`` (no card changes).

    Parameters
    ----------
    site : str
    model_version : str

    Returns
    -------
    ModificationClass
        A single :attr:`Modification.RECALIBRATE` difference.
    """
    reason = f"a site calibrator for {site!r} was fitted on top of {model_version!r} (the card is unchanged)"
    return _from_differences([CardDifference(Modification.RECALIBRATE, f"site_calibrator.{site}", reason)])


def determine(plan: ChangePlan, mod: ModificationClass) -> Determination:
    """Hold a modification against a plan.

    Parameters
    ----------
    plan : ChangePlan
    mod : ModificationClass

    Returns
    -------
    Determination
        Outside the plan when any kind is not in ``plan.allowed``; kinds that no plan can allow
        (:data:`~core.registry.plan.PREAUTHORISABLE`) are always outside.
    """
    reasons = tuple(_determination_reason(plan, d) for d in mod.differences)
    within = all(kind in plan.allowed for kind in mod.kinds)
    return Determination(within_plan=within, reasons=reasons)


def _determination_reason(plan: ChangePlan, diff: CardDifference) -> str:
    if diff.kind in plan.allowed:
        return f"{diff.reason}: a {diff.kind} change pre-authorised by plan {plan.label}"
    if diff.kind in PREAUTHORISABLE:
        return f"{diff.reason}: outside plan {plan.label}, which does not list {str(diff.kind)!r}; {_SIGNIFICANT}"
    return f"{diff.reason}: outside plan {plan.label}; {_SIGNIFICANT}"


def _from_differences(found: list[CardDifference]) -> ModificationClass:
    ordered = sorted(found, key=lambda d: SIGNIFICANCE.index(d.kind))
    kinds = tuple(dict.fromkeys(d.kind for d in ordered))
    return ModificationClass(kinds=kinds, reasons=tuple(d.reason for d in ordered), differences=tuple(ordered))


def _version(card: Mapping[str, Any]) -> str:
    return str(card.get("version", "<unnamed>"))


def _lookup(card: Mapping[str, Any], path: tuple[str, ...], which: str) -> object:
    node: object = card
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise BadInputError(f"{which} model card {_version(card)!r} lacks the field {'.'.join(path)!r}")
        node = node[key]
    return node


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _same(a: object, b: object) -> bool:
    # Key order, list versus tuple and 224 versus 224.0 are not changes.
    return _canonical(_numbers_as_floats(a)) == _canonical(_numbers_as_floats(b))


def _numbers_as_floats(value: object) -> object:
    if _is_number(value):
        return float(value)  # type: ignore[arg-type]  # _is_number checked
    if isinstance(value, Mapping):
        return {str(k): _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers_as_floats(v) for v in value]
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sentence(label: str, path: tuple[str, ...], a: object, b: object) -> str:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return f"{label} changed ({_mapping_delta(a, b)})"
    if path == ("weights", "sha256"):
        return f"{label} changed (SHA-256 {str(a)[:12]}... -> {str(b)[:12]}...)"
    return f"{label} changed ({_short(a)} -> {_short(b)})"


def _mapping_delta(a: Mapping[str, Any], b: Mapping[str, Any], *, most: int = 3) -> str:
    keys = sorted(k for k in set(a) | set(b) if k not in a or k not in b or not _same(a[k], b[k]))
    parts = [f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}" for k in keys[:most]]
    if len(keys) > most:
        parts.append(f"and {len(keys) - most} more")
    return "; ".join(parts)


def _short(value: object, *, width: int = 40) -> str:
    if _is_number(value):
        x = float(value)  # type: ignore[arg-type]  # _is_number checked
        return f"{x:g}" if math.isfinite(x) else str(x)
    text = value if isinstance(value, str) else _canonical(value)
    parts = text.split(".")
    # A dotted import path reads best as its package and class: monai...DenseNet121.
    if len(text) > 20 and len(parts) > 2 and all(p.isidentifier() for p in parts):
        return f"{parts[0]}...{parts[-1]}"
    if len(text) <= width:
        return text
    keep = (width - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"
