"""Does a map reflect the model? Pointing game, deletion/insertion curves, randomization test.

Everything runs on the model's input grid (the preprocessed (1, S, S) tensor the network
sees), except the pointing game, which resamples each map to its lesion mask's grid.

- **Deletion / insertion** (Petsiuk et al., RISE, BMVC 2018): pixels are ranked by the map
  (highest first, ties broken at random). Deletion replaces them, a growing fraction at a time,
  by a heavily blurred copy of the image (a nodule vanishes, the overall brightness stays, so
  the network is not shown black holes it never saw in training); insertion starts from the
  blurred copy and restores them. The curve is the model's probability against the fraction
  changed; its area (trapezoid rule over [0, 1]) is compared with the same curves in a random
  order. All ``steps + 1`` images of a curve are scored in batches, never one at a time.
- **Model-parameter randomization** (Adebayo et al., "Sanity checks for saliency maps",
  NeurIPS 2018): the top layers of a *deep copy* of the network are re-initialized (the shared
  model is never touched) and the Spearman rank correlation between |map| of the trained and of
  the randomized model is measured. High correlation means the map does not depend on what the
  model learned.
- **Pointing game**: :func:`core.explain.localization.peak_in_mask`.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, stats
from torch import nn

from core.errors import BadInputError
from core.explain.base import MapFunction, check_frozen_eval
from core.explain.localization import peak_in_mask
from core.explain.report import MethodFigures
from core.explain.result import ExplainMethod
from core.models.networks import resolve_layer
from core.types import BoolArray, FloatArray, IntArray

__all__ = [
    "CurveResult",
    "FaithfulnessOptions",
    "assess_method",
    "curve_auc",
    "deletion_insertion",
    "dilated_fraction",
    "randomized_copy",
    "rank_correlation",
    "ranking",
    "top_layers",
]


@dataclass(frozen=True, slots=True)
class FaithfulnessOptions:
    """How the checks run.

    Attributes
    ----------
    steps : int
        Points of a deletion/insertion curve after the start (each changes 1/steps of the pixels).
    blur_sigma : float
        Gaussian sigma of the reference image, as a fraction of the input size S.
    feather_sigma : float
        Gaussian sigma, as a fraction of S, that softens the edge between changed and unchanged
        pixels (4 px at S = 224); 0 keeps hard edges. Why: a hard-edged patchwork of sharp and
        blurred pixels is an image no radiograph looks like, and the bundled model scored such
        half-changed images 0.99 whatever the order, so both curves saturated and measured only
        that artifact.
    dilate_px : int
        Pointing-game tolerance on the mask's grid, in pixels.
    batch_size : int
        Images per forward pass when scoring curves.
    seed : int
        Seeds tie-breaking, the random orders and the randomized layers.
    """

    steps: int = 20
    blur_sigma: float = 1.0 / 16.0
    feather_sigma: float = 1.0 / 56.0
    dilate_px: int = 3
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            self.steps < 1
            or self.batch_size < 1
            or self.dilate_px < 0
            or not self.blur_sigma > 0
            or not self.feather_sigma >= 0
        ):
            raise BadInputError(f"invalid faithfulness options: {self}")


@dataclass(frozen=True, slots=True)
class CurveResult:
    """Areas under one image's curves, in [0, 1] (probability x fraction changed)."""

    deletion_auc: float
    insertion_auc: float
    deletion_auc_random: float
    insertion_auc_random: float


def curve_auc(scores: FloatArray) -> float:
    """Trapezoid area under ``scores`` sampled at evenly spaced fractions 0, 1/steps, ..., 1.

    >>> curve_auc(np.array([1.0, 0.5, 0.0]))
    0.5
    """
    if scores.ndim != 1 or len(scores) < 2:
        raise BadInputError(f"a curve needs at least two points, got shape {scores.shape}")
    return float(np.sum((scores[1:] + scores[:-1]) / 2.0) / (len(scores) - 1))


def ranking(saliency: FloatArray, *, rng: np.random.Generator) -> IntArray:
    """Flat pixel indices, highest value first, ties in random order.

    >>> ranking(np.array([[0.0, 2.0], [1.0, 0.0]]), rng=np.random.default_rng(0))[:2].tolist()
    [1, 2]
    """
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    order: IntArray = np.lexsort((rng.random(flat.size), -flat))
    return order


