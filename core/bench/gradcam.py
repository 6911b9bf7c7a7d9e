"""Benchmarks of ``core.explain.gradcam``: batched Grad-CAM against a plain forward and a per-image loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import torch

from core.bench.harness import BenchResult, interleaved_medians
from core.errors import BadInputError
from core.explain.gradcam import grad_cam_batch
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.models.networks import resolve_layer
from core.models.preprocess import preprocess_batch
from core.types import FloatArray, JSONObject

__all__ = ["FORWARD_TARGET", "LOOP_TARGET", "run"]

#: Batched Grad-CAM may take at most this many times a no-grad forward of the same batch.
FORWARD_TARGET: Final = 1.4
#: Batched Grad-CAM may take at most this fraction of the per-image loop.
LOOP_TARGET: Final = 0.85
#: Largest |map difference| the guard accepts between batched and per-image maps.
_ATOL: Final = 1e-5


def run(model: LoadedModel, images: Sequence[DicomImage] | torch.Tensor, *, rounds: int = 5) -> list[BenchResult]:
    """Both Grad-CAM cases on one batch.

    Parameters
    ----------
    model : LoadedModel
    images : sequence of DicomImage, or Tensor of shape (n, 1, S, S)
        Images are preprocessed with the card's parameters first (not timed); 32 is the
        issue's batch.
    rounds : int
        Interleaved timing rounds (each round runs batched, forward and loop once).

    Returns
    -------
    list of BenchResult
        ``[batched / no-grad forward, batched / per-image loop]``; both share one guard: the
        batched maps equal the per-image maps within 1e-5.
    """
    batch = (
        images
        if isinstance(images, torch.Tensor)
        else preprocess_batch([im.pixels for im in images], model.preprocessing)
    )
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise BadInputError(
            f"the Grad-CAM benchmark needs a batch of shape (n >= 1, 1, S, S), got {tuple(batch.shape)}"
        )
    x = batch.to(model.device)
    net, layer, n = model.network, resolve_layer(model.network, model.card.target_layer), int(x.shape[0])

    def batched() -> FloatArray:
        return grad_cam_batch(net, layer, x)

    def looped() -> FloatArray:
        return np.concatenate([grad_cam_batch(net, layer, x[i : i + 1]) for i in range(n)])

    def forward() -> object:
        with torch.inference_mode():
            return net(x)

    diff = float(np.max(np.abs(batched() - looped())))
    sync = torch.cuda.synchronize if model.device.type == "cuda" else None
    medians = interleaved_medians({"batched": batched, "forward": forward, "looped": looped}, rounds=rounds, sync=sync)
    absolutes: JSONObject = {
        "batched_s": medians["batched"],
        "forward_s": medians["forward"],
        "looped_s": medians["looped"],
        "max_abs_diff": diff,
        "batch_shape": list(x.shape),
        "layer": model.card.target_layer,
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model_version": model.card.version,
    }
    guard, ok = f"batched maps equal per-image maps within {_ATOL}", diff <= _ATOL
    return [
        BenchResult(
            name=f"batched Grad-CAM / no-grad forward ({n} images)",
            ratio=medians["batched"] / medians["forward"],
            target=FORWARD_TARGET,
            guard=guard,
            guard_ok=ok,
            absolutes=dict(absolutes),
        ),
        BenchResult(
            name=f"batched Grad-CAM / per-image loop ({n} images)",
            ratio=medians["batched"] / medians["looped"],
            target=LOOP_TARGET,
            guard=guard,
            guard_ok=ok,
            absolutes=dict(absolutes),
        ),
    ]
