"""The model card: an immutable record of one model version (ARCHITECTURE.md, "The model card").

A card is stored as canonical JSON beside its weights and in the store; ``vigil model show``
prints it. Nothing in a card is edited after registration: a new version gets a new card.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from core.errors import BadInputError
from core.types import JSONObject

__all__ = ["VERSION_NAME", "IntendedUse", "ModelCard", "check_version_name", "read_card", "write_card"]

#: A version's name: it names the weights file and a folder, so no path separators.
VERSION_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_version_name(name: str) -> str:
    """Return ``name`` when it can name a new model version.

    Raises
    ------
    BadInputError
        Not 1 to 128 letters, digits, ``.``, ``_``, ``+`` or ``-`` starting with a letter or digit.
    """
    if not VERSION_NAME.fullmatch(name):
        raise BadInputError(
            "a version name must be 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or "
            f"digit (it names the weights file), got {name!r}"
        )
    return name


@dataclass(frozen=True, slots=True)
class IntendedUse:
    """What a model may score; anything else is stored but not scored.

    Values are compared with the harmonized DICOM header (upper-case, stripped).
    An empty tuple means "any".
    """

    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    views: tuple[str, ...]
    image_kinds: tuple[str, ...]  # e.g. ("ORIGINAL",), matched against ImageType[0]
    description: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntendedUse:
        """Rebuild from the card's JSON (lists become tuples)."""
        return cls(
            modalities=tuple(d["modalities"]),
            body_parts=tuple(d["body_parts"]),
            views=tuple(d["views"]),
            image_kinds=tuple(d["image_kinds"]),
            description=str(d["description"]),
        )


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Every field ARCHITECTURE.md names, plus the intended use.

    Attributes
    ----------
    network : dict
        ``{"class": "monai.networks.nets.ResNet", "kwargs": {...}}``.
    weights : dict
        ``{"path": "<file name beside the card>", "sha256": "<hex>"}``.
    target_layer : str
        Dotted module path for Grad-CAM, e.g. ``"layer3"``.
    input : dict
        ``{"shape": [1, S, S], "channels": 1, "spacing": "resampled to S x S"}``.
    preprocessing : dict
        Every parameter of :class:`core.models.preprocess.PreprocessParams`.
    metrics : dict
        Held-out figures computed by ``vigil train``; never written by hand.
    """

    version: str
    network: JSONObject
    weights: JSONObject
    target_layer: str
    input: JSONObject
    preprocessing: JSONObject
    data_schema: JSONObject
    labels: list[str]
    operating_threshold: float
    hyperparameters: JSONObject
    training_data: JSONObject
    code_version: str
    environment: JSONObject
    metrics: JSONObject
    created_at: str
    parent_version: str | None
    intended_use: IntendedUse

    def to_dict(self) -> JSONObject:
        """The card as JSON-ready data (the contract ``vigil model show --json`` prints)."""
        d = asdict(self)
        d["intended_use"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["intended_use"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Rebuild a card, naming any missing field."""
        names = {f.name for f in fields(cls)}
        missing = sorted(names - d.keys())
        if missing:
            raise BadInputError(f"model card is missing fields: {', '.join(missing)}")
        values = {k: d[k] for k in names}
        values["intended_use"] = IntendedUse.from_dict(d["intended_use"])
        values["operating_threshold"] = float(d["operating_threshold"])
        return cls(**values)


def read_card(path: Path) -> ModelCard:
    """Read a card from ``path`` (JSON)."""
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"cannot read model card {path}: {exc}") from exc


def write_card(card: ModelCard, path: Path) -> None:
    """Write ``card`` as indented, key-sorted JSON (stable diffs in review)."""
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
