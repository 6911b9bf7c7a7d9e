"""Train the demonstration nodule model on the benchmark site and write its weights and model card.

The network is the card's MONAI ResNet (:data:`core.models.networks.DEFAULT_NETWORK`), trained on
the benchmark site's ``train`` split only, with images read by ``core.imaging.dicom.read_dicom``
and prepared by ``core.models.preprocess.preprocess`` (the inference path).

Training has two stages. A nodule covers ~0.1 % of a film, so image-level labels alone give a
global-average-pooled network almost no gradient towards it: trained on a few hundred full films
it memorizes patients instead. The first stage therefore uses the benchmark's lesion annotations
(as retrospective nodule sets such as JSRT carry them): small crops of the same preprocessed
images, centred near the annotated nodule (positive) or elsewhere in the lungs of a negative film,
or at the mirrored position of a positive film (negative). The second stage fine-tunes on whole
films with image-level labels. In both stages a localization term (``localization_weight``), used
in training only, teaches a 1x1 convolution on the Grad-CAM layer where the annotated
nodule is, so that the layer's features, and the explanations read from them, sit on the nodule
rather than wherever one training run happened to put them. The network never sees a crop at
inference; it is fully convolutional up to its global pooling, so the same weights score whole
films. The epoch with the best validation AUC (on whole films) is kept, and the operating
threshold is Youden's J on the benchmark ``val`` split. Without lesion annotations the first
stage is skipped.

Held-out metrics are computed, never written: the benchmark ``test`` split and every deployment
site of the training cohort, and, when ``eval_cohort_dir`` is given, every study of a separately
generated evaluation cohort (a different seed: new phantoms, same sites), whose larger sample
makes the per-site AUCs steadier. The card records which figures came from which data.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BadInputError
from core.models.card import IntendedUse, ModelCard, write_card
from core.models.evaluate import (
    LabelledStudy,
    auc_or_nan,
    held_out_metrics,
    load_inputs,
    read_labelled_studies,
    score_inputs,
    youden_threshold,
)
from core.models.loading import sha256_file
from core.models.localization_term import localization_term
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams
from core.models.provenance import code_version, environment
from core.types import JSONObject, JSONValue

__all__ = [
    "DEFAULT_VERSION",
    "PROVENANCE_PACKAGES",
    "TARGET_LAYER",
    "FilmSplit",
    "TrainingConfig",
    "augment",
    "deterministic",
    "load_split",
    "run_stage",
    "train_model",
]

DEFAULT_VERSION: Final = "cxr-nodule-1.0.0"
#: Grad-CAM layer: 56 x 56 maps for a 224 input (4-pixel cells, ~7 mm). With ``layer3`` (28 x 28) the map's peak
#: fell inside the lesion mask dilated by 3 pixels for under half of the benchmark positives, with ``layer2`` for 84 %.
TARGET_LAYER: Final = "layer2"
_PACKAGES: Final = ("torch", "monai", "numpy", "scipy", "scikit-learn", "pydicom")

#: DICOM keywords behind the :class:`DicomMeta` fields that ``read_dicom`` fills, in field order, then the pixel module.
_DICOM_ATTRIBUTES: Final = tuple(
    "SOPInstanceUID SOPClassUID StudyInstanceUID SeriesInstanceUID Modality BodyPartExamined ViewPosition ImageType "
    "Manufacturer ManufacturerModelName StationName InstitutionName SoftwareVersions ProtocolName PatientID PatientAge "
    "PatientSex KVP AccessionNumber StudyDate Rows Columns PixelSpacing PhotometricInterpretation BitsStored "
    "TransferSyntaxUID WindowCenter WindowWidth PixelData RescaleSlope RescaleIntercept ModalityLUTSequence".split()
)


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """Hyperparameters, recorded verbatim in the card.

    Attributes
    ----------
    epochs : int
        Whole-film passes over the benchmark train split (second stage).
    crop_epochs : int
        Lesion-crop passes (first stage): one crop per training film per pass.
    crop_size : int
        Crop side, in pixels of the preprocessed input.
    batch_size : int
    learning_rate : float
        Peak AdamW learning rate; cosine decay to 2 % of it over all steps.
    weight_decay : float
    finetune_lr_factor : float
        Whole-film stage learning rate relative to ``learning_rate`` (when a crop stage ran).
    max_shift_px : int
        Random translation (pixels of the 224 input) applied to each training image; together with
        random left-right flips the only augmentation.
    localization_weight : float
        Weight of the localization term in both stages (0: none): a training-only 1x1 convolution
        on the target layer learns from the annotated nodule centres where the nodule is, which
        makes the layer's features, and so its Grad-CAM maps, sit on the nodule. Without it the
        same recipe gave networks of equal AUC whose maps peaked on the nodule for 0 to 74 % of
        the committed positives, depending on rounding alone; with it in the crop stage only,
        7 to 71 %; in both stages, 80 % (float64, seed 0, 56 crop epochs: the bundled recipe).
        0 turns it off.
    float64 : bool
        Train in double precision; the weights are stored, scored and served as float32. Training
        is chaotic: a float32 rounding difference (another CPU's kernels, another thread count)
        grows over the steps into a different network, with deployment-site AUCs 0.1 to 0.3
        apart. In float64 the same perturbation stays ~1e-11 in the weights, so a seed gives the
        same network on any machine, at about twice the training time. On by default (the bundled
        recipe); ``False`` trains in float32, faster but reproducible only on the same machine.
    """

    epochs: int = 6
    crop_epochs: int = 56
    crop_size: int = 96
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    finetune_lr_factor: float = 0.25
    max_shift_px: int = 8
    float64: bool = True
    localization_weight: float = 1.0

    def to_json(self) -> JSONObject:
        """The hyperparameters as card JSON."""
        return {
            "epochs": self.epochs,
            "crop_epochs": self.crop_epochs,
            "crop_size": self.crop_size,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "finetune_lr_factor": self.finetune_lr_factor,
            "optimizer": "AdamW",
            "precision": "float64 training, float32 weights" if self.float64 else "float32",
            "localization_weight": self.localization_weight,
            "schedule": "cosine per stage (per step)",
            "loss": "binary cross-entropy on the single logit",
            "stages": "lesion-centred crops, then whole films"
            + ("; both with the localization term" if self.localization_weight > 0 else ""),
            "augmentation": f"left-right flip p=0.5, translation up to {self.max_shift_px} px (whole films), "
            "random crop offset (crops)",
            "selection": "whole-film epoch with the best benchmark validation AUC",
        }


@dataclass(frozen=True, slots=True)
class _Split:
    """Preprocessed films of one split; ``centres`` are lesion centres in input pixels, (-1, -1) if none."""

    studies: tuple[LabelledStudy, ...]
    inputs: torch.Tensor
    labels: np.ndarray
    centres: torch.Tensor


def train_model(  # noqa: PLR0913 - keyword-only; one argument per training input
    *,
    cohort_dir: Path,
    out_dir: Path,
    seed: int,
    store_revision: str,
    config: TrainingConfig | None = None,
    eval_cohort_dir: Path | None = None,
    version: str = DEFAULT_VERSION,
    progress: Callable[[int, int], None] | None = None,
) -> ModelCard:
    """Train on the benchmark site, choose the threshold, evaluate, write weights and card.

    Parameters
    ----------
    cohort_dir : Path
        A labelled cohort (``manifest.csv``, see :mod:`core.models.evaluate`) with benchmark
        ``train`` and ``val`` studies.
    out_dir : Path
        Receives ``<version>.pt`` (a ``state_dict``) and ``card.json``; created if needed.
    seed : int
        Seeds weight initialisation, shuffling and augmentation; torch runs deterministic kernels.
    store_revision : str
        The store's Alembic head revision (``core.store.engine.head_revision()``), recorded in the
        card's ``data_schema`` as the schema the card's data attributes are described against.
    config : TrainingConfig, optional
        The recipe; the bundled model's (``TrainingConfig()``) when omitted.
    eval_cohort_dir : Path, optional
        A second, independently generated labelled cohort evaluated in full.
    progress : callable, optional
        ``progress(done, total)`` after each epoch of either stage.

    Returns
    -------
    ModelCard
        The card written to ``out_dir / "card.json"``.

    Raises
    ------
    BadInputError
        No benchmark training or validation study, fewer than 1 epoch, or a negative or
        non-finite localization weight.
    """
    cfg = config or TrainingConfig()
    if cfg.epochs < 1 or cfg.crop_epochs < 0:
        raise BadInputError(f"need epochs >= 1 and crop_epochs >= 0, got {cfg.epochs} and {cfg.crop_epochs}")
    if not (cfg.localization_weight >= 0 and np.isfinite(cfg.localization_weight)):
        raise BadInputError(f"localization weight must be a finite number >= 0, got {cfg.localization_weight}")
    started = time.perf_counter()
    params = PreprocessParams()
    studies = read_labelled_studies(cohort_dir)
    chosen = [_select(studies, name) for name in ("train", "val")]  # both checked before any image is read
    train, val = (_load_split(c, params) for c in chosen)
    with _deterministic(seed):
        network, best_epoch, val_auc = _fit(train, val, cfg, seed, progress)
    val_scores = score_inputs(network, val.inputs)
    threshold = youden_threshold(val.labels, val_scores)
    metrics = held_out_metrics(network, studies, params, threshold=threshold, eval_cohort_dir=eval_cohort_dir)
    metrics["validation"] = {
        "auc": _rounded(val_auc),
        "n": len(val.studies),
        "n_positive": int(val.labels.sum()),
        "threshold_method": "Youden's J on the benchmark validation split",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{version}.pt"
    torch.save(network.state_dict(), weights)
    card = _card(
        version,
        weights,
        params,
        cfg,
        seed,
        threshold,
        metrics,
        studies,
        cohort_dir,
        train_info={"selected_epoch": best_epoch, "wall_seconds": round(time.perf_counter() - started, 1)},
        store_revision=store_revision,
    )
    write_card(card, out_dir / "card.json")
    return card


def _select(studies: Sequence[LabelledStudy], split: str) -> tuple[LabelledStudy, ...]:
    chosen = tuple(s for s in studies if s.is_benchmark and s.split == split)
    if not chosen:
        raise BadInputError(f"the cohort has no benchmark studies in the {split!r} split")
    return chosen


def _load_split(chosen: tuple[LabelledStudy, ...], params: PreprocessParams) -> _Split:
    centres = [
        (c[0] * params.size - 0.5, c[1] * params.size - 0.5) if (c := s.lesion_centre) and s.label else (-1.0, -1.0)
        for s in chosen
    ]
    return _Split(
        chosen,
        load_inputs(chosen, params),
        np.array([s.label for s in chosen], dtype=np.int64),
        torch.tensor(centres, dtype=torch.float32),
    )


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    # Deterministic kernels are a process-wide switch; restore the caller's setting afterwards.
    previous = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _augment(
    batch: torch.Tensor, centres: torch.Tensor, gen: torch.Generator, max_shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-right flips and translations (zero fill), drawn from ``gen``.

    Returns the augmented batch and the nodule ``centres`` (n, 2) moved with it ((-1, -1) stays).
    """
    n, size = batch.shape[0], batch.shape[-1]
    flips = torch.rand(n, generator=gen) < 0.5
    batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)
    has = centres[:, 0] >= 0
    moved = torch.stack([centres[:, 0], torch.where(flips & has, size - 1 - centres[:, 1], centres[:, 1])], dim=1)
    if max_shift <= 0:
        return batch, moved
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen)
    padded = F.pad(batch, (max_shift,) * 4)
    rows = [
        padded[i, :, max_shift + dy : max_shift + dy + size, max_shift + dx : max_shift + dx + size]
        for i, (dy, dx) in enumerate(shifts.tolist())
    ]
    # The window starting at padded row max_shift + dy shows original row dy on its first row.
    return torch.stack(rows), torch.where(has[:, None], moved - shifts.to(moved.dtype), moved)


