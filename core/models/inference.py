"""Scoring images with a loaded model: device choice, thread pinning, batching, CPU fallback.

Everything runs under ``torch.inference_mode()`` and never mutates the shared model (rule R12):
when a CUDA call fails, the batch is rescored on a CPU *copy* of the network, built from the
card and the same state dict, never by moving the cached model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import resource
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from core.errors import BadInputError
from core.imaging.image import DicomImage, DicomMeta
from core.models.intended_use import check_intended_use
from core.models.loading import LoadedModel
from core.models.networks import build_network, freeze_for_inference
from core.models.precision import autocast_dtype
from core.models.preprocess import PreprocessParams, preprocess
from core.types import FloatArray

__all__ = [
    "BatchScorer",
    "BatchScores",
    "ImagePrediction",
    "input_sha256",
    "logits_to_scores",
    "peak_memory",
    "pick_device",
    "pin_threads",
    "predict_images",
    "predict_tensor",
    "predictions_from",
    "refused_prediction",
    "score_inputs",
]

_PROC_STATUS: Final = Path("/proc/self/status")
_PROC_CLEAR_REFS: Final = Path("/proc/self/clear_refs")
#: Substrings of RuntimeError messages raised by the CUDA runtime and its libraries.
_CUDA_ERROR_MARKERS: Final = ("CUDA", "cuDNN", "CUBLAS", "cuBLAS", "CUFFT", "NCCL")


@dataclass(frozen=True, slots=True, eq=False)
class BatchScores:
    """Scores of one forward pass over a batch.

    Attributes
    ----------
    scores : ndarray of shape (n,), float64
        ``sigmoid(logit)`` per image, in [0, 1]; read-only.
    latency_ms : float
        Wall milliseconds for the whole batch: host-to-device copy, forward, sigmoid and the
        copy back (CUDA synchronized before the clock is read).
    device : str
        Where the batch was actually scored (``"cpu"``, ``"cuda:0"``).
    peak_memory_bytes : int
        CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak, i.e. the largest
        tensor memory in use during the call, weights included. CPU: how far the process's
        resident set rose above its size at the start of the call (see :func:`_cpu_peak`).
    amp : bool
        Whether autocast was used: only on CUDA, and only for a card validated at a reduced
        precision (:mod:`core.models.precision`).
    fallback : str or None
        ``None``, or why the batch was rescored on the CPU after a CUDA failure.
    """

    scores: FloatArray
    latency_ms: float
    device: str
    peak_memory_bytes: int
    amp: bool
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class ImagePrediction:
    """The model's answer for one image, or why it gave none.

    Attributes
    ----------
    score : float or None
        ``sigmoid(logit)`` in [0, 1]; ``None`` when the image is outside the intended use.
    label : bool or None
        ``score >= card.operating_threshold``; ``None`` when not scored.
    input_sha256 : str or None
        SHA-256 of the preprocessed model input (float32, little-endian, C order, shape
        (1, S, S)): ties the score to the exact tensor the network saw.
    latency_ms : float or None
        The batch's latency divided by the number of images in it: an amortized share, not
        the time this image alone would take.
    device : str or None
        Where it was scored.
    peak_memory_bytes : int or None
        The batch's peak (see :class:`BatchScores`), shared by every image of the batch.
    amp : bool
        Whether autocast was used.
    fallback : str or None
        ``"outside intended use: <reason>"`` (never sent to the model), a CUDA-to-CPU fallback
        reason, or ``None``.
    """

    sop_instance_uid: str
    study_instance_uid: str
    model_version: str
    score: float | None
    label: bool | None
    input_sha256: str | None
    latency_ms: float | None
    device: str | None
    peak_memory_bytes: int | None
    amp: bool
    fallback: str | None


def pick_device() -> torch.device:
    """CUDA device 0 when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pin_threads(n: int) -> tuple[int, int]:
    """Use ``n`` intra-op threads and one inter-op thread (BENCHMARKING.md, step 1).

    Safe to call more than once: torch refuses to change the inter-op pool once parallel work
    has started, so a second call that would change it warns and keeps the current pool.

    Parameters
    ----------
    n : int
        Intra-op threads, >= 1.

    Returns
    -------
    tuple of int
        The (intra-op, inter-op) thread counts in effect afterwards.
    """
    if n < 1:
        raise BadInputError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError as exc:
            warnings.warn(f"inter-op threads stay at {torch.get_num_interop_threads()}: {exc}", stacklevel=2)
    return torch.get_num_threads(), torch.get_num_interop_threads()


def input_sha256(x: FloatArray) -> str:
    """SHA-256 of a model input's bytes as float32, little-endian, C order.

    >>> input_sha256(np.zeros((1, 2, 2), dtype=np.float32))[:16]
    '374708fff7719dd5'
    """
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").data).hexdigest()


# --------------------------------------------------------------------------- memory


def _proc_kib(field: str) -> int:
    for line in _PROC_STATUS.read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in {_PROC_STATUS}")


