"""Grad-CAM (Selvaraju et al., ICCV 2017) through captum's ``LayerGradCam``, batched.

Why the backward pass stops at the target layer: the loaded network's parameters are frozen
and the input does not require grad, so nothing before the target layer is recorded by
autograd. captum then marks the layer's *output* as requiring grad, and only the tail of the
network (layer → logit) is differentiated. This is checked on every call (a network with a
trainable parameter is refused) and proven in ``tests/core/explain``.

Why batching gives each image its own map: captum differentiates the *sum* of the selected
logits over the batch. In eval mode (BatchNorm uses running statistics) image *j*'s logit does
not depend on image *i*'s activation, so d(sum_j y_j)/dA_i = dy_i/dA_i.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from core.errors import BadInputError
from core.explain.base import check_can_explain, refuse_outside_use
from core.explain.result import ExplainMethod, Explanation
from core.imaging.image import DicomImage
from core.models.inference import BatchScores, input_sha256, logits_to_scores, peak_memory
from core.models.loading import LoadedModel
from core.models.networks import resolve_layer
from core.models.precision import autocast_dtype
from core.models.preprocess import preprocess
from core.types import FloatArray, JSONObject

__all__ = [
    "STORED_DTYPE",
    "STORED_UPSAMPLE",
    "StoredMap",
    "cell_centred_upsample",
    "explain_images",
    "grad_cam_batch",
    "scored_maps",
    "stored_maps",
    "upsample_stored",
]

#: A map whose range is at most this fraction of its maximum is treated as flat (see _unit_scale).
_FLAT_RTOL = 1e-6


def _unit_scale(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max scale each map of ``maps`` (n, H, W) to [0, 1]; flat maps become zeros.

    A flat map (usually all zero after the ReLU: nothing at the layer raised the target score)
    has no localization to show. NaN would break every overlay and viewer, and dividing noise by
    a near-zero range would invent a pattern, so it is returned as zeros and reported as flat.
    """
    flat_vals = maps.flatten(1)
    lo, hi = flat_vals.min(dim=1).values, flat_vals.max(dim=1).values
    span = hi - lo
    flat = span <= _FLAT_RTOL * hi.abs()
    safe_span = torch.where(flat, torch.ones_like(span), span)
    scaled = (maps - lo[:, None, None]) / safe_span[:, None, None]
    scaled = torch.where(flat[:, None, None], torch.zeros_like(scaled), scaled)
    return scaled.clamp_(0.0, 1.0), flat


