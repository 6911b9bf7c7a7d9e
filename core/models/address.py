"""The content address of a model version: SHA-256 over everything that makes the model what it is (pure).

A registered version is known by its address as well as its name. The address covers the card's
every field except the two that only label it (``version``, the name people use, and
``created_at``): the weights' SHA-256 (so the weights themselves), the network spec and Grad-CAM
layer, input and preprocessing, labels and threshold, intended use, the training-data manifest and
hyperparameters, code version, environment, held-out metrics and the parent. Change any of them and
the address changes, so "the same version" always means the same bytes. The weights hash the
registry stores beside the card is covered too, so the two can never be paired differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from core.audit.chain import canonical_json

__all__ = ["LABEL_FIELDS", "content_address"]

#: Card fields that name a version rather than describe it.
LABEL_FIELDS: Final = frozenset({"version", "created_at"})


def content_address(card: Mapping[str, Any], weights_sha256: str) -> str:
    """Hex SHA-256 of the canonical JSON of the card without :data:`LABEL_FIELDS`, and the weights hash.

    Parameters
    ----------
    card : Mapping
        A model card as JSON-ready data (``ModelCard.to_dict()`` or the stored card).
    weights_sha256 : str
        Hex SHA-256 of the weights file, as the registry stores it.

    Raises
    ------
    ValueError
        If the card holds NaN or an infinity (canonical JSON refuses them).

    Examples
    --------
    >>> a = content_address({"version": "a", "threshold": 0.5}, "00")
    >>> a == content_address({"version": "b", "threshold": 0.5}, "00")
    True
    >>> a == content_address({"version": "a", "threshold": 0.5}, "01")
    False
    """
    content = {k: v for k, v in card.items() if k not in LABEL_FIELDS}
    return hashlib.sha256(canonical_json({"card": content, "weights_sha256": weights_sha256})).hexdigest()
