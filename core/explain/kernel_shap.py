"""KernelShap (Lundberg & Lee, NeurIPS 2017) over SLIC superpixels, through captum, batched.

Each sample switches a random subset of superpixels to a neutral fill (the image's mean
intensity), scores the perturbed image, and a weighted linear regression with the Shapley
kernel turns the scores into one coefficient per superpixel: its contribution to the logit,
positive for evidence for the finding and negative against it.

captum runs KernelShap in the *superpixel* space: its input is the all-on vector of
``n_superpixels`` features and its baseline the all-off vector, so each sample is a short 0/1
vector. The forward function rebuilds a whole batch of perturbed images from those vectors in
one gather (``fill + on[:, labels] * (x - fill)``) and scores them in one forward pass. Giving
captum the image with a feature mask instead computes the same thing, but captum then builds
every perturbed image separately in Python, which on a 224 x 224 input costs about a third of
a forward per sample. Perturbed images go through the network ``batch_size`` at a time
(captum's ``perturbations_per_eval``), never one forward per sample; the number of forward
calls is ``ceil(n_samples / batch_size)`` and is recorded with each map. captum draws the subsets from
torch's global generator, so the draw runs inside :func:`torch.random.fork_rng` seeded with
``seed``: the same options give the same map, and the caller's random state is restored after.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from captum.attr import KernelShap
from torch import nn

from core.errors import BadInputError
from core.explain.base import RecordedOptions, check_can_explain
from core.explain.per_image import SignedMethod, explain_signed, stack_per_image
from core.explain.result import ExplainMethod, Explanation
from core.explain.superpixels import slic_superpixels
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.types import JSONObject

__all__ = [
    "KernelShapMaps",
    "KernelShapOptions",
    "KernelShapResult",
    "expected_forward_calls",
    "explain_images",
    "kernel_shap_map",
]


@dataclass(frozen=True, slots=True)
class KernelShapOptions(RecordedOptions):
    """Parameters of a KernelShap map, recorded with every explanation.

    Attributes
    ----------
    n_samples : int
        Perturbed images scored per map (the first two are the image itself and the all-fill image).
    batch_size : int
        Perturbed images per forward call. 8 by default: on two CPU cores the bundled network's
        forward costs 2.55 ms per image one at a time, 1.64 ms in batches of 8 and 1.73 ms in
        batches of 16 (larger batches fall out of cache); on a GPU, pass a larger batch.
    n_segments : int
        Approximate number of SLIC superpixels (the regression's features).
    compactness : float
        SLIC compactness on [0, 1] intensities.
    seed : int
        Seeds the sampled subsets.
    """

    n_samples: int = 128
    batch_size: int = 8
    n_segments: int = 64
    compactness: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_samples < 2 or self.batch_size < 1:
            raise BadInputError(f"need n_samples >= 2 and batch_size >= 1, got {self.n_samples}, {self.batch_size}")


@dataclass(frozen=True, slots=True, eq=False)
class KernelShapResult:
    """One image's KernelShap map and what it cost.

    Attributes
    ----------
    raw : Tensor of shape (S, S), float32
        Each pixel holds its superpixel's coefficient (logit units).
    n_superpixels : int
    forward_calls : int
        Forward passes of the network, ``ceil(n_samples / batch_size)``.
    rows_scored : int
        Perturbed images scored over all those passes (``n_samples``).
    fill : float
        The neutral intensity a switched-off superpixel takes.
    """

    raw: torch.Tensor
    n_superpixels: int
    forward_calls: int
    rows_scored: int
    fill: float


def kernel_shap_map(network: nn.Module, x: torch.Tensor, *, options: KernelShapOptions) -> KernelShapResult:
    """KernelShap over the superpixels of one preprocessed input.

    Parameters
    ----------
    network : nn.Module
        Eval mode, frozen parameters; not modified. Runs under ``torch.no_grad()``.
    x : Tensor of shape (1, 1, S, S)
    options : KernelShapOptions

    Returns
    -------
    KernelShapResult
    """
    check_can_explain(network, x, method="KernelShap", needs_grad=False)
    image = x[0, 0].detach().float()
    labels = slic_superpixels(image.cpu().numpy(), n_segments=options.n_segments, compactness=options.compactness)
    n_features = int(labels.max()) + 1
    index = torch.from_numpy(labels).to(x.device)
    fill = float(image.mean())
    delta = (image - fill)[None]  # (1, S, S): what switching every superpixel on adds to the fill
    calls = [0, 0]  # forward passes, images scored

    def forward(on: torch.Tensor) -> torch.Tensor:
        # on: (m, n_features) in {0, 1}; rebuild the m images in one gather, then one forward.
        calls[0] += 1
        calls[1] += int(on.shape[0])
        images = fill + on.to(delta.dtype)[:, index] * delta
        with torch.no_grad():
            out: torch.Tensor = network(images[:, None])
        return out

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        coefs = KernelShap(forward).attribute(
            torch.ones(1, n_features, device=x.device),
            baselines=0.0,
            target=0,
            n_samples=options.n_samples,
            perturbations_per_eval=options.batch_size,
        )
    raw = coefs[0].detach().float()[index].cpu()
    return KernelShapResult(raw=raw, n_superpixels=n_features, forward_calls=calls[0], rows_scored=calls[1], fill=fill)


@dataclass(frozen=True, slots=True)
class KernelShapMaps:
    """A :class:`~core.explain.base.MapFunction`: KernelShap maps of a batch, one image at a time."""

    options: KernelShapOptions

    def __call__(self, network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Maps of shape (n, S, S), float32 on the CPU."""
        return stack_per_image(batch, lambda x: kernel_shap_map(network, x, options=self.options).raw)


def _describe(res: KernelShapResult) -> tuple[torch.Tensor, JSONObject]:
    details: JSONObject = {
        "superpixels": "SLIC (scikit-image) on the preprocessed input",
        "n_superpixels": res.n_superpixels,
        "fill": "image mean",
        "fill_value": res.fill,
        "forward_calls": res.forward_calls,
    }
    return res.raw, details


def explain_images(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    options: KernelShapOptions,
    lock: threading.Lock | None = None,
) -> list[Explanation]:
    """KernelShap map of each image, on the image's own pixel grid.

    Parameters
    ----------
    model : LoadedModel
        The shared model; never mutated.
    images : sequence of DicomImage
        All inside the card's intended use.
    options : KernelShapOptions
    lock : threading.Lock, optional
        The model's explanation lock, held around each image's attribution only.

    Returns
    -------
    list of Explanation
        ``heatmap`` of shape (rows, columns), float32 in [-1, 1], constant over each superpixel
        (nearest-neighbour resampling keeps their edges).

    Raises
    ------
    OutsideIntendedUseError
        Before any work, for an image the model does not score.
    """
    attribute = functools.partial(kernel_shap_map, options=options)
    spec = SignedMethod(ExplainMethod.KERNELSHAP, "nearest", options.to_params())
    return explain_signed(model, images, attribute, _describe, spec, lock=lock)


def expected_forward_calls(options: KernelShapOptions) -> int:
    """``ceil(n_samples / batch_size)``: the forward calls one map takes."""
    return math.ceil(options.n_samples / options.batch_size)
