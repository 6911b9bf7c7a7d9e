"""The arithmetic a model version serves at: float32 unless its card re-validated a reduced one.

A blanket autocast is wrong twice over: it slows a small network down on a GPU (the bundled
network runs 30% slower under bf16 autocast on an H200) and it can change a call, since the card's
metrics and operating threshold were validated in float32. So the serving precision is part of the
model version. A card names it in ``input["precision"]`` (absent means ``"float32"``); a reduced
precision is accepted only when the card also carries the figures re-validated at it, under
``metrics["by_precision"][<precision>]``, written by the validation that chose it.

The CPU always computes in float32: CPU autocast to bf16 is slower than float32 on most CPUs
and no card is validated for it.
"""

from __future__ import annotations

from typing import Final

import torch

from core.errors import BadInputError
from core.models.card import ModelCard

__all__ = ["PRECISIONS", "card_precision", "autocast_dtype"]

#: The precisions a card may name, and the autocast dtype each means (None: no autocast).
PRECISIONS: Final[dict[str, torch.dtype | None]] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def card_precision(card: ModelCard) -> str:
    """The precision ``card`` serves at on a GPU, checked against its validated figures.

    Parameters
    ----------
    card : ModelCard

    Returns
    -------
    str
        One of :data:`PRECISIONS`.

    Raises
    ------
    BadInputError
        An unknown precision, or a reduced one the card holds no re-validated figures for.
    """
    name = str(card.input.get("precision", "float32"))
    if name not in PRECISIONS:
        raise BadInputError(
            f"model {card.version}: unknown inference precision {name!r} (choose one of {', '.join(PRECISIONS)})"
        )
    if name != "float32" and name not in _validated(card):
        raise BadInputError(
            f"model {card.version} names inference precision {name!r} but its card holds no figures "
            f"re-validated at it (metrics.by_precision.{name}); it can only serve in float32"
        )
    return name


def autocast_dtype(card: ModelCard, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``card`` on ``device``; None means plain float32.

    >>> from core.models.card import read_card
    >>> from core.models.loading import BUNDLED_DIR
    >>> autocast_dtype(read_card(BUNDLED_DIR / "card.json"), torch.device("cuda")) is None
    True
    """
    if device.type != "cuda":
        return None
    dtype = PRECISIONS[card_precision(card)]
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise BadInputError(f"model {card.version} was validated in bfloat16, which {device} does not support")
    return dtype


def _validated(card: ModelCard) -> set[str]:
    by_precision = card.metrics.get("by_precision", {})
    return set(by_precision) if isinstance(by_precision, dict) else set()
