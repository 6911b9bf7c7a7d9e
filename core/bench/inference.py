"""Benchmarks of ``core.models.inference``: the wrapper and the DICOM-to-score path against a raw forward."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch

from core.bench.harness import BenchResult, interleaved_medians
from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.models.inference import predict_images, predict_tensor
from core.models.intended_use import check_intended_use
from core.models.loading import LoadedModel
from core.models.preprocess import preprocess_batch
from core.types import FloatArray, JSONObject

__all__ = ["BATCH", "END_TO_END_TARGET", "WRAPPER_TARGET", "bench_end_to_end", "bench_wrapper", "run"]

#: Images per case (the issue's batch of 32).
BATCH: Final = 32
#: ``predict_tensor`` may take at most this many times ``network(x)`` on the same batch.
WRAPPER_TARGET: Final = 1.15
#: Reading, preprocessing and scoring 32 files may take at most this many times the raw forward.
END_TO_END_TARGET: Final = 1.25
#: Largest |score difference| the guards accept: the same float32 forward, so 0 in practice.
_ATOL: Final = 1e-6


def run(model: LoadedModel, files: Sequence[Path], *, rounds: int = 5) -> list[BenchResult]:
    """Both inference cases over the first :data:`BATCH` files.

    Parameters
    ----------
    model : LoadedModel
    files : sequence of Path
        At least one DICOM file inside the card's intended use; the first 32 are used.
    rounds : int
        Interleaved timing rounds per case.

    Returns
    -------
    list of BenchResult
        ``[wrapper / raw forward, DICOM -> scores / raw forward]``.
    """
    paths = list(files)[:BATCH]
    if not paths:
        raise BadInputError("the inference benchmark needs at least one DICOM file")
    images = [read_dicom(p) for p in paths]
    for path, image in zip(paths, images, strict=True):
        reason = check_intended_use(image.meta, model.card.intended_use)
        if reason is not None:
            raise BadInputError(f"{path} is outside the model's intended use ({reason}); benchmark in-scope files")
    batch = preprocess_batch([im.pixels for im in images], model.preprocessing)
    return [bench_wrapper(model, batch, rounds=rounds), bench_end_to_end(model, paths, batch, rounds=rounds)]


def _sync(model: LoadedModel) -> Callable[[], None] | None:
    return torch.cuda.synchronize if model.device.type == "cuda" else None


def _raw_scores(model: LoadedModel, x: torch.Tensor) -> FloatArray:
    with torch.inference_mode():
        scores: FloatArray = torch.sigmoid(model.network(x).float())[:, 0].double().cpu().numpy()
    return scores


def _env(model: LoadedModel, batch: torch.Tensor) -> JSONObject:
    return {
        "device": str(model.device),
        "batch_shape": list(batch.shape),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "model_version": model.card.version,
    }


def bench_wrapper(model: LoadedModel, batch: torch.Tensor, *, rounds: int = 5) -> BenchResult:
    """``predict_tensor`` against ``model.network(x)`` under ``inference_mode`` on the same batch.

    Autocast is off on both sides (``amp=False``) so they do the same float32 work; the guard
    checks that the wrapper's scores are ``sigmoid`` of the raw logits.
    """
    x = batch.to(model.device)

    def raw() -> object:
        with torch.inference_mode():
            return model.network(x)

    guard = float(np.max(np.abs(predict_tensor(model, x, amp=False).scores - _raw_scores(model, x))))
    medians = interleaved_medians(
        {"wrapper": lambda: predict_tensor(model, x, amp=False), "raw": raw}, rounds=rounds, sync=_sync(model)
    )
    return BenchResult(
        name="inference wrapper (predict_tensor) / raw network(x) under inference_mode",
        ratio=medians["wrapper"] / medians["raw"],
        target=WRAPPER_TARGET,
        guard=f"wrapper scores equal sigmoid(raw logits) within {_ATOL}",
        guard_ok=guard <= _ATOL,
        absolutes=_env(model, batch)
        | {"wrapper_s": medians["wrapper"], "raw_s": medians["raw"], "max_abs_diff": guard},
    )


def bench_end_to_end(model: LoadedModel, files: Sequence[Path], batch: torch.Tensor, *, rounds: int = 5) -> BenchResult:
    """``read_dicom`` + ``predict_images`` over the files against the raw forward of their batch.

    ``batch`` is the files' preprocessed batch, built beforehand, so the baseline is the forward
    alone. ``predict_images`` runs with ``batch_size=len(files)`` (one forward, like the
    baseline). Reading plus preprocessing alone is timed in the same rounds, to show where the
    rest of the time goes.
    """
    paths = list(files)
    x = batch.to(model.device)

    def end_to_end() -> list[float | None]:
        preds = predict_images(model, [read_dicom(p) for p in paths], batch_size=len(paths))
        return [p.score for p in preds]

    def raw() -> object:
        with torch.inference_mode():
            return model.network(x)

    def read_and_preprocess() -> torch.Tensor:
        return preprocess_batch([read_dicom(p).pixels for p in paths], model.preprocessing)

    guard = float(np.max(np.abs(np.asarray(end_to_end(), dtype=np.float64) - _raw_scores(model, x))))
    medians = interleaved_medians(
        {"end_to_end": end_to_end, "raw": raw, "read_preprocess": read_and_preprocess},
        rounds=rounds,
        sync=_sync(model),
    )
    return BenchResult(
        name=f"DICOM -> scores for {len(paths)} files (read_dicom + predict_images) / raw forward",
        ratio=medians["end_to_end"] / medians["raw"],
        target=END_TO_END_TARGET,
        guard=f"end-to-end scores equal sigmoid(raw logits) on the preprocessed batch within {_ATOL}",
        guard_ok=guard <= _ATOL,
        absolutes=_env(model, batch)
        | {
            "end_to_end_s": medians["end_to_end"],
            "raw_s": medians["raw"],
            "read_preprocess_s": medians["read_preprocess"],
            "max_abs_diff": guard,
            "files": len(paths),
        },
    )
