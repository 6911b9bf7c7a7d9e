"""GradientShap (Lundberg & Lee, NeurIPS 2017; "expected gradients", Erion et al. 2021), chunked.

For an input ``x``, baselines ``b_j`` and a path position ``alpha ~ U(0, 1)``, one sample is

    (x - b_j) * d logit / d z   at   z = b_j + alpha * (x - b_j),

and the map is the mean over samples: a Monte-Carlo estimate of Integrated Gradients averaged
over the baseline distribution, so the map sums (in expectation) to ``logit(x) - E[logit(b)]``.
Positive values are evidence for the finding, negative values evidence against it.

Why not ``captum.attr.GradientShap`` directly: it draws the baselines and the path positions
from numpy's *global* random state (``np.random.choice``, ``np.random.uniform``), so the same
request gives a different map unless process-wide state is reseeded, and it sends all
``n_samples`` rows through the network at once, so memory grows with the sample count. Here the
draws come from a seeded generator (the same parameters give the same map, hence the same
content address), the rows go through in chunks of ``batch_size``, and the input gradient of
each chunk is captum's :class:`~captum.attr.Saliency` (one batched forward plus one backward to
the input, parameters frozen). ``tests/core/explain/test_shap_gradient.py`` checks the result
equals captum's GradientShap on the same draws.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn

from core.errors import BadInputError
from core.explain.base import RecordedOptions, check_can_explain
from core.explain.per_image import SignedMethod, explain_signed, stack_per_image
from core.explain.result import ExplainMethod, Explanation
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.types import FloatArray, IntArray, JSONObject

__all__ = [
    "GradientShapMaps",
    "GradientShapOptions",
    "SampleDraws",
    "baselines_sha256",
    "draw_samples",
    "explain_images",
    "gradient_shap_from_draws",
]


@dataclass(frozen=True, slots=True)
class GradientShapOptions(RecordedOptions):
    """Parameters of a GradientShap map, recorded with every explanation.

    Attributes
    ----------
    n_samples : int
        Samples averaged per image (baseline, path position, noise).
    batch_size : int
        Samples per forward + backward pass; peak memory follows this, not ``n_samples`` nor
        the number of baselines.
    stdev : float
        Standard deviation of Gaussian noise added to the input of each sample (SmoothGrad),
        in preprocessed intensity units ([0, 1]); 0 adds none.
    seed : int
        Seeds the draws; the same options give the same map.
    """

    n_samples: int = 32
    batch_size: int = 8
    stdev: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_samples < 1 or self.batch_size < 1:
            raise BadInputError(f"n_samples and batch_size must be >= 1, got {self.n_samples}, {self.batch_size}")
        if not (self.stdev >= 0.0 and math.isfinite(self.stdev)):
            raise BadInputError(f"stdev must be a finite number >= 0, got {self.stdev}")


@dataclass(frozen=True, slots=True, eq=False)
class SampleDraws:
    """The random choices of every sample.

    Attributes
    ----------
    baseline_index : ndarray of shape (n_samples,), int64
        Which baseline each sample starts from.
    alpha : ndarray of shape (n_samples,), float32
        Position on the straight path from the baseline (0) to the input (1).
    """

    baseline_index: IntArray
    alpha: FloatArray


def draw_samples(n_baselines: int, *, n_samples: int, seed: int) -> SampleDraws:
    """Draw each sample's baseline (uniformly, with replacement) and path position.

    >>> d = draw_samples(4, n_samples=3, seed=0)
    >>> d.baseline_index.shape, bool(((d.alpha >= 0) & (d.alpha < 1)).all())
    ((3,), True)
    """
    if n_baselines < 1:
        raise BadInputError("GradientShap needs at least one baseline image")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n_baselines, size=n_samples).astype(np.int64)
    alpha = rng.uniform(0.0, 1.0, size=n_samples).astype(np.float32)
    return SampleDraws(baseline_index=index, alpha=alpha)


def _noise(shape: tuple[int, ...], *, stdev: float, generator: torch.Generator | None) -> torch.Tensor | None:
    if stdev == 0.0 or generator is None:
        return None
    return torch.randn(shape, generator=generator) * stdev


def gradient_shap_from_draws(
    network: nn.Module,
    x: torch.Tensor,
    baselines: torch.Tensor,
    draws: SampleDraws,
    *,
    batch_size: int,
    stdev: float = 0.0,
    seed: int = 0,
    target: int = 0,
) -> torch.Tensor:
    """The GradientShap map of one input for given draws, ``batch_size`` samples per pass.

    Parameters
    ----------
    network : nn.Module
        Eval mode, frozen parameters; not modified.
    x : Tensor of shape (1, C, S, S)
    baselines : Tensor of shape (k, C, S, S)
        On the network's device.
    draws : SampleDraws
    batch_size : int
    stdev : float, default 0
        Input noise per sample (drawn from a generator seeded with ``seed``).
    target : int, default 0
        Output index explained (the single logit).

    Returns
    -------
    Tensor of shape (C, S, S), float32
        Mean over samples of ``(x_s - b_s) * grad(z_s)``, in logit units per pixel.
    """
    check_can_explain(network, x, method="GradientShap")
    saliency = Saliency(network)
    generator = torch.Generator().manual_seed(seed) if stdev > 0.0 else None
    n = len(draws.alpha)
    total = torch.zeros_like(x[0], dtype=torch.float32)
    for start in range(0, n, batch_size):
        idx = torch.from_numpy(draws.baseline_index[start : start + batch_size]).to(baselines.device)
        alpha = torch.from_numpy(draws.alpha[start : start + batch_size]).to(x.device).view(-1, 1, 1, 1)
        b = baselines.index_select(0, idx)
        xs = x.expand_as(b)
        noise = _noise(tuple(b.shape), stdev=stdev, generator=generator)
        if noise is not None:
            xs = xs + noise.to(x.device)
        z = (b + alpha * (xs - b)).detach().requires_grad_(True)  # captum warns otherwise
        grads = saliency.attribute(z, target=target, abs=False)
        total += ((xs - b) * grads).sum(dim=0).detach().float()
    return total / n


def baselines_sha256(baselines: torch.Tensor) -> str:
    """SHA-256 of the baselines' float32 bytes (C order): which baseline set made a map."""
    return hashlib.sha256(np.ascontiguousarray(baselines.detach().cpu().numpy(), dtype="<f4").data).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class GradientShapMaps:
    """A :class:`~core.explain.base.MapFunction`: GradientShap maps of a batch with fixed baselines.

    Attributes
    ----------
    baselines : Tensor of shape (k, 1, S, S)
    options : GradientShapOptions
    """

    baselines: torch.Tensor
    options: GradientShapOptions

    def __call__(self, network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Maps of shape (n, S, S), float32 on the CPU; every image gets the same draws."""
        _check_baselines(self.baselines, batch)
        device = batch.device
        baselines = self.baselines.to(device)
        draws = draw_samples(len(baselines), n_samples=self.options.n_samples, seed=self.options.seed)

        def one_map(x: torch.Tensor) -> torch.Tensor:
            return gradient_shap_from_draws(
                network,
                x.detach().clone(),
                baselines,
                draws,
                batch_size=self.options.batch_size,
                stdev=self.options.stdev,
                seed=self.options.seed,
            ).sum(dim=0)

        return stack_per_image(batch, one_map)


def _check_baselines(baselines: torch.Tensor, batch: torch.Tensor) -> None:
    if baselines.ndim != 4 or baselines.shape[0] == 0 or baselines.shape[1:] != batch.shape[1:]:
        raise BadInputError(
            f"baselines must have shape (k >= 1, {', '.join(map(str, batch.shape[1:]))}) like the input, "
            f"got {tuple(baselines.shape)}"
        )


def _details(maps: GradientShapMaps) -> JSONObject:
    opts = maps.options
    return {
        "n_baselines": int(maps.baselines.shape[0]),
        "baselines_sha256": baselines_sha256(maps.baselines),
        "forward_calls": math.ceil(opts.n_samples / opts.batch_size),
    }


def explain_images(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    baselines: torch.Tensor,
    options: GradientShapOptions,
    lock: threading.Lock | None = None,
) -> list[Explanation]:
    """GradientShap map of each image, on the image's own pixel grid.

    Parameters
    ----------
    model : LoadedModel
        The shared model; never mutated.
    images : sequence of DicomImage
        All inside the card's intended use.
    baselines : Tensor of shape (k, 1, S, S)
        Preprocessed baseline images (the benchmark site's negatives), any device.
    options : GradientShapOptions
    lock : threading.Lock, optional
        The model's explanation lock, held around each image's attribution only.

    Returns
    -------
    list of Explanation
        ``heatmap`` of shape (rows, columns), float32 in [-1, 1]: positive is evidence for the
        finding. ``params["raw_max_abs"]`` is the logit-per-pixel value that 1.0 stands for.

    Raises
    ------
    OutsideIntendedUseError
        Before any work, for an image the model does not score.
    BadInputError
        Baselines of the wrong shape.
    """
    maps = GradientShapMaps(baselines=baselines.detach(), options=options)

    def attribute(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return maps(network, batch)[0]

    details = _details(maps)  # the same baselines and options for every image: hash them once

    def describe(raw: torch.Tensor) -> tuple[torch.Tensor, JSONObject]:
        return raw, details

    spec = SignedMethod(ExplainMethod.GRADIENTSHAP, "bilinear", options.to_params(), record_raw_sum=True)
    return explain_signed(model, images, attribute, describe, spec, lock=lock)