def _grad_cam_cells(
    network: nn.Module,
    layer: nn.Module,
    batch: torch.Tensor,
    *,
    target: int,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled maps (n, h, w) on the target layer's grid and the batch's device, and the flat flags (n,).

    ``forward`` runs ``network`` in captum's place (it must call it once and return its output),
    for a caller that keeps the output of the forward pass the map is made from.
    """
    check_can_explain(network, batch, method="Grad-CAM")
    x = batch.detach()
    if x.is_inference():
        x = x.clone()  # an inference-mode tensor cannot enter an autograd graph
    attr = LayerGradCam(forward or network, layer).attribute(x, target=target, relu_attributions=True)
    # Scaling on the layer grid, then upsampling, is cheaper than the other way round and, for
    # integer strides, exact: every cell value reappears on the input grid (pixel s*i reads cell
    # i) and bilinear weights sum to 1, so the upsampled map has the cells' minimum and maximum.
    return _unit_scale(attr.detach().float()[:, 0])


def _grad_cam_maps(
    network: nn.Module, layer: nn.Module, batch: torch.Tensor, *, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled maps (n, H, W) on the input grid and the batch's device, and the flat flags (n,)."""
    scaled, flat = _grad_cam_cells(network, layer, batch, target=target)
    up = cell_centred_upsample(scaled[:, None], (int(batch.shape[-2]), int(batch.shape[-1])))
    return up[:, 0].clamp_(0.0, 1.0), flat


def cell_centred_upsample(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample a layer map so that each cell lands on the input pixel it is centred on.

    A layer reached through "same"-padded, odd-kernel convolutions of total stride ``s`` (the
    stems and stages of MONAI's ResNet, DenseNet and EfficientNet) centres cell ``i`` on input
    pixel ``s * i``. Plain bilinear resizing with ``align_corners=False`` puts it at
    ``s * i + (s - 1) / 2`` instead: 1.5 px too far down and right at stride 4, enough to move
    the peak off a 5 mm nodule on a coarse film. Here input pixel ``p`` reads the layer at
    ``p / s``; pixels past the last cell take its value (border padding).

    Parameters
    ----------
    cells : Tensor of shape (n, c, h, w)
        The layer map.
    size : tuple of int
        ``(H, W)`` of the network input; ``H / h`` and ``W / w`` are the strides.

    Returns
    -------
    Tensor of shape (n, c, H, W)
        Same dtype and device as ``cells``; equal to ``cells`` when ``(h, w) == (H, W)``.
    """
    n, _, h, w = cells.shape
    rows, cols = size
    if h > 1 and w > 1 and rows % h == 0 and cols % w == 0:
        return _integer_stride_upsample(cells, rows // h, cols // w)

    def normalized(count_in: int, count_out: int) -> torch.Tensor:
        # grid_sample (align_corners=False) reads cell u at normalized coordinate (2u + 1) / n - 1.
        u = torch.arange(count_out, dtype=cells.dtype, device=cells.device) * (count_in / count_out)
        return (2.0 * u + 1.0) / count_in - 1.0

    ys, xs = normalized(h, rows), normalized(w, cols)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(n, rows, cols, 2)
    return F.grid_sample(cells, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _integer_stride_upsample(cells: torch.Tensor, sy: int, sx: int) -> torch.Tensor:
    """:func:`cell_centred_upsample` for integer strides, about twice as fast as ``grid_sample``.

    With ``align_corners=True`` an output of ``s * (h - 1) + 1`` pixels reads cell ``p / s`` at
    pixel ``p`` exactly; the last ``s - 1`` rows and columns repeat the border, as in the
    general path.
    """
    h, w = int(cells.shape[-2]), int(cells.shape[-1])
    up = F.interpolate(cells, size=(sy * (h - 1) + 1, sx * (w - 1) + 1), mode="bilinear", align_corners=True)
    return F.pad(up, (0, sx - 1, 0, sy - 1), mode="replicate")


def grad_cam_batch(network: nn.Module, layer: nn.Module, batch: torch.Tensor, *, target: int = 0) -> FloatArray:
    """Grad-CAM maps for a batch, upsampled to the input grid and scaled to [0, 1] per image.

    Parameters
    ----------
    network : nn.Module
        In eval mode with every parameter frozen (``requires_grad=False``), as
        :func:`core.models.loading.load_model` leaves it; not modified.
    layer : nn.Module
        A submodule of ``network`` (the card's ``target_layer``).
    batch : Tensor of shape (n, 1, S, S)
        Preprocessed inputs on the network's device.
    target : int, default 0
        Output index explained (0: the single logit).

    Returns
    -------
    ndarray of shape (n, S, S), float32, values in [0, 1]
        ``relu(sum_k mean_ij(dy/dA_k) * A_k)`` at the layer, upsampled by
        :func:`cell_centred_upsample`, then min-max
        scaled per image. A flat map is returned as zeros (see :func:`_unit_scale`).

    Raises
    ------
    BadInputError
        Called inside ``torch.inference_mode()``, an empty or non-4-D batch, or a network
        in training mode or with trainable parameters.

    Notes
    -----
    captum registers a forward hook on ``layer`` and removes it in ``finally:``. Callers sharing
    a cached model must still hold its lock (rule R12): see :func:`explain_images`.
    """
    maps, _ = _grad_cam_maps(network, layer, batch, target=target)
    out: FloatArray = maps.cpu().numpy().astype(np.float32, copy=False)
    return out


def _on_image_grid(cam: torch.Tensor, rows: int, cols: int) -> tuple[FloatArray, bool]:
    """Resample one (S, S) map to (rows, cols) bilinearly and rescale it to [0, 1]."""
    grid = F.interpolate(cam[None, None], size=(rows, cols), mode="bilinear", align_corners=False)[0]
    scaled, flat = _unit_scale(grid)
    heat: FloatArray = scaled[0].cpu().numpy().astype(np.float32, copy=False)
    return heat, bool(flat[0])


def upsample_stored(cells: np.ndarray, *, input_size: int, image_shape: tuple[int, int]) -> FloatArray:
    """The reader's map from a stored layer-grid map: the rule :data:`STORED_UPSAMPLE` names.

    Parameters
    ----------
    cells : ndarray of shape (h, w), float16 or float32, values in [0, 1]
        The min-max scaled map on the target layer's grid, as stored.
    input_size : int
        ``S``, the side of the network input in pixels.
    image_shape : tuple of int
        ``(rows, columns)`` of the DICOM image.

    Returns
    -------
    ndarray of shape image_shape, float32, values in [0, 1]
        Cell-centred bilinear upsampling to (S, S) (:func:`cell_centred_upsample`), bilinear
        resampling (``align_corners=False``) to the image grid, then min-max scaling: the same
        steps, on the CPU, that :func:`explain_images` applies to the map it returns.
    """
    return _rebuild(cells, input_size, image_shape)[0]


def _rebuild(cells: np.ndarray, input_size: int, image_shape: tuple[int, int]) -> tuple[FloatArray, bool]:
    """:func:`upsample_stored` and whether the image-grid map came out flat."""
    t = torch.from_numpy(np.asarray(cells, dtype=np.float32))[None, None]
    up = cell_centred_upsample(t, (input_size, input_size))[0, 0].clamp_(0.0, 1.0)
    return _on_image_grid(up, int(image_shape[0]), int(image_shape[1]))


#: How a stored Grad-CAM map becomes the reader's map (recorded in the explanation's parameters).
STORED_UPSAMPLE = "cell-centred bilinear to input_size, bilinear align_corners=False to image_shape, min-max"
#: The stored map's dtype: float16 keeps [0, 1] values within 2**-11 (see upsample_stored).
STORED_DTYPE = np.float16


def _explanation(
    model: LoadedModel, image: DicomImage, x: FloatArray, cells: torch.Tensor, *, layer_flat: bool
) -> Explanation:
    """One image's explanation; its map is rebuilt from the stored float16 cells, so stored and shown agree."""
    rows, cols = image.pixels.shape
    # Only the layer-grid map leaves the device; the full-resolution map is made on the host from
    # exactly the bytes that will be stored, so a later reader sees the same pixels.
    stored = _to_stored(cells)
    heat, flat = _rebuild(stored, int(x.shape[-1]), (rows, cols))
    info = _stored_params(model, x, stored, (rows, cols), flat=layer_flat or flat)
    return Explanation(ExplainMethod.GRADCAM, 0, heat, model.card.version, info, stored=stored)


def _to_stored(cells: torch.Tensor) -> np.ndarray:
    stored = cells.cpu().numpy().astype(STORED_DTYPE)
    stored.setflags(write=False)
    return stored


def _stored_params(
    model: LoadedModel, x: FloatArray, stored: np.ndarray, image_shape: tuple[int, int], *, flat: bool
) -> JSONObject:
    """The explanation row's parameters: how ``stored`` was made and how it becomes the reader's map."""
    return {
        "layer": model.card.target_layer,
        "input_size": int(x.shape[-1]),
        "relu_attributions": True,
        "interpolation": "bilinear, cell-centred",
        "scaling": "min-max per image",
        "flat_map": flat,
        "input_sha256": input_sha256(x),
        "stored_shape": [int(stored.shape[0]), int(stored.shape[1])],
        "stored_dtype": np.dtype(STORED_DTYPE).name,
        "image_shape": [int(image_shape[0]), int(image_shape[1])],
        "upsample": STORED_UPSAMPLE,
    }


@dataclass(frozen=True, slots=True, eq=False)
class StoredMap:
    """A Grad-CAM map as it is stored, without its image-grid form.

    Attributes
    ----------
    cells : ndarray of shape (h, w), float16, values in [0, 1]
        The map on the target layer's grid; read-only.
    params : dict
        The same parameters :func:`explain_images` records, so the viewer rebuilds the same map
        (:func:`upsample_stored`) whichever path stored it.
    """

    cells: np.ndarray
    params: JSONObject


def stored_maps(
    model: LoadedModel,
    inputs: Sequence[FloatArray],
    image_shapes: Sequence[tuple[int, int]],
    *,
    lock: threading.Lock | None = None,
    batch_size: int = 16,
) -> list[StoredMap]:
    """Grad-CAM of already preprocessed inputs, as stored: no full-resolution map is made.

    For the streaming pipeline (:mod:`core.pipeline`), whose workers preprocess and whose main
    process never holds the decoded pixels: only the layer-grid cells leave the device, as
    float16. ``flat_map`` is judged on the layer grid and on the input grid (the map the
    image-grid one is resampled from; a non-constant map stays non-constant when resampled up).

    Parameters
    ----------
    model : LoadedModel
    inputs : sequence of ndarray of shape (1, S, S), float32
        :func:`core.models.preprocess.preprocess` of images inside the card's intended use.
    image_shapes : sequence of (rows, columns)
        Each input's DICOM image size, recorded to rebuild the map on its grid.
    lock, batch_size
        As :func:`explain_images`.

    Returns
    -------
    list of StoredMap
        In the order given; ``cells`` equal the ``stored`` :func:`explain_images` gives the same image.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    if len(inputs) != len(image_shapes):
        raise BadInputError(f"{len(inputs)} inputs but {len(image_shapes)} image shapes")
    layer = resolve_layer(model.network, model.card.target_layer)
    guard = lock if lock is not None else contextlib.nullcontext()
    out: list[StoredMap] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        batch = torch.from_numpy(np.stack(chunk)).to(model.device)
        with guard:
            maps, layer_flat = _grad_cam_cells(model.network, layer, batch, target=0)
        out += _as_stored(model, chunk, image_shapes[start:], maps, layer_flat)
    return out


def scored_maps(
    model: LoadedModel,
    inputs: Sequence[FloatArray],
    image_shapes: Sequence[tuple[int, int]],
    *,
    batch_size: int = 16,
) -> tuple[BatchScores, list[StoredMap]] | None:
    """Scores and stored Grad-CAM maps of preprocessed inputs, from one forward pass per chunk.

    Grad-CAM runs the network forward and back; the forward's output is the logit the score is
    the sigmoid of. Keeping it saves the separate scoring pass, a quarter of the model's work
    per study in the streaming pipeline. Autograd records the forward without changing its
    arithmetic, so the scores equal :func:`core.models.inference.predict_tensor`'s float32 ones
    (the tests compare them).

    Parameters
    ----------
    model : LoadedModel
    inputs : sequence of ndarray of shape (1, S, S), float32
        :func:`core.models.preprocess.preprocess` of images inside the card's intended use; not empty.
    image_shapes : sequence of (rows, columns)
        As :func:`stored_maps`.
    batch_size : int, default 16
        Inputs per forward and backward pass (the backward holds the chunk's activations).

    Returns
    -------
    (BatchScores, list of StoredMap) or None
        The scores in the order given, ``latency_ms`` the forward passes' (copy in, forward,
        sigmoid) and ``peak_memory_bytes`` the whole call's, backward included; and the maps
        :func:`stored_maps` makes. None where the card serves at a reduced precision on this
        device (the map is made in float32 and the score must not be), or where CUDA fails: the
        caller then scores with ``predict_tensor``, which falls back to the CPU and says why.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    if not inputs or len(inputs) != len(image_shapes):
        raise BadInputError(f"{len(inputs)} inputs and {len(image_shapes)} image shapes; both must be equal, >= 1")
    if autocast_dtype(model.card, model.device) is not None:
        return None
    try:
        return _scored_maps(model, inputs, image_shapes, batch_size)
    except RuntimeError:
        if model.device.type != "cuda":
            raise
        torch.cuda.empty_cache()  # predict_tensor tells a CUDA failure from a bug, and falls back or raises
        return None


def _scored_maps(
    model: LoadedModel, inputs: Sequence[FloatArray], image_shapes: Sequence[tuple[int, int]], batch_size: int
) -> tuple[BatchScores, list[StoredMap]]:
    layer = resolve_layer(model.network, model.card.target_layer)
    scores: list[torch.Tensor] = []
    clock = {"started": 0.0, "seconds": 0.0}
    maps: list[StoredMap] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = model.network(x)
        scores.append(logits_to_scores(logits.detach()).double().cpu())  # .cpu() synchronizes CUDA
        clock["seconds"] += time.perf_counter() - clock["started"]
        return logits

    with peak_memory(model.device) as peak:
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            clock["started"] = time.perf_counter()
            batch = torch.from_numpy(np.stack(chunk)).to(model.device)
            cells, layer_flat = _grad_cam_cells(model.network, layer, batch, target=0, forward=forward)
            maps += _as_stored(model, chunk, image_shapes[start:], cells, layer_flat)
    host = torch.cat(scores).numpy()
    host.setflags(write=False)
    out = BatchScores(host, clock["seconds"] * 1e3, str(model.device), peak[0], amp=False)
    return out, maps


def _as_stored(
    model: LoadedModel,
    chunk: Sequence[FloatArray],
    image_shapes: Sequence[tuple[int, int]],
    cells: torch.Tensor,
    layer_flat: torch.Tensor,
) -> list[StoredMap]:
    """Each chunk member's map as stored: float16 cells, flat when flat on the layer grid or on the input grid."""
    out = []
    for x, shape, cam, was_flat in zip(chunk, image_shapes, cells, layer_flat.tolist(), strict=False):
        stored = _to_stored(cam)
        size = int(x.shape[-1])
        up = cell_centred_upsample(torch.from_numpy(stored.astype(np.float32))[None, None], (size, size))
        input_flat = bool(_unit_scale(up[0].clamp_(0.0, 1.0))[1][0])
        out.append(StoredMap(stored, _stored_params(model, x, stored, shape, flat=bool(was_flat) or input_flat)))
    return out


def explain_images(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    lock: threading.Lock | None = None,
    batch_size: int = 16,
) -> list[Explanation]:
    """Grad-CAM for each image at the card's target layer, on the image's own pixel grid.

    Parameters
    ----------
    model : LoadedModel
        The shared model; never mutated.
    images : sequence of DicomImage
        All inside the card's intended use.
    lock : threading.Lock, optional
        The model's explanation lock, held around each captum call only (preprocessing and
        resampling run outside it). ``None`` when the caller owns the model alone (the CLI).
    batch_size : int, default 16

    Returns
    -------
    list of Explanation
        In the order given; ``heatmap`` has shape (rows, columns) of each image, float32 in [0, 1].

    Raises
    ------
    OutsideIntendedUseError
        An image the model does not score has nothing to explain; raised before any work.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    refuse_outside_use(model, images)
    layer = resolve_layer(model.network, model.card.target_layer)
    params = model.preprocessing
    guard = lock if lock is not None else contextlib.nullcontext()
    out: list[Explanation] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        inputs = [preprocess(image.pixels, params) for image in chunk]
        batch = torch.from_numpy(np.stack(inputs)).to(model.device)
        with guard:
            maps, layer_flat = _grad_cam_cells(model.network, layer, batch, target=0)
        for image, x, cam, was_flat in zip(chunk, inputs, maps, layer_flat.tolist(), strict=True):
            out.append(_explanation(model, image, x, cam, layer_flat=bool(was_flat)))
    return out
