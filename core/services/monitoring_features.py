"""Image features for drift monitoring: input statistics and penultimate-layer embeddings, cached.

The serving model's input for each scored study is rebuilt exactly as inference built it
(``core.models.preprocess``); its intensity mean and spread and a noise estimate come from
``core.drift.features`` and its embedding is the input of the network's last linear layer, read
by a forward pre-hook that is removed after every batch and only records calls from its own
thread (the cached model is shared, rule R12). Features are derived data: cached one
transaction per batch, not audited.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.drift.features import image_statistics
from core.errors import BadInputError
from core.imaging.dicom import read_dicom
from core.models.loading import LoadedModel
from core.models.preprocess import preprocess
from core.store import model_versions, sites
from core.store.engine import SessionFactory
from core.store.monitoring import FeatureIn, FeatureTask, add_features, features_pending
from core.types import FloatArray

__all__ = ["embed", "refresh_features"]


def refresh_features(
    session_factory: SessionFactory,
    model: LoadedModel,
    *,
    site: str | None = None,
    batch_size: int = 16,
    lock: threading.Lock | None = None,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Cache image statistics and embeddings for every scored study that has none yet.

    Parameters
    ----------
    model : LoadedModel
        The serving model; a forward pre-hook on its last linear layer reads the embedding and is
        removed after every batch (rule R12); it only records calls from this thread.
    lock : threading.Lock, optional
        The shared model's lock (held around each hooked forward pass).

    Returns
    -------
    int
        Instances whose features were stored (those whose pixels no longer decode included,
        with the reason).
    """
    if batch_size < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    with session_factory() as session:
        mv = model_versions.get_by_version(session, model.card.version)
        site_id = sites.get_site(session, site).id if site is not None else None
        pending = features_pending(session, mv.id, site_id=site_id)
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        rows = _features_for(model, mv.id, chunk, lock=lock)
        with session_factory.begin() as session:
            add_features(session, rows, now=now())
        if progress is not None:
            progress(len(chunk))
    return len(pending)


def _features_for(
    model: LoadedModel, model_version_id: int, tasks: Sequence[FeatureTask], *, lock: threading.Lock | None
) -> list[FeatureIn]:
    params = model.preprocessing
    inputs: list[FloatArray] = []
    errors: dict[int, str] = {}
    for i, task in enumerate(tasks):
        try:
            inputs.append(preprocess(read_dicom(Path(task.path)).pixels, params))
        except (OSError, ValueError, BadInputError) as exc:
            errors[i] = f"pixels unreadable: {type(exc).__name__}: {exc}"
    embeddings = iter(embed(model, np.stack(inputs), lock=lock) if inputs else ())
    images = iter(inputs)
    out: list[FeatureIn] = []
    for i, task in enumerate(tasks):
        if i in errors:
            out.append(FeatureIn(task.instance_id, model_version_id, None, None, None, None, errors[i]))
            continue
        stats = image_statistics(next(images))
        vector = np.ascontiguousarray(next(embeddings), dtype="<f4")
        b64 = base64.b64encode(vector.tobytes()).decode("ascii")
        out.append(
            FeatureIn(
                task.instance_id, model_version_id, stats.intensity_mean, stats.intensity_spread, stats.noise, b64
            )
        )
    return out


def _last_linear(network: nn.Module) -> nn.Module:
    heads = [m for m in network.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise BadInputError(f"{type(network).__name__} has no linear layer whose input could serve as an embedding")
    return heads[-1]


def embed(model: LoadedModel, batch: FloatArray, *, lock: threading.Lock | None) -> FloatArray:
    """Penultimate-layer embeddings (the last linear layer's input), shape (n, d)."""
    owner = threading.get_ident()
    captured: list[torch.Tensor] = []

    def grab(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        # Another thread may run the shared model meanwhile; only this call's inputs count.
        if threading.get_ident() == owner:
            captured.append(args[0].detach().float().cpu())

    with lock if lock is not None else nullcontext():
        handle = _last_linear(model.network).register_forward_pre_hook(grab)
        try:
            with torch.inference_mode():
                model.network(torch.from_numpy(batch).to(model.device))
        finally:
            handle.remove()
    return torch.cat(captured).reshape(batch.shape[0], -1).numpy().astype(np.float64)
