"""One entry point for every explanation method, so callers name a method instead of a module."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from core.errors import BadInputError, UnknownMethodError
from core.explain import gradient_shap, kernel_shap
from core.explain.base import MapFunction
from core.explain.gradcam import explain_images, grad_cam_batch
from core.explain.gradient_shap import GradientShapMaps, GradientShapOptions
from core.explain.kernel_shap import KernelShapMaps, KernelShapOptions
from core.explain.result import ExplainMethod, Explanation
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.models.networks import resolve_layer

__all__ = ["ExplainOptions", "GradCamMaps", "check_target_layer", "explain", "map_function", "parse_method"]


def parse_method(method: str | ExplainMethod) -> ExplainMethod:
    """Turn a method name into an :class:`ExplainMethod`, naming the choices when it is unknown.

    >>> parse_method("GradCAM")
    <ExplainMethod.GRADCAM: 'gradcam'>
    """
    try:
        return ExplainMethod(str(method).strip().lower())
    except ValueError:
        raise UnknownMethodError(str(method), tuple(m.value for m in ExplainMethod)) from None


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    """Per-method parameters; only the chosen method's are used.

    Attributes
    ----------
    gradient_shap, kernel_shap : options of the SHAP methods
    baselines : Tensor of shape (k, 1, S, S) or None
        Preprocessed baseline images for GradientShap (the benchmark site's negatives);
        required by that method only.
    """

    gradient_shap: GradientShapOptions = field(default_factory=GradientShapOptions)
    kernel_shap: KernelShapOptions = field(default_factory=KernelShapOptions)
    baselines: torch.Tensor | None = None


def check_target_layer(model: LoadedModel) -> None:
    """Refuse a model version whose card names a target layer its network does not have.

    Checked for every method before any work, so an inconsistent card never produces (or
    stores) an explanation.

    Raises
    ------
    BadInputError
        Naming the version and the missing layer.
    """
    try:
        resolve_layer(model.network, model.card.target_layer)
    except BadInputError as exc:
        raise BadInputError(f"model version {model.card.version!r}: {exc}; nothing was explained") from exc


def explain(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    method: str | ExplainMethod = ExplainMethod.GRADCAM,
    lock: threading.Lock | None = None,
    batch_size: int = 16,
    options: ExplainOptions | None = None,
) -> list[Explanation]:
    """Explain the model's score for each image with ``method``.

    Parameters
    ----------
    model : LoadedModel
    images : sequence of DicomImage
    method : str or ExplainMethod
    lock : threading.Lock, optional
        The shared model's explanation lock (rule R12).
    batch_size : int, default 16
        Images per Grad-CAM pass (the SHAP methods batch samples, see their options).
    options : ExplainOptions, optional
        Defaults for each method; GradientShap needs ``baselines``.

    Returns
    -------
    list of Explanation
        One per image, on its pixel grid: [0, 1] for Grad-CAM, [-1, 1] for the SHAP methods.

    Raises
    ------
    UnknownMethodError
        ``method`` is not an :class:`ExplainMethod`.
    BadInputError
        The card's target layer does not exist, or GradientShap without baselines.
    OutsideIntendedUseError
        An image the model does not score.
    """
    chosen = parse_method(method)
    opts = options or ExplainOptions()
    check_target_layer(model)
    if chosen is ExplainMethod.GRADCAM:
        return explain_images(model, images, lock=lock, batch_size=batch_size)
    if chosen is ExplainMethod.KERNELSHAP:
        return kernel_shap.explain_images(model, images, options=opts.kernel_shap, lock=lock)
    if opts.baselines is None:
        raise BadInputError("GradientShap needs baseline images (the benchmark site's negatives); none were given")
    return gradient_shap.explain_images(model, images, baselines=opts.baselines, options=opts.gradient_shap, lock=lock)


@dataclass(frozen=True, slots=True)
class GradCamMaps:
    """A :class:`~core.explain.base.MapFunction` for Grad-CAM at a layer named by its dotted path.

    The layer is looked up on the network each call, so the same function serves the trained
    network and a randomized copy of it.
    """

    target_layer: str

    def __call__(self, network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Maps of shape (n, S, S) in [0, 1], float32 on the CPU."""
        layer = resolve_layer(network, self.target_layer)
        return torch.from_numpy(grad_cam_batch(network, layer, batch))


def map_function(method: ExplainMethod, *, target_layer: str, options: ExplainOptions) -> MapFunction:
    """The model-grid map function of ``method`` (what the faithfulness checks call).

    Raises
    ------
    BadInputError
        GradientShap without baselines.
    """
    if method is ExplainMethod.GRADCAM:
        return GradCamMaps(target_layer)
    if method is ExplainMethod.KERNELSHAP:
        return KernelShapMaps(options.kernel_shap)
    if options.baselines is None:
        raise BadInputError("GradientShap needs baseline images (the benchmark site's negatives); none were given")
    return GradientShapMaps(options.baselines, options.gradient_shap)
