"""One site's share of a federated round: train or evaluate the network on the site's own studies.

No Flower here (the ClientApp in :mod:`core.federated.client_app` wraps these functions). Data
enter as the site's manifest of labelled studies (its labels of record, outside the locked
hold-out) and leave as weights of the network's parameter shapes plus aggregate numbers:
examples used, mean loss, AUC. Nothing per study is returned.

Weights travel as float32 arrays in ``state_dict`` order, buffers included (BatchNorm's running
statistics are part of the model a site's data shaped; its ``num_batches_tracked`` counter is
cast to float32 and back, so that every array can be averaged, clipped and noised alike).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.audit.chain import canonical_json
from core.errors import BadInputError, HoldoutLeakError
from core.models.evaluate import LabelledStudy, auc_or_nan, load_inputs
from core.models.finetune import TrainingExample
from core.models.networks import build_network
from core.models.preprocess import PreprocessParams
from core.models.training import augment

__all__ = [
    "LocalEvaluation",
    "LocalTrainConfig",
    "LocalUpdate",
    "SiteData",
    "SiteManifest",
    "architecture_sha256",
    "evaluate_local",
    "integer_entries",
    "load_site_data",
    "network_arrays",
    "read_site_manifest",
    "split_site",
    "train_local",
    "update_norm",
    "write_site_manifest",
]

_MANIFEST_FORMAT: Final = "vigil-fl-site-manifest/1"


@dataclass(frozen=True, slots=True)
class LocalTrainConfig:
    """What a site does with one round's global model.

    Attributes
    ----------
    epochs : int
        Local passes over the site's training studies per round.
    learning_rate : float
        AdamW learning rate (constant within a round).
    batch_size : int
    max_shift_px : int
        Random translation, in input pixels, with random left-right flips (the training recipe's
        augmentation).
    seed : int
        Seeds shuffling and augmentation; a round adds its number, so rounds differ.
    """

    epochs: int = 1
    learning_rate: float = 3e-4
    batch_size: int = 8
    max_shift_px: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise BadInputError(f"need epochs >= 1 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise BadInputError(f"learning rate must be a finite number > 0, got {self.learning_rate!r}")


@dataclass(frozen=True, slots=True)
class SiteManifest:
    """The studies one site may train on; the file stays at the site.

    Attributes
    ----------
    site : str
    examples : tuple of TrainingExample
        Labels of record, each with the path and SHA-256 of its image.
    holdout_uids : frozenset of str
        The locked hold-out's Study Instance UIDs: refused if any is among ``examples``.
    """

    site: str
    examples: tuple[TrainingExample, ...]
    holdout_uids: frozenset[str]


@dataclass(frozen=True, slots=True)
class SiteData:
    """A site's preprocessed films.

    Attributes
    ----------
    inputs : Tensor of shape (n, 1, size, size), float32
    labels : ndarray of shape (n,), int64, 0/1
    """

    site: str
    inputs: torch.Tensor
    labels: np.ndarray


@dataclass(frozen=True, slots=True)
class LocalUpdate:
    """What a site sends back after training: weights and aggregate numbers only.

    Attributes
    ----------
    weights : tuple of ndarray, float32
        The trained network's ``state_dict`` entries, in order, of the global model's shapes.
    n_examples : int
        Training studies used (Flower's weighting key).
    train_loss : float
        Mean binary cross-entropy over the last local epoch.
    """

    weights: tuple[np.ndarray, ...]
    n_examples: int
    train_loss: float


@dataclass(frozen=True, slots=True)
class LocalEvaluation:
    """A global model scored on a site's validation studies: aggregates only.

    Attributes
    ----------
    n_examples, n_positive : int
    auc : float
        NaN when the studies hold one class only.
    loss : float
        Mean binary cross-entropy.
    """

    n_examples: int
    n_positive: int
    auc: float
    loss: float


def write_site_manifest(manifest: SiteManifest, path: Path) -> None:
    """Write ``manifest`` as JSON (paths absolute), readable by :func:`read_site_manifest`."""
    rows = [
        {
            "study_uid": e.study_uid,
            "path": str(Path(e.path).resolve()),
            "sha256": e.sha256,
            "label": int(e.label),
            "source": e.source,
        }
        for e in manifest.examples
    ]
    doc = {
        "format": _MANIFEST_FORMAT,
        "site": manifest.site,
        "holdout_uids": sorted(manifest.holdout_uids),
        "examples": rows,
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")


def read_site_manifest(path: Path) -> SiteManifest:
    """Read a manifest written by :func:`write_site_manifest`.

    Raises
    ------
    BadInputError
        Missing or unreadable file, another format, or a row without a 0/1 label.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"site manifest {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _MANIFEST_FORMAT:
        raise BadInputError(f"site manifest {str(path)!r} is not a {_MANIFEST_FORMAT} file")
    site = str(doc["site"])
    examples = tuple(_example(row, site, path) for row in doc["examples"])
    return SiteManifest(site, examples, frozenset(str(u) for u in doc["holdout_uids"]))


def _example(row: Mapping[str, Any], site: str, path: Path) -> TrainingExample:
    label = row.get("label")
    if label not in (0, 1):
        raise BadInputError(
            f"site manifest {str(path)!r}: label must be 0 or 1, got {label!r} for {row.get('study_uid')!r}"
        )
    return TrainingExample(
        study_uid=str(row["study_uid"]),
        path=Path(str(row["path"])),
        sha256=str(row["sha256"]),
        site=site,
        label=int(label),
        source=str(row["source"]),
    )


def split_site(
    examples: Sequence[TrainingExample], *, max_studies: int, val_fraction: float, seed: int
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Choose at most ``max_studies`` (0: all) and split them into (train, val), label-stratified.

    Deterministic from ``seed``: within a label the order is the SHA-256 of seed and UID. Each
    label with at least two studies gives val at least one.
    """
    ranked = sorted(examples, key=lambda e: hashlib.sha256(f"fl:{seed}:{e.study_uid}".encode()).hexdigest())
    if max_studies > 0:
        ranked = ranked[:max_studies]
    train: list[TrainingExample] = []
    val: list[TrainingExample] = []
    for label in (0, 1):
        members = [e for e in ranked if e.label == label]
        k = max(1, round(val_fraction * len(members))) if len(members) >= 2 else 0
        val += members[:k]
        train += members[k:]
    return train, val


def load_site_data(
    site: str, examples: Sequence[TrainingExample], holdout_uids: frozenset[str], params: PreprocessParams
) -> SiteData:
    """Read and preprocess a site's studies after refusing any hold-out study or another site's study.

    Raises
    ------
    HoldoutLeakError
        A study is in the locked hold-out (checked before any image is read).
    BadInputError
        No study, or a study of another site.
    DicomRejectedError
        An image is unreadable or its bytes do not match its SHA-256.
    """
    if leaked := [e.study_uid for e in examples if e.study_uid in holdout_uids]:
        raise HoldoutLeakError(leaked[0], len(leaked))
    if foreign := next((e for e in examples if e.site != site), None):
        raise BadInputError(f"site {site!r} was given study {foreign.study_uid!r} of site {foreign.site!r}")
    if not examples:
        raise BadInputError(f"site {site!r} has no labelled study to use")
    studies = tuple(LabelledStudy(Path(e.path), e.sha256, e.site, e.label, "federated", False) for e in examples)
    return SiteData(site, load_inputs(studies, params), np.array([e.label for e in examples], dtype=np.int64))


def network_arrays(network: nn.Module) -> list[np.ndarray]:
    """The network's ``state_dict`` as float32 arrays, in order (copies)."""
    return [t.detach().cpu().to(torch.float32).numpy().copy() for t in network.state_dict().values()]


def _network_from(spec: Mapping[str, Any], weights: Sequence[np.ndarray]) -> nn.Module:
    network = build_network(dict(spec))
    state = network.state_dict()
    if len(weights) != len(state):
        raise BadInputError(f"the model has {len(state)} arrays, got {len(weights)}")
    loaded = {}
    for (name, current), array in zip(state.items(), weights, strict=True):
        if tuple(array.shape) != tuple(current.shape):
            raise BadInputError(
                f"array {name!r} has shape {tuple(array.shape)}, the model needs {tuple(current.shape)}"
            )
        loaded[name] = torch.from_numpy(np.ascontiguousarray(array)).to(current.dtype)
    network.load_state_dict(loaded)
    return network


def architecture_sha256(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the network's spec and of its ``state_dict`` names and shapes.

    Two sites agree on it only when they build the same network the same way (same spec, same
    library behaviour), which is what averaging their weights needs.
    """
    network = build_network(dict(spec))
    layout = [[name, list(t.shape)] for name, t in network.state_dict().items()]
    return hashlib.sha256(canonical_json({"spec": dict(spec), "state": layout})).hexdigest()


def integer_entries(spec: Mapping[str, Any]) -> tuple[bool, ...]:
    """Whether each ``state_dict`` entry of the network is an integer counter (``num_batches_tracked``)."""
    return tuple(not t.is_floating_point() for t in build_network(dict(spec)).state_dict().values())


def train_local(
    spec: Mapping[str, Any], weights: Sequence[np.ndarray], data: SiteData, cfg: LocalTrainConfig, *, server_round: int
) -> LocalUpdate:
    """Train the global model ``weights`` on the site's films for ``cfg.epochs`` passes.

    Float32 (rounds are short and the aggregate is what is kept); deterministic kernels are not
    forced, so a site's update is reproducible on its own machine only.
    """
    network = _network_from(spec, weights)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + server_round)
    opt = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate)
    labels = torch.from_numpy(data.labels).to(torch.float32)[:, None]
    no_centres = torch.full((len(data.labels), 2), -1.0)
    n = len(data.labels)
    losses: list[float] = []
    for _ in range(cfg.epochs):
        losses = []
        order = torch.randperm(n, generator=gen)
        network.train()
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            x, _ = augment(data.inputs[idx], no_centres[idx], gen, cfg.max_shift_px)
            loss = F.binary_cross_entropy_with_logits(network(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            losses.append(float(loss.detach()) * len(idx))
    # BatchNorm's step counters are not learnt and are unused at its fixed momentum; left as received,
    # they add nothing to the update's norm (which clipping and the robust strategies measure).
    arrays = [
        np.asarray(weights[i], dtype=np.float32).copy() if name.endswith("num_batches_tracked") else a
        for i, (name, a) in enumerate(zip(network.state_dict(), network_arrays(network), strict=True))
    ]
    return LocalUpdate(tuple(arrays), n, sum(losses) / n)


def evaluate_local(spec: Mapping[str, Any], weights: Sequence[np.ndarray], data: SiteData) -> LocalEvaluation:
    """Score the site's validation films with ``weights``: counts, AUC and mean loss."""
    network = _network_from(spec, weights).eval()
    with torch.no_grad():
        logits = torch.cat([network(data.inputs[i : i + 32]) for i in range(0, len(data.labels), 32)])[:, 0]
    labels = torch.from_numpy(data.labels).to(torch.float32)
    loss = float(F.binary_cross_entropy_with_logits(logits, labels))
    scores = torch.sigmoid(logits).numpy().astype(np.float64)
    return LocalEvaluation(len(data.labels), int(data.labels.sum()), auc_or_nan(data.labels, scores), loss)


def update_norm(new: Sequence[np.ndarray], old: Sequence[np.ndarray]) -> float:
    """L2 norm of ``new - old`` over every array (the size of a site's update)."""
    total = sum(
        float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
        for a, b in zip(new, old, strict=True)
    )
    return float(np.sqrt(total))