def _crops(
    train: _Split, idx: torch.Tensor, gen: torch.Generator, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One crop per film in ``idx``: around its nodule, at the mirrored position, or at a borrowed one.

    Returns
    -------
    crops : Tensor of shape (len(idx), 1, size, size)
    labels : Tensor of shape (len(idx), 1), 1.0 where the crop holds the nodule
    where : Tensor of shape (len(idx), 2)
        The nodule centre (row, column) in crop pixels, (-1, -1) where there is none.
    """
    full = train.inputs.shape[-1]
    annotated = torch.nonzero(train.centres[:, 0] >= 0)[:, 0]
    out, labels, where = [], [], []
    for i in idx.tolist():
        centre, label = train.centres[i], 1.0
        if centre[0] < 0:  # a negative film: look where nodules sit in other films (inside the lungs)
            centre, label = train.centres[annotated[torch.randint(len(annotated), (1,), generator=gen)]][0], 0.0
        elif torch.rand(1, generator=gen).item() < 0.5:  # the same film's other lung: same patient, no nodule
            centre, label = torch.stack([centre[0], full - 1 - centre[1]]), 0.0
        offset = torch.randint(-size // 2 + 8, size // 2 - 8, (2,), generator=gen)
        top, left = (int(min(max(float(centre[k]) - size // 2 + int(offset[k]), 0), full - size)) for k in (0, 1))
        crop = train.inputs[i, :, top : top + size, left : left + size]
        at = (float(centre[0]) - top, float(centre[1]) - left) if label else (-1.0, -1.0)
        if torch.rand(1, generator=gen).item() < 0.5:
            crop, at = crop.flip(-1), (at[0], size - 1 - at[1]) if label else at
        out.append(crop)
        labels.append(label)
        where.append(at)
    return torch.stack(out), torch.tensor(labels)[:, None], torch.tensor(where)


def _run_stage(  # noqa: PLR0913 - one stage of the schedule, shared by both stages
    params: Sequence[nn.Parameter],
    loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    lr: float,
    cfg: TrainingConfig,
    gen: torch.Generator,
    after_epoch: Callable[[int], None],
) -> None:
    """AdamW on ``params`` with cosine decay from ``lr`` over ``epochs`` passes of ``n`` films.

    ``loss(idx)`` computes the batch loss of films ``idx`` (the network in training mode);
    ``after_epoch(epoch)`` runs after each pass.
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps = max(1, epochs * -(-n // cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.02)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss(order[start : start + cfg.batch_size]))
            opt.step()
            sched.step()
        after_epoch(epoch)


def _fit(
    train: _Split, val: _Split, cfg: TrainingConfig, seed: int, progress: Callable[[int, int], None] | None
) -> tuple[nn.Module, int, float]:
    """Both stages; return the network at its best whole-film validation AUC, that epoch and AUC."""
    dtype = torch.float64 if cfg.float64 else torch.float32
    network = build_network(DEFAULT_NETWORK).to(dtype)
    train, val = _as_dtype(train, dtype), _as_dtype(val, dtype)
    gen = torch.Generator().manual_seed(seed)
    crop_epochs = cfg.crop_epochs if bool((train.centres[:, 0] >= 0).any()) else 0
    total = crop_epochs + cfg.epochs
    labels = torch.from_numpy(train.labels).to(dtype)[:, None]
    best: list[tuple[float, int, dict[str, torch.Tensor]]] = []

    def report(done: int) -> None:
        if progress is not None:
            progress(done, total)

    def consider(epoch: int) -> None:
        auc = _nan_to(auc_or_nan(val.labels, score_inputs(network, val.inputs)), -1.0)
        if not best or auc > best[0][0]:
            best[:] = [(auc, crop_epochs + epoch, copy.deepcopy(network.state_dict()))]

    def select(epoch: int) -> None:
        consider(epoch)
        report(crop_epochs + epoch)

    n = len(train.studies)
    with localization_term(network, TARGET_LAYER, cfg.localization_weight, dtype) as loc:
        params = list(network.parameters()) + loc.params

        def crop_loss(idx: torch.Tensor) -> torch.Tensor:
            network.train()
            x, y, where = _crops(train, idx, gen, cfg.crop_size)
            return loc.loss(network(x), y.to(dtype), where, cfg.crop_size)

        def film_loss(idx: torch.Tensor) -> torch.Tensor:
            network.train()
            x, where = _augment(train.inputs[idx], train.centres[idx], gen, cfg.max_shift_px)
            return loc.loss(network(x), labels[idx], where, int(x.shape[-1]))

        _run_stage(params, crop_loss, n, crop_epochs, cfg.learning_rate, cfg, gen, report)
        if crop_epochs:
            consider(0)  # the crop-trained network is a candidate too (not an epoch: no progress report)
        # Whole films fine-tune a network that already finds nodules: a gentler rate keeps that.
        lr = cfg.learning_rate * (cfg.finetune_lr_factor if crop_epochs else 1.0)
        _run_stage(params, film_loss, n, cfg.epochs, lr, cfg, gen, select)
    network.load_state_dict(best[0][2])
    network.float().eval()  # served in float32: rounding the agreed float64 weights is the same everywhere
    return network, best[0][1], best[0][0]


def _as_dtype(split: _Split, dtype: torch.dtype) -> _Split:
    return dataclasses.replace(split, inputs=split.inputs.to(dtype))


def _nan_to(x: float, fallback: float) -> float:
    return fallback if not np.isfinite(x) else x


def _rounded(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) and x >= 0 else None


def _training_data(studies: Sequence[LabelledStudy], cohort_dir: Path) -> JSONObject:
    bench = [s for s in studies if s.is_benchmark]
    splits = ("train", "val", "test")
    counts: JSONObject = {split: sum(1 for s in bench if s.split == split) for split in splits}
    positives: JSONObject = {split: sum(s.label for s in bench if s.split == split) for split in splits}
    sites: list[JSONValue] = []
    sites.extend(sorted({s.site for s in bench}))
    cohort_sites: list[JSONValue] = []
    cohort_sites.extend(sorted({s.site for s in studies}))
    return {
        "manifest_sha256": sha256_file(cohort_dir / "manifest.csv"),
        "manifest": "manifest.csv",
        "sites": sites,
        "cohort_sites": cohort_sites,
        "splits_used": {"train": "fit", "val": "epoch selection and operating threshold"},
        "studies": counts,
        "positives": positives,
        "synthetic": True,
        "description": "SYNTHETIC chest radiograph phantoms (core.sampledata); no patient data.",
    }


def _card(  # noqa: PLR0913 - every card field has one source
    version: str,
    weights: Path,
    params: PreprocessParams,
    cfg: TrainingConfig,
    seed: int,
    threshold: float,
    metrics: JSONObject,
    studies: Sequence[LabelledStudy],
    cohort_dir: Path,
    *,
    train_info: JSONObject,
    store_revision: str,
) -> ModelCard:
    hyper = cfg.to_json()
    hyper.update(train_info)
    hyper["seed"] = seed
    attributes: list[JSONValue] = list(_DICOM_ATTRIBUTES)
    return ModelCard(
        version=version,
        network=copy.deepcopy(DEFAULT_NETWORK),
        weights={"path": weights.name, "sha256": sha256_file(weights)},
        target_layer=TARGET_LAYER,
        input={
            "shape": [1, params.size, params.size],
            "channels": 1,
            "spacing": f"resampled to {params.size} x {params.size} (area), aspect ratio not kept",
        },
        preprocessing=params.to_dict(),
        data_schema={"dicom_attributes": attributes, "store_revision": store_revision},
        labels=["nodule"],
        operating_threshold=round(threshold, 6),
        hyperparameters=hyper,
        training_data=_training_data(studies, cohort_dir),
        code_version=code_version(),
        environment=environment(_PACKAGES),
        metrics=metrics,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        parent_version=None,
        intended_use=IntendedUse(
            modalities=("DX", "CR"),
            body_parts=("CHEST",),
            views=("PA", "AP"),
            image_kinds=("ORIGINAL",),
            description="DEMONSTRATION MODEL trained on synthetic phantoms only: scores a frontal chest radiograph "
            "for a pulmonary nodule. Not for clinical use.",
        ),
    )


# Public names for core.models.finetune, which continues a registered model's training the same way
# (whole films, the same augmentation, optimizer and schedule): one implementation keeps the recipes in step.
PROVENANCE_PACKAGES: Final = _PACKAGES
FilmSplit = _Split
deterministic = _deterministic
augment = _augment
load_split = _load_split
run_stage = _run_stage
