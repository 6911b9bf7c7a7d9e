"""What every attribution method shares: the map-function protocol and the checks before a call.

A *map function* turns a preprocessed batch into one raw map per image on the model's input
grid. The faithfulness checks (:mod:`core.explain.faithfulness`) call map functions on the
trained network and on a randomized copy, so the network is an argument, never captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import Field, asdict
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from core.errors import BadInputError, OutsideIntendedUseError
from core.imaging.image import DicomImage
from core.models.intended_use import check_intended_use
from core.models.loading import LoadedModel
from core.types import JSONObject

__all__ = [
    "MapFunction",
    "RecordedOptions",
    "check_batch",
    "check_can_explain",
    "check_frozen_eval",
    "refuse_outside_use",
]


class MapFunction(Protocol):
    """Raw attribution maps of a batch on the model's input grid.

    Parameters
    ----------
    network : nn.Module
        In eval mode with frozen parameters; never modified.
    batch : Tensor of shape (n, 1, S, S)
        Preprocessed inputs on the network's device.

    Returns
    -------
    Tensor of shape (n, S, S), float32, on the CPU
        Unscaled: non-negative for Grad-CAM, signed for the SHAP methods (logit units per
        pixel for GradientShap, per superpixel for KernelShap).
    """

    def __call__(self, network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Return the (n, S, S) maps of ``batch`` under ``network``."""
        ...


class RecordedOptions:
    """Base of a method's options: a frozen dataclass of JSON values, recorded with every map.

    The fields are the method's parameters and nothing else, so the recorded params say how to
    reproduce the map.
    """

    __slots__ = ()
    # Set by @dataclass on each subclass; declared so that asdict accepts ``self``.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def to_params(self) -> JSONObject:
        """The options as JSON."""
        return dict(asdict(self))


def check_frozen_eval(network: nn.Module) -> None:
    """Refuse a network in training mode or with trainable parameters (rule R12).

    Raises
    ------
    BadInputError
        Naming the first modules in training mode or the first trainable parameters.
    """
    training = [name or type(network).__name__ for name, m in network.named_modules() if m.training]
    if training:
        # In training mode BatchNorm would mix images of a batch and update its running statistics.
        raise BadInputError(f"network must be in eval mode; in training mode: {', '.join(training[:3])}")
    trainable = [name for name, p in network.named_parameters() if p.requires_grad]
    if trainable:
        raise BadInputError(
            f"network has trainable parameters ({', '.join(trainable[:3])}, ...); freeze them, as "
            "core.models.loading.load_model does, so no explanation ever computes a weight gradient"
        )


def check_can_explain(network: nn.Module, batch: torch.Tensor, *, method: str, needs_grad: bool = True) -> None:
    """Refuse calls that would fail or mutate the shared model.

    Parameters
    ----------
    network : nn.Module
    batch : Tensor of shape (n >= 1, C, H, W)
    method : str
        Shown in the message, e.g. ``"Grad-CAM"``.
    needs_grad : bool, default True
        Gradient methods cannot run inside ``torch.inference_mode()``.

    Raises
    ------
    BadInputError
        Inside inference mode (gradient methods), an empty or non-4-D batch, a network in
        training mode or with trainable parameters.
    """
    if needs_grad and torch.is_inference_mode_enabled():
        raise BadInputError(f"{method} needs gradients; do not call it inside torch.inference_mode()")
    check_batch(batch)
    check_frozen_eval(network)


def check_batch(batch: torch.Tensor) -> None:
    """Refuse an empty or non-4-D batch.

    Raises
    ------
    BadInputError
        Unless ``batch`` has shape (n >= 1, C, H, W).
    """
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise BadInputError(f"batch must have shape (n >= 1, C, H, W), got {tuple(batch.shape)}")


def refuse_outside_use(model: LoadedModel, images: Sequence[DicomImage]) -> None:
    """Raise before any work when an image is outside the card's intended use.

    Raises
    ------
    OutsideIntendedUseError
        For the first such image: an image the model does not score has nothing to explain.
    """
    for image in images:
        reason = check_intended_use(image.meta, model.card.intended_use)
        if reason is not None:
            raise OutsideIntendedUseError(image.meta.study_instance_uid, reason)