def _blurred(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    img = x[0, 0].detach().cpu().numpy().astype(np.float64)
    out = ndimage.gaussian_filter(img, sigma=sigma_px, mode="nearest")
    return torch.from_numpy(out.astype(np.float32))[None, None].to(x.device)


def _curve_images(
    x: torch.Tensor, reference: torch.Tensor, order: IntArray, steps: int, *, feather_px: float = 0.0
) -> torch.Tensor:
    """(2 * (steps + 1), 1, S, S): deletion images, then insertion images.

    Step ``k`` changes the first ``counts[k]`` pixels of ``order``; with ``feather_px > 0`` the
    changed/unchanged mask is Gaussian-smoothed into a blending weight first (all-zero and
    all-one masks stay exactly 0 and 1, so the curves still start at ``x`` and end at ``reference``).
    """
    n_pix = x[0, 0].numel()
    counts = np.rint(np.linspace(0.0, 1.0, steps + 1) * n_pix).astype(np.int64)
    rank = np.empty(n_pix, dtype=np.int64)
    rank[order] = np.arange(n_pix)
    # changed[k, p]: pixel p is among the first counts[k] of the order.
    changed = (rank[None, :] < counts[:, None]).reshape(steps + 1, *x.shape[-2:]).astype(np.float32)
    if feather_px > 0:
        changed = ndimage.gaussian_filter(changed, sigma=(0.0, feather_px, feather_px), mode="nearest")
        changed[counts == 0], changed[counts == n_pix] = 0.0, 1.0  # no rounding at the end points
    weight = torch.from_numpy(changed)[:, None].to(x.device)
    deletion = weight * reference + (1.0 - weight) * x
    insertion = weight * x + (1.0 - weight) * reference
    return torch.cat([deletion, insertion])


def _probabilities(network: nn.Module, images: torch.Tensor, *, batch_size: int) -> FloatArray:
    with torch.no_grad():
        logits = [network(images[i : i + batch_size])[:, 0] for i in range(0, images.shape[0], batch_size)]
    out: FloatArray = torch.sigmoid(torch.cat(logits).float()).cpu().numpy().astype(np.float64)
    return out


def deletion_insertion(
    network: nn.Module, x: torch.Tensor, saliency: FloatArray, *, options: FaithfulnessOptions
) -> CurveResult:
    """Deletion and insertion AUC of one image, in map order and in a random order.

    Parameters
    ----------
    network : nn.Module
        Eval mode, frozen; scored under ``torch.no_grad()``.
    x : Tensor of shape (1, 1, S, S)
        The preprocessed input.
    saliency : ndarray of shape (S, S)
        The map on the input grid; higher means more evidence for the finding.
    options : FaithfulnessOptions

    Returns
    -------
    CurveResult
    """
    if saliency.shape != tuple(x.shape[-2:]):
        raise BadInputError(f"map {saliency.shape} and input {tuple(x.shape[-2:])} differ in shape")
    rng = np.random.default_rng(options.seed)
    reference = _blurred(x, options.blur_sigma * x.shape[-1])
    feather = options.feather_sigma * x.shape[-1]
    by_map = _curve_images(x, reference, ranking(saliency, rng=rng), options.steps, feather_px=feather)
    at_random = _curve_images(x, reference, rng.permutation(saliency.size), options.steps, feather_px=feather)
    p = _probabilities(network, torch.cat([by_map, at_random]), batch_size=options.batch_size)
    k = options.steps + 1
    return CurveResult(
        deletion_auc=curve_auc(p[:k]),
        insertion_auc=curve_auc(p[k : 2 * k]),
        deletion_auc_random=curve_auc(p[2 * k : 3 * k]),
        insertion_auc_random=curve_auc(p[3 * k :]),
    )


def dilated_fraction(mask: BoolArray, *, dilate_px: int) -> float:
    """Fraction of the image within ``dilate_px`` of the mask: a random peak's hit rate.

    >>> m = np.zeros((10, 10), dtype=bool); m[5, 5] = True
    >>> dilated_fraction(m, dilate_px=1)
    0.05
    """
    r = dilate_px
    yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
    disk = yy * yy + xx * xx <= r * r
    return float(ndimage.binary_dilation(mask.astype(bool), structure=disk).mean())


def top_layers(network: nn.Module, *, k: int = 2) -> tuple[str, ...]:
    """Names of the last ``k`` direct children that hold parameters (e.g. ``("layer4", "fc")``)."""
    with_params = [name for name, child in network.named_children() if any(True for _ in child.parameters())]
    if not with_params:
        raise BadInputError(f"{type(network).__name__} has no layers with parameters to randomize")
    return tuple(with_params[-k:])


def randomized_copy(network: nn.Module, *, layers: Sequence[str], seed: int) -> nn.Module:
    """A deep copy of ``network`` with ``layers`` re-initialized (their own initializers), frozen, in eval.

    The original is only read. Every submodule of each layer with ``reset_parameters`` is reset
    (BatchNorm running statistics included), under a seeded, forked torch generator.
    """
    check_frozen_eval(network)
    twin = copy.deepcopy(network)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            for module in resolve_layer(twin, name).modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def rank_correlation(a: FloatArray, b: FloatArray) -> float:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (same shape); NaN with a warning when constant.

    >>> rank_correlation(np.array([1.0, -2.0, 3.0]), np.array([0.1, 0.2, 0.3]))
    1.0
    """
    x, y = np.abs(np.asarray(a, dtype=np.float64)).ravel(), np.abs(np.asarray(b, dtype=np.float64)).ravel()
    if x.shape != y.shape:
        raise BadInputError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        warnings.warn("a map is constant: its rank correlation is undefined (NaN)", stacklevel=2)
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _pointing(saliency: FloatArray, mask: BoolArray, dilate_px: int) -> tuple[bool, bool]:
    """(hit, flat) for one map resampled bilinearly to the mask's grid."""
    t = torch.from_numpy(np.asarray(saliency, dtype=np.float32))[None, None]
    heat = F.interpolate(t, size=mask.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    if float(heat.max()) == float(heat.min()):
        return False, True
    return peak_in_mask(heat, mask, dilate_px=dilate_px), False


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def assess_method(
    method: ExplainMethod,
    map_fn: MapFunction,
    *,
    network: nn.Module,
    randomized: nn.Module,
    inputs: torch.Tensor,
    masks: Sequence[BoolArray],
    options: FaithfulnessOptions,
) -> MethodFigures:
    """Every check for one method over the positive cases.

    Parameters
    ----------
    method : ExplainMethod
    map_fn : MapFunction
        Called on ``network`` and on ``randomized``.
    network, randomized : nn.Module
        The trained network and its randomized copy (:func:`randomized_copy`).
    inputs : Tensor of shape (n, 1, S, S)
        Preprocessed positive cases.
    masks : sequence of n ndarrays of shape (rows_i, cols_i), bool
        Lesion masks on each image's pixel grid.
    options : FaithfulnessOptions

    Returns
    -------
    MethodFigures
        Means over the cases; NaN where no case defines a figure.
    """
    if inputs.shape[0] != len(masks):
        raise BadInputError(f"{inputs.shape[0]} inputs but {len(masks)} masks")
    if not masks:
        nan = float("nan")
        return MethodFigures(method, 0, 0, 0, nan, nan, nan, nan, nan, nan, nan)
    maps = map_fn(network, inputs).numpy()
    random_maps = map_fn(randomized, inputs).numpy()
    hits = flats = random_flats = 0
    curves: list[CurveResult] = []
    rhos: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flat maps and constant ranks are counted, not shouted
        for i, mask in enumerate(masks):
            hit, flat = _pointing(maps[i], mask, options.dilate_px)
            hits, flats = hits + hit, flats + flat
            curves.append(deletion_insertion(network, inputs[i : i + 1], maps[i], options=options))
            erased = not flat and float(np.ptp(random_maps[i])) == 0.0
            random_flats += erased
            rhos.append(float("nan") if erased else rank_correlation(maps[i], random_maps[i]))
    n = len(masks)
    return MethodFigures(
        method=method,
        n_cases=n,
        n_hits=hits,
        n_flat=flats,
        pointing_hit_rate=hits / n,
        pointing_chance=_nanmean([dilated_fraction(m, dilate_px=options.dilate_px) for m in masks]),
        deletion_auc=_nanmean([c.deletion_auc for c in curves]),
        deletion_auc_random=_nanmean([c.deletion_auc_random for c in curves]),
        insertion_auc=_nanmean([c.insertion_auc for c in curves]),
        insertion_auc_random=_nanmean([c.insertion_auc_random for c in curves]),
        randomization_spearman=_nanmean(rhos),
        n_random_flat=random_flats,
    )
