"""Load a model version's weights from disk, refusing any file whose hash does not match its card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.errors import WeightsIntegrityError
from core.models.card import ModelCard
from core.models.networks import build_network, freeze_for_inference
from core.models.precision import card_precision
from core.models.preprocess import PreprocessParams

__all__ = ["LoadedModel", "load_model", "sha256_file", "BUNDLED_DIR"]

#: The demonstration model shipped with Vigil (trained on synthetic phantoms only).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A network in eval mode with the card it was loaded from. Never mutate ``network``."""

    card: ModelCard
    network: nn.Module
    device: torch.device

    @property
    def preprocessing(self) -> PreprocessParams:
        """The card's preprocessing parameters."""
        return PreprocessParams.from_dict(self.card.preprocessing)


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_model(card: ModelCard, weights_dir: Path, *, device: torch.device | None = None) -> LoadedModel:
    """Build the card's network, check the weights' SHA-256, load them, freeze them for inference.

    Parameters
    ----------
    card : ModelCard
    weights_dir : Path
        Directory holding ``card.weights["path"]``.
    device : torch.device, optional
        CUDA when available, else CPU.

    Raises
    ------
    WeightsIntegrityError
        Missing file, SHA-256 mismatch, or a state dict that does not fit the network.
    BadInputError
        The card names an inference precision it holds no validated figures for.
    """
    card_precision(card)
    path = weights_dir / str(card.weights["path"])
    if not path.is_file():
        raise WeightsIntegrityError(path, "file not found")
    digest = sha256_file(path)
    if digest != card.weights["sha256"]:
        raise WeightsIntegrityError(path, f"SHA-256 {digest} does not match the card's {card.weights['sha256']}")
    dev = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_network(dict(card.network))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsIntegrityError(path, f"state dict does not fit {card.network['class']}: {exc}") from exc
    return LoadedModel(card=card, network=freeze_for_inference(net, dev), device=dev)
