"""The image-by-image plumbing both SHAP methods share.

GradientShap and KernelShap attribute one image at a time (each image gets its own pass over
the draws or its own superpixels) and both show a signed map divided by its largest magnitude.
How a map is computed, how it is resampled and which of the method's own figures are recorded
is passed in; the loop, the model's lock, the image grid and the params both record are here,
so the two methods cannot drift apart in what they record.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

from core.explain.base import check_batch, refuse_outside_use
from core.explain.grid import signed_on_image_grid
from core.explain.result import ExplainMethod, Explanation
from core.imaging.image import DicomImage
from core.models.inference import input_sha256
from core.models.loading import LoadedModel
from core.models.preprocess import preprocess
from core.types import FloatArray, JSONObject

__all__ = ["SignedMethod", "explain_signed", "stack_per_image"]

#: What a method's attribution of one image returns: its raw map, with or without more.
R = TypeVar("R")


def stack_per_image(batch: torch.Tensor, one_map: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The body of a per-image :class:`~core.explain.base.MapFunction`.

    Parameters
    ----------
    batch : Tensor of shape (n >= 1, C, S, S)
    one_map : callable
        One image of shape (1, C, S, S) to its map of shape (S, S).

    Returns
    -------
    Tensor of shape (n, S, S), on the CPU

    Raises
    ------
    BadInputError
        An empty or non-4-D batch.
    """
    check_batch(batch)
    return torch.stack([one_map(batch[i : i + 1]) for i in range(batch.shape[0])]).cpu()


@dataclass(frozen=True, slots=True)
class SignedMethod:
    """How one SHAP method's maps are resampled and recorded.

    Attributes
    ----------
    method : ExplainMethod
    interpolation : {"bilinear", "nearest"}
        ``"nearest"`` keeps the edges of piecewise-constant (superpixel) maps.
    options : dict
        The method's options as JSON, recorded with every map.
    record_raw_sum : bool
        Record ``raw_sum``: a GradientShap map sums to ``logit(x) - E[logit(b)]``, a check
        worth keeping; a KernelShap map repeats each coefficient over its superpixel's pixels,
        so its sum means nothing.
    """

    method: ExplainMethod
    interpolation: Literal["bilinear", "nearest"]
    options: JSONObject
    record_raw_sum: bool = False


def explain_signed(
    model: LoadedModel,
    images: Sequence[DicomImage],
    attribute: Callable[[nn.Module, torch.Tensor], R],
    describe: Callable[[R], tuple[torch.Tensor, JSONObject]],
    spec: SignedMethod,
    *,
    lock: threading.Lock | None = None,
) -> list[Explanation]:
    """The body of both SHAP methods' ``explain_images``: one signed map per image.

    ``model``, ``images`` and ``lock`` mean what they mean there; intended use is checked
    for every image before any work.

    Parameters
    ----------
    attribute : callable
        The network and one preprocessed image (1, C, S, S) to the method's result; the only
        step run under ``lock``.
    describe : callable
        That result to its raw (S, S) map and the method's own figures to record with it.
    spec : SignedMethod

    Returns
    -------
    list of Explanation
        On each image's own pixel grid, scaled to [-1, 1] with the sign kept.
    """
    refuse_outside_use(model, images)
    guard = lock if lock is not None else contextlib.nullcontext()
    out: list[Explanation] = []
    for image in images:
        x = preprocess(image.pixels, model.preprocessing)
        batch = torch.from_numpy(x[None]).to(model.device)
        with guard:
            result = attribute(model.network, batch)
        raw, details = describe(result)
        out.append(_explanation(model, image, x, raw, details, spec))
    return out


def _explanation(
    model: LoadedModel, image: DicomImage, x: FloatArray, raw: torch.Tensor, details: JSONObject, spec: SignedMethod
) -> Explanation:
    rows, cols = image.pixels.shape
    heat, flat = signed_on_image_grid(raw, rows, cols, mode=spec.interpolation)
    params = _params(model, x, raw, details, spec, flat=flat)
    return Explanation(spec.method, 0, heat, model.card.version, params)


def _params(
    model: LoadedModel, x: FloatArray, raw: torch.Tensor, details: JSONObject, spec: SignedMethod, *, flat: bool
) -> JSONObject:
    raw_figures: JSONObject = {"raw_max_abs": float(raw.abs().max())}
    if spec.record_raw_sum:
        raw_figures["raw_sum"] = float(raw.sum())
    return {
        "target": 0,
        "input_size": int(x.shape[-1]),
        **spec.options,
        **details,
        "signed": True,
        "interpolation": spec.interpolation,
        "scaling": "divided by max |value| per image; sign kept",
        **raw_figures,
        "flat_map": flat,
        "input_sha256": input_sha256(x),
        "model_version": model.card.version,
    }
