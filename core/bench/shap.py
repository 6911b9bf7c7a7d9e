"""Benchmarks of the SHAP methods: against raw torch, with equality and counter guards.

- GradientShap(n) against ``n / batch`` batched forward + input-gradient passes written in
  plain torch on the same draws (guard: the two maps are equal);
- KernelShap(n) against ``n`` single-image forwards (guard: ``ceil(n / batch)`` forward calls
  that scored exactly ``n`` images);
- peak tensor memory of GradientShap with 32 baselines over 8 (``n_samples`` = baselines, so
  an unchunked implementation would grow 4x; guard: the chunked map equals the one-pass map);
- 200 explanation calls of every method: resident memory growth, guard: hooks unchanged.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.profiler import ProfilerActivity, profile

from core.bench.harness import BenchResult, interleaved_medians
from core.errors import BadInputError
from core.explain.base import MapFunction
from core.explain.dispatch import GradCamMaps
from core.explain.gradient_shap import GradientShapMaps, GradientShapOptions, draw_samples, gradient_shap_from_draws
from core.explain.kernel_shap import KernelShapMaps, KernelShapOptions, kernel_shap_map
from core.imaging.image import DicomImage
from core.models.loading import LoadedModel
from core.models.preprocess import preprocess_batch
from core.types import JSONObject

__all__ = ["GRADIENT_TARGET", "KERNEL_TARGET", "LEAK_MB_TARGET", "MEMORY_TARGET", "run"]

GRADIENT_TARGET: Final = 1.25
KERNEL_TARGET: Final = 1.1
MEMORY_TARGET: Final = 1.5
LEAK_MB_TARGET: Final = 50.0
_PROC_STATUS: Final = Path("/proc/self/status")


def _raw_gradient_shap(
    net: nn.Module, x: torch.Tensor, baselines: torch.Tensor, opts: GradientShapOptions
) -> torch.Tensor:
    """The baseline: the same samples, ``n / batch`` passes of forward + ``autograd.grad`` to the input."""
    draws = draw_samples(len(baselines), n_samples=opts.n_samples, seed=opts.seed)
    total = torch.zeros_like(x[0])
    for start in range(0, opts.n_samples, opts.batch_size):
        idx = torch.from_numpy(draws.baseline_index[start : start + opts.batch_size]).to(x.device)
        alpha = torch.from_numpy(draws.alpha[start : start + opts.batch_size]).to(x.device).view(-1, 1, 1, 1)
        b = baselines.index_select(0, idx)
        z = (b + alpha * (x - b)).requires_grad_(True)
        (grad,) = torch.autograd.grad(net(z)[:, 0].sum(), z)
        total += ((x - b) * grad).sum(dim=0)
    return total / opts.n_samples


def _gradient_case(model: LoadedModel, x: torch.Tensor, baselines: torch.Tensor, rounds: int) -> BenchResult:
    opts = GradientShapOptions(n_samples=32, batch_size=8)
    net = model.network
    draws = draw_samples(len(baselines), n_samples=opts.n_samples, seed=opts.seed)

    def ours() -> torch.Tensor:
        return gradient_shap_from_draws(net, x, baselines, draws, batch_size=opts.batch_size)

    def raw() -> torch.Tensor:
        return _raw_gradient_shap(net, x, baselines, opts)

    a, b = ours(), raw()
    diff = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
    med = interleaved_medians({"gradientshap": ours, "raw": raw}, rounds=rounds, sync=_sync(model))
    return BenchResult(
        name=f"GradientShap({opts.n_samples}) / {opts.n_samples // opts.batch_size} x batched forward+input-grad",
        ratio=med["gradientshap"] / med["raw"],
        target=GRADIENT_TARGET,
        guard="map equals the raw-torch map on the same draws (max rel. diff <= 1e-5)",
        guard_ok=diff <= 1e-5,
        absolutes={
            "gradientshap_s": med["gradientshap"],
            "raw_s": med["raw"],
            "max_rel_diff": diff,
            **opts.to_params(),
        },
    )


def _kernel_case(model: LoadedModel, x: torch.Tensor, rounds: int) -> BenchResult:
    opts = KernelShapOptions(n_samples=128)  # the default batch, as the report and the app use
    net = model.network

    def ours() -> object:
        return kernel_shap_map(net, x, options=opts)

    def single() -> object:
        with torch.no_grad():
            return [net(x) for _ in range(opts.n_samples)]

    res = kernel_shap_map(net, x, options=opts)
    expected = math.ceil(opts.n_samples / opts.batch_size)
    med = interleaved_medians({"kernelshap": ours, "single": single}, rounds=rounds, sync=_sync(model))
    return BenchResult(
        name=f"KernelShap({opts.n_samples}) / {opts.n_samples} single-image forwards",
        ratio=med["kernelshap"] / med["single"],
        target=KERNEL_TARGET,
        guard=f"forward calls == ceil(n / batch) == {expected} and images scored == n",
        guard_ok=res.forward_calls == expected and res.rows_scored == opts.n_samples,
        absolutes={
            "kernelshap_s": med["kernelshap"],
            "single_s": med["single"],
            "forward_calls": res.forward_calls,
            "rows_scored": res.rows_scored,
            "n_superpixels": res.n_superpixels,
            **opts.to_params(),
        },
    )


def _peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak tensor memory of one call: CUDA's counter, or the CPU profiler's allocation events."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:  # each op's own allocations minus frees, in the order the ops started
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def _memory_case(model: LoadedModel, x: torch.Tensor, pool: torch.Tensor) -> BenchResult:
    peaks, maps = {}, {}
    for k in (8, 32):
        baselines = pool[torch.arange(k) % len(pool)].clone()
        fn = GradientShapMaps(baselines, GradientShapOptions(n_samples=k, batch_size=8))

        def call(fn: GradientShapMaps = fn) -> torch.Tensor:
            return fn(model.network, x)

        _peak_bytes(call, model.device)  # warm-up
        peaks[k] = _peak_bytes(call, model.device)
        one_pass = GradientShapMaps(baselines, GradientShapOptions(n_samples=k, batch_size=k))
        maps[k] = (fn(model.network, x), one_pass(model.network, x))
    ok = all(torch.allclose(a, b, rtol=1e-4, atol=1e-7 * float(b.abs().max())) for a, b in maps.values())
    return BenchResult(
        name="GradientShap peak tensor memory, 32 baselines / 8 baselines (n_samples = baselines, batch 8)",
        ratio=peaks[32] / max(peaks[8], 1),
        target=MEMORY_TARGET,
        guard="chunked map equals the one-pass map for both baseline counts",
        guard_ok=ok,
        absolutes={"peak_8_bytes": peaks[8], "peak_32_bytes": peaks[32], "measure": _measure(model.device)},
    )


def _measure(device: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch.profiler CPU allocation events"


def _rss_bytes() -> int:
    for line in _PROC_STATUS.read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def hook_snapshot(net: nn.Module) -> list[tuple[str, int, int, int, int]]:
    """Hook counts of every submodule, plus the global module hooks (last entry)."""
    snap = [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(m._backward_pre_hooks))
        for name, m in net.named_modules()
    ]
    glob = torch_module
    snap.append(
        (
            "<global>",
            len(glob._global_forward_hooks),
            len(glob._global_forward_pre_hooks),
            len(glob._global_backward_hooks),
            0,
        )
    )
    return snap


def _leak_case(model: LoadedModel, x: torch.Tensor, baselines: torch.Tensor, calls: int) -> BenchResult:
    fns: list[MapFunction] = [
        GradCamMaps(model.card.target_layer),
        GradientShapMaps(baselines[:2], GradientShapOptions(n_samples=2, batch_size=2)),
        KernelShapMaps(KernelShapOptions(n_samples=4, batch_size=4)),
    ]
    for i in range(12):  # warm-up: allocator pools and lazy initialization settle
        fns[i % 3](model.network, x)
    before_hooks = hook_snapshot(model.network)
    gc.collect()
    before = _rss_bytes()
    for i in range(calls):
        fns[i % 3](model.network, x)
    gc.collect()
    growth_mb = (_rss_bytes() - before) / 2**20
    return BenchResult(
        name=f"resident memory growth over {calls} explanation calls (MB; Grad-CAM, GradientShap, KernelShap in turn)",
        ratio=max(growth_mb, 0.0),
        target=LEAK_MB_TARGET,
        guard="hooks on every module (and global hooks) unchanged",
        guard_ok=hook_snapshot(model.network) == before_hooks,
        absolutes={"growth_mb": growth_mb, "rss_before_bytes": before, "calls": calls},
    )


def _sync(model: LoadedModel) -> Callable[[], None] | None:
    return torch.cuda.synchronize if model.device.type == "cuda" else None


def run(
    model: LoadedModel, images: Sequence[DicomImage] | torch.Tensor, *, rounds: int = 5, leak_calls: int = 200
) -> list[BenchResult]:
    """All four SHAP cases.

    Parameters
    ----------
    model : LoadedModel
    images : sequence of DicomImage, or Tensor of shape (n >= 2, 1, S, S)
        The first is explained; the rest are the baseline pool (the benchmark site's negatives
        in ``vigil bench``), repeated as needed to reach 32 baselines.
    rounds : int
        Interleaved timing rounds.
    leak_calls : int, default 200
        Explanation calls in the memory-growth case.

    Returns
    -------
    list of BenchResult
        GradientShap time, KernelShap time, peak memory, memory growth; each with its guard.
    """
    batch = (
        images
        if isinstance(images, torch.Tensor)
        else preprocess_batch([im.pixels for im in images], model.preprocessing)
    )
    if batch.ndim != 4 or batch.shape[0] < 2:
        raise BadInputError(f"the SHAP benchmark needs (n >= 2, 1, S, S) inputs, got {tuple(batch.shape)}")
    batch = batch.to(model.device)
    x, pool = batch[:1], batch[1:]
    baselines = pool[torch.arange(16) % len(pool)].clone()
    results = [
        _gradient_case(model, x, baselines, rounds),
        _kernel_case(model, x, rounds),
        _memory_case(model, x, pool),
        _leak_case(model, x, baselines, leak_calls),
    ]
    env: JSONObject = {
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "model_version": model.card.version,
    }
    return [BenchResult(r.name, r.ratio, r.target, r.guard, r.guard_ok, {**r.absolutes, **env}) for r in results]