@contextlib.contextmanager
def _cpu_peak() -> Iterator[list[int]]:
    """Measure how far the process's resident memory rose above its level at entry, in bytes.

    On Linux the kernel's peak-RSS counter (VmHWM) is reset on entry (``clear_refs`` 5), so the
    figure is this call's own peak: VmHWM at exit minus VmRSS at entry. Elsewhere, or where
    that file is not writable, it falls back to the growth of ``getrusage``'s lifetime peak,
    which is 0 whenever the call stays under an earlier peak (a lower bound). Either way it is
    process-wide: concurrent calls in other threads are counted too.
    """
    out = [0]
    try:
        _PROC_CLEAR_REFS.write_text("5", encoding="ascii")
        start, precise = _proc_kib("VmRSS"), True
    except OSError:
        start, precise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    try:
        yield out
    finally:
        end = _proc_kib("VmHWM") if precise else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out[0] = max(0, end - start) * 1024


# --------------------------------------------------------------------------- forward


def logits_to_scores(logits: torch.Tensor) -> torch.Tensor:
    """``sigmoid`` of the network's one logit per image: shape (n,) or (n, 1) in, (n,) float32 out."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim != 1:
        raise BadInputError(f"network returned shape {tuple(logits.shape)}; Vigil scores one logit per image")
    return torch.sigmoid(logits.float())


def _forward(
    network: nn.Module, batch: torch.Tensor, device: torch.device, *, dtype: torch.dtype | None
) -> BatchScores:
    """Score ``batch`` on ``device``, under autocast to ``dtype`` when one is given (CUDA only).

    The clock covers the copies both ways.
    """
    use_amp = dtype is not None and device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=dtype) if use_amp else contextlib.nullcontext()
    with peak_memory(device) as peak, torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        scores = logits_to_scores(network(batch.to(device, non_blocking=False)))
        host = scores.double().cpu().numpy()  # .cpu() synchronizes CUDA before the clock
        latency_ms = (time.perf_counter() - t0) * 1e3
    host.setflags(write=False)
    return BatchScores(scores=host, latency_ms=latency_ms, device=str(device), peak_memory_bytes=peak[0], amp=use_amp)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[list[int]]:
    """Measure a call's peak memory on ``device`` into the yielded list's one item, in bytes, on exit.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (tensor memory, weights
    included). CPU: how far the process's resident set rose (:func:`_cpu_peak`).
    """
    if device.type != "cuda":
        with _cpu_peak() as out:
            yield out
        return
    out = [0]
    torch.cuda.reset_peak_memory_stats(device)
    try:
        yield out
    finally:
        out[0] = int(torch.cuda.max_memory_allocated(device))


_CPU_COPIES: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_CPU_COPIES_LOCK = threading.Lock()


def _cpu_copy(model: LoadedModel) -> nn.Module:
    """Return a frozen CPU twin of ``model.network`` (built once per network, kept while it lives)."""
    with _CPU_COPIES_LOCK:
        net = _CPU_COPIES.get(model.network)
        if net is None:
            net = build_network(dict(model.card.network))
            net.load_state_dict({k: v.detach().to("cpu") for k, v in model.network.state_dict().items()})
            freeze_for_inference(net, torch.device("cpu"))
            _CPU_COPIES[model.network] = net
        return net


def _is_cuda_failure(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _CUDA_ERROR_MARKERS)


def predict_tensor(model: LoadedModel, batch: torch.Tensor, *, amp: bool = True) -> BatchScores:
    """Score a preprocessed batch with one forward pass.

    Parameters
    ----------
    model : LoadedModel
        Never mutated; used under ``torch.inference_mode()``.
    batch : Tensor of shape (n, 1, S, S), float32
        Output of :func:`core.models.preprocess.preprocess_batch`, on any device.
    amp : bool, default True
        Serve at the precision the model's card was validated at (:mod:`core.models.precision`):
        float32 unless the card re-validated a reduced one, and always float32 on the CPU.
        False forces float32 everywhere (benchmarks comparing like with like).

    Returns
    -------
    BatchScores

    Notes
    -----
    A CUDA failure (out of memory, a driver or cuDNN error) is not raised: the batch is
    rescored on a CPU copy of the network and ``fallback`` says why. Any other error is raised.
    """
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise BadInputError(f"batch must have shape (n >= 1, C, H, W), got {tuple(batch.shape)}")
    try:
        dtype = autocast_dtype(model.card, model.device) if amp else None
        return _forward(model.network, batch, model.device, dtype=dtype)
    except RuntimeError as exc:
        if model.device.type != "cuda" or not _is_cuda_failure(exc):
            raise
        reason = f"{model.device} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); scored on CPU"
    torch.cuda.empty_cache()
    cpu = _forward(_cpu_copy(model), batch.detach().cpu(), torch.device("cpu"), dtype=None)
    return BatchScores(cpu.scores, cpu.latency_ms, cpu.device, cpu.peak_memory_bytes, cpu.amp, fallback=reason)


# --------------------------------------------------------------------------- images


def refused_prediction(model: LoadedModel, meta: DicomMeta, reason: str) -> ImagePrediction:
    """The row for an image outside the intended use: the reason recorded, never sent to the model."""
    return ImagePrediction(
        sop_instance_uid=meta.sop_instance_uid,
        study_instance_uid=meta.study_instance_uid,
        model_version=model.card.version,
        score=None,
        label=None,
        input_sha256=None,
        latency_ms=None,
        device=None,
        peak_memory_bytes=None,
        amp=False,
        fallback=f"outside intended use: {reason}",
    )


def score_inputs(model: LoadedModel, inputs: Sequence[tuple[DicomMeta, FloatArray, str]]) -> list[ImagePrediction]:
    """Score preprocessed inputs as one batch, in their order.

    Parameters
    ----------
    model : LoadedModel
    inputs : sequence of (DicomMeta, ndarray of shape (1, S, S) float32, str)
        Each image's header, its model input and that input's :func:`input_sha256`; not empty.

    Returns
    -------
    list of ImagePrediction
        One per input; each carries the batch's latency share, device, peak memory and precision.
    """
    batch = torch.from_numpy(np.stack([x for _, x, _ in inputs]))
    return predictions_from(model, [(meta, digest) for meta, _, digest in inputs], predict_tensor(model, batch))


def predictions_from(
    model: LoadedModel, inputs: Sequence[tuple[DicomMeta, str]], out: BatchScores
) -> list[ImagePrediction]:
    """The prediction rows of one scored batch: each image's header and input digest, with the batch's scores.

    Parameters
    ----------
    inputs : sequence of (DicomMeta, str)
        Each image's header and its model input's :func:`input_sha256`, in the batch's order.
    out : BatchScores
        The batch's scores, one per input; its latency is shared equally among them.
    """
    if len(inputs) != len(out.scores):
        raise BadInputError(f"{len(inputs)} inputs but {len(out.scores)} scores")
    share_ms = out.latency_ms / len(inputs)
    threshold = model.card.operating_threshold
    return [
        ImagePrediction(
            sop_instance_uid=meta.sop_instance_uid,
            study_instance_uid=meta.study_instance_uid,
            model_version=model.card.version,
            score=float(score),
            label=bool(score >= threshold),
            input_sha256=digest,
            latency_ms=share_ms,
            device=out.device,
            peak_memory_bytes=out.peak_memory_bytes,
            amp=out.amp,
            fallback=out.fallback,
        )
        for (meta, digest), score in zip(inputs, out.scores, strict=True)
    ]


def _score_batch(model: LoadedModel, batch: Sequence[tuple[int, DicomMeta, FloatArray, str]]) -> list[ImagePrediction]:
    """:func:`score_inputs` of a :func:`predict_images` batch."""
    return score_inputs(model, [(meta, x, digest) for _, meta, x, digest in batch])


def _ignore(n: int) -> None:
    """No progress to report."""


#: Scores one batch of :func:`predict_images`: each item is (index among the images, header, model
#: input of shape (1, S, S) float32, its :func:`input_sha256`); one prediction per item, in order.
BatchScorer = Callable[[Sequence[tuple[int, DicomMeta, FloatArray, str]]], list[ImagePrediction]]


def predict_images(
    model: LoadedModel,
    images: Sequence[DicomImage],
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
    score: BatchScorer | None = None,
) -> list[ImagePrediction]:
    """Score decoded images in batches, refusing those outside the card's intended use.

    Parameters
    ----------
    model : LoadedModel
    images : sequence of DicomImage
    batch_size : int, default 16
        Images per forward pass; refused images do not take a slot.
    progress : callable, optional
        Called with the number of images just finished (refused ones at once, scored ones
        when their batch returns): pass ``tqdm.update``.
    score : BatchScorer, optional
        Scores each batch in place of :func:`score_inputs`: a caller that explains what it scores
        makes the maps in the same forward pass, from the inputs made here.

    Returns
    -------
    list of ImagePrediction
        One per image, in the order given. An image outside the intended use is never
        preprocessed nor sent to the model; its ``fallback`` says why.
    """
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    params: PreprocessParams = model.preprocessing
    results: list[ImagePrediction | None] = [None] * len(images)
    pending: list[tuple[int, DicomMeta, FloatArray, str]] = []
    tick = progress if progress is not None else _ignore
    scorer = score if score is not None else functools.partial(_score_batch, model)

    def flush() -> None:
        scored = scorer(pending)
        for (i, *_), pred in zip(pending, scored, strict=True):
            results[i] = pred
        tick(len(pending))
        pending.clear()

    for i, image in enumerate(images):
        reason = check_intended_use(image.meta, model.card.intended_use)
        if reason is not None:
            results[i] = refused_prediction(model, image.meta, reason)
            tick(1)
            continue
        x = preprocess(image.pixels, params)
        pending.append((i, image.meta, x, input_sha256(x)))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return [r for r in results if r is not None]
