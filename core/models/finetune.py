"""Fine-tune a registered parent model into a challenger: the training half of Vigil's retraining workflow.

Under change control (an FDA predetermined change control plan) a challenger is the parent's network
trained further on labelled studies gathered since (benchmark, EMR outcomes, adjudications, reader
feedback), then judged by the validation gate on a locked hold-out. This module is the first half
only: it refuses any study of that hold-out before reading an image, and computes no held-out figure.

The recipe is :mod:`core.models.training`'s whole-film stage, started from the parent's weights
instead of a random initialization: the same network, preprocessing (the parent card's), left-right
flips and translations, AdamW with per-step cosine decay, deterministic kernels seeded from ``seed``,
float64 arithmetic by default, and the epoch with the best validation AUC kept. The labels of record
carry no lesion position, so the lesion-crop stage and the training-only localization term of the
first training cannot run here; an L2-SP penalty toward the parent's weights keeps what they taught
(without it, fine-tuning on deployment films forgets part of the benchmark). The operating threshold
is chosen again on the validation studies, by default where the challenger gains most over the
parent's own sensitivity and specificity, the two rates the change-control gate compares.

The card names every study used, with its file hash, label and the label's source, in a manifest
whose SHA-256 an auditor can recompute from the card alone.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.audit.chain import canonical_json
from core.errors import BadInputError, HoldoutLeakError
from core.models.card import ModelCard, write_card
from core.models.evaluate import (
    LabelledStudy,
    auc_or_nan,
    score_inputs,
    sensitivity_keeping_threshold,
    youden_threshold,
)
from core.models.loading import LoadedModel, load_model, sha256_file
from core.models.logit_scaling import fit_logit_scaling, fold_into_last_layer, logits_of
from core.models.networks import build_network
from core.models.provenance import code_version, environment
from core.models.training import (
    PROVENANCE_PACKAGES,
    FilmSplit,
    TrainingConfig,
    augment,
    deterministic,
    load_split,
    run_stage,
)
from core.types import FloatArray, IntArray, JSONObject, JSONValue

__all__ = [
    "STUDY_COLUMNS",
    "FinetuneConfig",
    "challenger_card",
    "dominating_threshold",
    "TrainingExample",
    "finetune_model",
    "training_manifest",
]

#: The first training's recipe: fine-tuning shares its batch size, weight decay and augmentation.
_RECIPE: Final = TrainingConfig()
#: Order of the fields of each row of the card's ``training_data["studies"]``.
STUDY_COLUMNS: Final = ("study_uid", "sha256", "site", "label", "source", "split")

_Row = tuple[str, str, str, int, str, str]


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """Fine-tuning hyperparameters, recorded verbatim in the challenger's card.

    Attributes
    ----------
    epochs : int
        Whole-film passes over the training studies.
    learning_rate : float
        Peak AdamW learning rate, decayed per step (cosine) to 2 % of it, as in training. Lower
        than the first training's: the parent already finds nodules, and a gentle rate keeps that.
    weight_decay : float
        AdamW weight decay (the first training's).
    batch_size : int
        Films per optimizer step (the first training's).
    max_shift_px : int
        Random translation, in pixels of the preprocessed input, together with random left-right
        flips the only augmentation (the first training's).
    float64 : bool
        Train in double precision and store float32 weights, so that a seed gives the same network
        on any machine (see :class:`core.models.training.TrainingConfig`); ``False`` is faster
        but reproducible only on the same machine.
    threshold_rule : str
        How the operating threshold is chosen on the validation studies, against the parent's
        sensitivity and specificity at its own threshold on the same studies.
        ``"dominate_parent"`` (the default): the threshold that maximises the smaller of the two
        gains (:func:`dominating_threshold`), since the gate tests both rates;
        ``"keep_sensitivity"``: the highest threshold that reaches the parent's sensitivity plus
        ``sensitivity_headroom`` (a few hard positives can pull it so low that specificity falls
        below the parent's); ``"youden"``: Youden's J, as the first training.
    sensitivity_headroom : float
        With ``"keep_sensitivity"``: aim this much above the parent's sensitivity on the
        validation studies, but at most halfway from it to 1. The gate judges on other studies,
        the hold-out, where an exact match would come out lower about half the time.
    logit_scaling : bool
        Fit Platt scaling (``sigmoid(a + b * logit)``) on the validation studies after the epoch is
        chosen and fold it into the network's last layer (:mod:`core.models.logit_scaling`), before
        the threshold is chosen: the gate limits the challenger's calibration error, and
        fine-tuning on several sites' labels leaves the probabilities off. The ranking is
        unchanged; ``a`` and ``b`` are on the card.
    l2sp_weight : float
        Weight ``alpha`` of the L2-SP penalty ``alpha / 2 * sum((w - w_parent) ** 2)`` over every
        network weight, added to each batch's mean loss (Li, Grandvalet & Davoine, "Explicit
        inductive bias for transfer learning with convolutional networks", ICML 2018). It pulls
        the challenger toward the parent rather than toward zero, so what the parent learnt from
        its lesion-crop stage (which labels of record cannot repeat: they carry no lesion
        position) is not forgotten on the benchmark; 0 turns it off.
    threshold_sites : tuple of str
        Choose the operating threshold on these sites' validation studies only (empty: all of
        them). For a change meant for some sites (a gate scoped to them, a promotion there), the
        rates the gate compares are those sites' rates, and the parent's can differ far from its
        rates elsewhere. Training and epoch selection still use every site.
    """

    epochs: int = 4
    learning_rate: float = 3e-4
    weight_decay: float = _RECIPE.weight_decay
    batch_size: int = _RECIPE.batch_size
    max_shift_px: int = _RECIPE.max_shift_px
    float64: bool = True
    threshold_rule: str = "dominate_parent"
    sensitivity_headroom: float = 0.03
    l2sp_weight: float = 1.0
    logit_scaling: bool = True
    threshold_sites: tuple[str, ...] = ()

    def to_json(self) -> JSONObject:
        """The hyperparameters as card JSON."""
        return {
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "max_shift_px": self.max_shift_px,
            "optimizer": "AdamW",
            "precision": "float64 training, float32 weights" if self.float64 else "float32",
            "schedule": "cosine (per step) to 2 % of the learning rate",
            "loss": "binary cross-entropy on the single logit",
            "initialization": "the parent model's weights",
            "augmentation": f"left-right flip p=0.5, translation up to {self.max_shift_px} px",
            "selection": "epoch with the best validation AUC",
            "threshold_rule": self.threshold_rule,
            "sensitivity_headroom": self.sensitivity_headroom,
            "l2sp_weight": self.l2sp_weight,
            "logit_scaling": self.logit_scaling,
            **({"threshold_sites": [*self.threshold_sites]} if self.threshold_sites else {}),
            "regularization": "L2-SP: l2sp_weight / 2 * squared distance of the weights to the parent's, "
            "added to the loss",
        }


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """One labelled study for fine-tuning.

    Attributes
    ----------
    study_uid : str
        StudyInstanceUID; checked against the locked hold-out.
    path : Path
        The stored DICOM file.
    sha256 : str
        SHA-256 of the file's bytes; the file is refused when it reads otherwise.
    site : str
    label : int
        0/1, the label of record.
    source : str
        Where the label came from, e.g. ``"benchmark"``, ``"emr"``, ``"adjudication"``, ``"reader"``.
    """

    study_uid: str
    path: Path
    sha256: str
    site: str
    label: int
    source: str


def finetune_model(  # noqa: PLR0913 - keyword-only; one argument per input of the change
    *,
    parent_card: ModelCard,
    parent_dir: Path,
    train: Sequence[TrainingExample],
    val: Sequence[TrainingExample],
    holdout_uids: frozenset[str],
    out_dir: Path,
    version: str,
    seed: int,
    store_revision: str,
    config: FinetuneConfig | None = None,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ModelCard:
    """Fine-tune the parent on ``train``, select on ``val``, write the challenger's weights and card.

    Parameters
    ----------
    parent_card : ModelCard
        The registered model to start from.
    parent_dir : Path
        Directory holding the parent's weights; their SHA-256 is checked against ``parent_card``.
    train, val : sequence of TrainingExample
        Fitting studies, and the studies that choose the epoch and the operating threshold
        (``val`` must hold both classes).
    holdout_uids : frozenset of str
        StudyInstanceUIDs of the locked hold-out: none may be in ``train`` or ``val``.
    out_dir : Path
        Receives ``<version>.pt`` (a float32 ``state_dict``) and ``card.json``; created if needed.
    version : str
        The challenger's version name.
    seed : int
        Seeds shuffling and augmentation; torch runs deterministic kernels.
    store_revision : str
        The store's Alembic head revision, recorded in the card's ``data_schema``.
    config : FinetuneConfig, optional
        ``FinetuneConfig()`` when omitted.
    device : torch.device, optional
        Where to train: CUDA when available, else CPU. A float64 run on CPU gives the same
        weights on any machine; one on CUDA is reproducible only as far as its kernels are.
    progress : callable, optional
        ``progress(epoch, epochs)`` after each epoch.

    Returns
    -------
    ModelCard
        The card written to ``out_dir / "card.json"``; ``parent_version`` is the parent's.

    Raises
    ------
    HoldoutLeakError
        A training or validation study is in ``holdout_uids`` (checked before anything is read).
    BadInputError
        No training study, a validation set without both classes, a label other than 0/1, a study
        UID given twice, or a hyperparameter out of range (all checked before anything is read);
        or every epoch gave non-finite validation scores.
    WeightsIntegrityError
        The parent's weights are missing or do not match its card.
    DicomRejectedError
        An image is unreadable or its bytes do not match its ``sha256``.
    """
    cfg = config or FinetuneConfig()
    _check_config(cfg)
    _check_examples(train, val, holdout_uids)
    _check_threshold_sites(cfg, val)
    started = time.perf_counter()
    dev = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parent = load_model(parent_card, parent_dir, device=torch.device("cpu"))
    fit_split, val_split = (
        load_split(_studies(examples, name), parent.preprocessing)
        for examples, name in ((train, "train"), (val, "val"))
    )
    with deterministic(seed):
        if dev.type == "cuda":
            # CUDA has no deterministic backward for the network's adaptive average pooling, and
            # strict mode would refuse the run; warn instead (the docstring says what that costs).
            torch.use_deterministic_algorithms(True, warn_only=True)
        network, epoch = _fit(parent_card, parent.network.state_dict(), fit_split, val_split, cfg, seed, dev, progress)
    # Threshold and reported AUC come from the stored (float32) network, as it will be served.
    scores = score_inputs(network, val_split.inputs)
    scaling: JSONObject | None = None
    if cfg.logit_scaling:
        scaling = _scale_logit(network, val_split.labels, scores)
        scores = score_inputs(network, val_split.inputs)
    chosen_on = _threshold_studies(cfg, val_split)
    threshold, threshold_method = _threshold(
        cfg, parent, val_split.labels[chosen_on], val_split.inputs[torch.from_numpy(chosen_on)], scores[chosen_on]
    )
    if cfg.threshold_sites:
        threshold_method += f" at {', '.join(cfg.threshold_sites)} ({int(chosen_on.sum())} studies)"
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{version}.pt"
    torch.save(network.state_dict(), weights)
    hyper: JSONObject = {"recipe": "finetune", **cfg.to_json(), "seed": seed, "selected_epoch": epoch}
    hyper["parent_weights_sha256"] = parent_card.weights["sha256"]
    hyper["logit_scaling_fit"] = scaling
    hyper["wall_seconds"] = round(time.perf_counter() - started, 1)
    card = challenger_card(
        parent_card,
        version=version,
        weights=weights,
        threshold=threshold,
        hyperparameters=hyper,
        metrics=_validation_metrics(val_split.labels, scores, threshold_method),
        training_data=training_manifest(train, val, holdout_excluded=len(holdout_uids)),
        store_revision=store_revision,
    )
    write_card(card, out_dir / "card.json")
    return card


def training_manifest(
    train: Sequence[TrainingExample], val: Sequence[TrainingExample], *, holdout_excluded: int
) -> JSONObject:
    """The card's ``training_data``: every study used, and a SHA-256 over them.

    Parameters
    ----------
    train, val : sequence of TrainingExample
    holdout_excluded : int
        Size of the locked hold-out kept out of both.

    Returns
    -------
    dict
        ``studies``: one row per study, fields in :data:`STUDY_COLUMNS` order, sorted;
        ``manifest_sha256``: hex SHA-256 of the canonical JSON of ``studies``
        (``core.audit.chain.canonical_json``), so the card alone proves which data trained the
        model; ``sites``, ``n_train``, ``n_val``, ``label_sources`` (studies per label source),
        ``holdout_excluded``, ``splits_used``. Rows are lists rather than objects: a few thousand
        studies keep the card under 1 MB.
    """
    rows = sorted([*(_row(e, "train") for e in train), *(_row(e, "val") for e in val)])
    studies: list[JSONValue] = [list(row) for row in rows]
    sites: list[JSONValue] = []
    sites.extend(sorted({row[2] for row in rows}))
    sources: JSONObject = dict(sorted(Counter(row[4] for row in rows).items()))
    return {
        "manifest_sha256": hashlib.sha256(canonical_json(studies)).hexdigest(),
        "study_columns": list(STUDY_COLUMNS),
        "studies": studies,
        "sites": sites,
        "n_train": len(train),
        "n_val": len(val),
        "label_sources": sources,
        "holdout_excluded": holdout_excluded,
        "splits_used": {"train": "fit", "val": "epoch selection and operating threshold"},
    }


def _row(e: TrainingExample, split: str) -> _Row:
    return (e.study_uid, e.sha256, e.site, int(e.label), e.source, split)


def _check_config(cfg: FinetuneConfig) -> None:
    if cfg.epochs < 1:
        raise BadInputError(f"fine-tuning needs epochs >= 1, got {cfg.epochs}")
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        raise BadInputError(f"learning rate must be a finite number > 0, got {cfg.learning_rate}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise BadInputError(f"weight decay must be a finite number >= 0, got {cfg.weight_decay}")
    if not (math.isfinite(cfg.sensitivity_headroom) and 0.0 <= cfg.sensitivity_headroom < 1.0):
        raise BadInputError(f"sensitivity headroom must be in [0, 1), got {cfg.sensitivity_headroom}")
    if not (math.isfinite(cfg.l2sp_weight) and cfg.l2sp_weight >= 0):
        raise BadInputError(f"L2-SP weight must be a finite number >= 0, got {cfg.l2sp_weight}")
    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise BadInputError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}, got {cfg.threshold_rule!r}")
    if cfg.batch_size < 1 or cfg.max_shift_px < 0:
        raise BadInputError(f"need batch_size >= 1 and max_shift_px >= 0, got {cfg.batch_size} and {cfg.max_shift_px}")


def _check_threshold_sites(cfg: FinetuneConfig, val: Sequence[TrainingExample]) -> None:
    """Refuse threshold sites without validation studies of both classes; reads no file."""
    if not cfg.threshold_sites:
        return
    if bad := [name for name in cfg.threshold_sites if not name.strip()]:
        raise BadInputError(f"threshold sites must be site names, got {bad!r}")
    labels = {int(e.label) for e in val if e.site in cfg.threshold_sites}
    if labels != {0, 1}:
        held = sorted({e.site for e in val})
        raise BadInputError(
            f"the threshold sites {', '.join(cfg.threshold_sites)} need validation studies of both classes "
            f"(found labels {sorted(labels)}; validation sites: {', '.join(held)})"
        )


def _threshold_studies(cfg: FinetuneConfig, val: FilmSplit) -> np.ndarray:
    """Boolean mask (n_val,) of the validation studies the threshold is chosen on."""
    return np.array([not cfg.threshold_sites or s.site in cfg.threshold_sites for s in val.studies], dtype=bool)


def _check_examples(
    train: Sequence[TrainingExample], val: Sequence[TrainingExample], holdout_uids: frozenset[str]
) -> None:
    """Refuse unusable fine-tuning data, the hold-out first; reads no file."""
    everything = (*train, *val)
    if leaked := [e.study_uid for e in everything if e.study_uid in holdout_uids]:
        raise HoldoutLeakError(leaked[0], len(leaked))
    if not train:
        raise BadInputError("fine-tuning needs at least one training study, got none")
    if bad := next((e for e in everything if e.label not in (0, 1)), None):
        raise BadInputError(f"label must be 0 or 1, got {bad.label!r} for study {bad.study_uid!r}")
    if twice := [uid for uid, n in Counter(e.study_uid for e in everything).items() if n > 1]:
        raise BadInputError(
            f"study {twice[0]!r} is given more than once across training and validation ({len(twice)} such studies)"
        )
    positives = sum(e.label for e in val)
    if not 0 < positives < len(val):
        raise BadInputError(
            "the validation set must hold both classes (it chooses the epoch and the threshold), "
            f"got {len(val) - positives} negatives and {positives} positives"
        )


def _studies(examples: Sequence[TrainingExample], split: str) -> tuple[LabelledStudy, ...]:
    # LabelledStudy is what evaluate.load_inputs reads, checking each file against its SHA-256.
    return tuple(LabelledStudy(e.path, e.sha256, e.site, int(e.label), split, False) for e in examples)


class _OnDevice(nn.Module):
    """``network`` on ``device`` behind a CPU interface, so that ``score_inputs`` serves CPU and CUDA alike."""

    def __init__(self, network: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.network = network
        self.device = device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of CPU inputs ``x`` (n, 1, size, size), returned on the CPU as (n, 1)."""
        out: torch.Tensor = self.network(x.to(self.device))
        return out.cpu()


def _fit(  # noqa: PLR0913 - one argument per input of the fit
    parent_card: ModelCard,
    initial: dict[str, torch.Tensor],
    train: FilmSplit,
    val: FilmSplit,
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int], None] | None,
) -> tuple[nn.Module, int]:
    """Train from ``initial``; return the network at its best validation AUC (float32, CPU, eval) and that epoch."""
    dtype = torch.float64 if cfg.float64 else torch.float32
    network = build_network(dict(parent_card.network))
    network.load_state_dict(initial)
    network.to(device=device, dtype=dtype)
    # Films stay on the CPU: augmentation draws from a CPU generator; each batch then moves.
    train, val = _as_dtype(train, dtype), _as_dtype(val, dtype)
    labels = torch.from_numpy(train.labels).to(dtype)[:, None]
    gen = torch.Generator().manual_seed(seed)
    scorer = _OnDevice(network, device)
    best: list[tuple[float, int, dict[str, torch.Tensor]]] = []
    anchor = _l2sp_anchor(network, cfg.l2sp_weight)

    def film_loss(idx: torch.Tensor) -> torch.Tensor:
        network.train()
        x, _ = augment(train.inputs[idx], train.centres[idx], gen, cfg.max_shift_px)
        return F.binary_cross_entropy_with_logits(network(x.to(device)), labels[idx].to(device)) + anchor()

    def select(epoch: int) -> None:
        auc = _selection_auc(val.labels, score_inputs(scorer, val.inputs))
        if not best or auc > best[0][0]:
            best[:] = [(auc, epoch, copy.deepcopy(network.state_dict()))]
        if progress is not None:
            progress(epoch, cfg.epochs)

    n = len(train.studies)
    run_stage(list(network.parameters()), film_loss, n, cfg.epochs, cfg.learning_rate, _stage(cfg), gen, select)
    if best[0][0] < 0:
        raise BadInputError(
            f"fine-tuning diverged: validation scores were not finite after any of {cfg.epochs} epochs "
            f"at learning rate {cfg.learning_rate}; lower it"
        )
    network.load_state_dict(best[0][2])
    network.to(device="cpu", dtype=torch.float32).eval()  # served in float32, as training stores it
    return network, best[0][1]


def _scale_logit(network: nn.Module, labels: IntArray, scores: FloatArray) -> JSONObject:
    """Fit Platt scaling on the validation ``scores`` and fold it into ``network``; what was done, for the card.

    A validation set the score separates perfectly (a small one) has no finite fit: the network is
    then left as it is, and the card says why, rather than the retrain failing.
    """
    try:
        intercept, slope = fit_logit_scaling(labels, logits_of(scores))
    except BadInputError as exc:
        return {"applied": False, "reason": str(exc)}
    fold_into_last_layer(network, intercept, slope)
    return {
        "applied": True,
        "intercept": round(intercept, 6),
        "slope": round(slope, 6),
        "fitted_on": "validation studies",
    }


def _l2sp_anchor(network: nn.Module, weight: float) -> Callable[[], torch.Tensor]:
    """The L2-SP penalty of ``network``'s current weights against a copy of the ones it has now (the parent's).

    Returns a function giving ``weight / 2 * sum((w - w_parent) ** 2)`` as a scalar tensor; 0
    (and nothing copied) when ``weight`` is 0.
    """
    params = [p for p in network.parameters() if p.requires_grad]
    start = next(iter(params))
    if weight == 0:
        zero = torch.zeros((), dtype=start.dtype, device=start.device)
        return lambda: zero
    parent = [p.detach().clone() for p in params]

    def penalty() -> torch.Tensor:
        distance = torch.stack([(p - p0).square().sum() for p, p0 in zip(params, parent, strict=True)]).sum()
        return 0.5 * weight * distance

    return penalty


def _stage(cfg: FinetuneConfig) -> TrainingConfig:
    # run_stage takes its batch size and weight decay from a TrainingConfig: fine-tuning is
    # training's whole-film stage alone (no crop stage, no localization term).
    return TrainingConfig(
        epochs=cfg.epochs,
        crop_epochs=0,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        max_shift_px=cfg.max_shift_px,
        float64=cfg.float64,
        localization_weight=0.0,
    )


def _as_dtype(split: FilmSplit, dtype: torch.dtype) -> FilmSplit:
    return dataclasses.replace(split, inputs=split.inputs.to(dtype))


def _selection_auc(labels: IntArray, scores: FloatArray) -> float:
    # A diverged epoch scores NaN, which roc_auc_score refuses; rank it below every real AUC.
    return auc_or_nan(labels, scores) if bool(np.isfinite(scores).all()) else -1.0


THRESHOLD_RULES: Final = ("keep_sensitivity", "dominate_parent", "youden")


def _threshold(
    cfg: FinetuneConfig, parent: LoadedModel, labels: IntArray, inputs: torch.Tensor, scores: FloatArray
) -> tuple[float, str]:
    """The challenger's operating threshold on the validation studies, and how it was chosen."""
    if cfg.threshold_rule == "youden" or int(labels.sum()) == 0:
        return youden_threshold(labels, scores), "Youden's J on the fine-tuning validation studies"
    parent_scores = score_inputs(parent.network, inputs.to(torch.float32))
    parent_threshold = parent.card.operating_threshold
    positives = labels == 1
    parent_sensitivity = float(np.mean(parent_scores[positives] >= parent_threshold))
    parent_specificity = float(np.mean(parent_scores[~positives] < parent_threshold))
    parent_rates = (
        f"the parent's sensitivity {parent_sensitivity:.3f} and specificity {parent_specificity:.3f} at its "
        f"threshold {parent_threshold:g} on the same studies"
    )
    if cfg.threshold_rule == "dominate_parent":
        threshold = dominating_threshold(labels, scores, parent_sensitivity, parent_specificity)
        method = (
            "the threshold maximising the smaller of the challenger's sensitivity and specificity gains over "
            f"{parent_rates}, on the fine-tuning validation studies"
        )
        return threshold, method
    # Never more than halfway from the parent's sensitivity to 1: a target of 1 would put the threshold
    # under the weakest validation positive and spend every gain on false positives.
    target = min(parent_sensitivity + cfg.sensitivity_headroom, (1.0 + parent_sensitivity) / 2.0)
    threshold = sensitivity_keeping_threshold(labels, scores, target)
    method = (
        f"the highest threshold reaching sensitivity {target:.3f} on the fine-tuning validation studies: "
        f"{parent_rates}, sensitivity plus {cfg.sensitivity_headroom:g} headroom"
    )
    return threshold, method


def dominating_threshold(y_true: IntArray, y_score: FloatArray, sensitivity: float, specificity: float) -> float:
    """The threshold whose worse gain over a reference operating point is largest.

    The change-control gate tests sensitivity and specificity against the champion's, each with
    its own margin; a threshold that holds one rate by design can lose the other (a few hard
    positives pull a sensitivity-keeping threshold down and every gain goes to false positives).
    This one maximises ``min(sens(t) - sensitivity, spec(t) - specificity)``: when the challenger's
    ROC curve passes above the reference point, both rates gain, by as much as the curve allows
    for the weaker of the two. Ties go to the larger ``sens + spec``, then the higher threshold.
    A study is called positive when its score is ``>=`` the threshold.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        0/1 labels; both classes present.
    y_score : ndarray of shape (n,)
    sensitivity, specificity : float
        The reference operating point (the parent's, at its own threshold, on the same studies).

    Returns
    -------
    float
        One of the scores in ``y_score``.

    Raises
    ------
    ValueError
        A class is missing.

    Examples
    --------
    Three positives and three negatives; the reference finds half the positives and 90 % of the negatives.
    At 0.6 the curve gains on both (2/3 and 1); at 0.3 it would find every positive and lose specificity.

    >>> dominating_threshold(np.array([1, 1, 1, 0, 0, 0]), np.array([0.9, 0.6, 0.3, 0.5, 0.2, 0.1]), 0.5, 0.9)
    0.6
    """
    y = np.asarray(y_true) == 1
    s = np.asarray(y_score, dtype=np.float64)
    if y.all() or not y.any():
        raise ValueError("both classes are needed to choose a threshold on sensitivity and specificity")
    candidates = np.unique(s)  # ascending; each is a distinct operating point
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    sens = 1.0 - np.searchsorted(pos, candidates, side="left") / pos.size  # share of positives >= t
    spec = np.searchsorted(neg, candidates, side="left") / neg.size  # share of negatives < t
    worse = np.minimum(sens - sensitivity, spec - specificity)
    # lexsort sorts by its last key first: the worse gain, then sens + spec, then the threshold.
    best = np.lexsort((candidates, sens + spec, worse))[-1]
    return float(candidates[best])


def _validation_metrics(labels: IntArray, scores: FloatArray, threshold_method: str) -> JSONObject:
    return {
        "validation": {
            "auc": round(auc_or_nan(labels, scores), 4),
            "n": int(labels.size),
            "n_positive": int(labels.sum()),
            "threshold_method": threshold_method,
        },
        "note": "fine-tuning reports validation figures only; held-out figures are computed by the "
        "change-control validation gate on the locked hold-out, which fine-tuning never reads",
    }


def challenger_card(  # noqa: PLR0913 - every card field has one source
    parent: ModelCard,
    *,
    version: str,
    weights: Path,
    threshold: float,
    hyperparameters: JSONObject,
    metrics: JSONObject,
    training_data: JSONObject,
    store_revision: str,
    packages: tuple[str, ...] = PROVENANCE_PACKAGES,
    created_at: str | None = None,
) -> ModelCard:
    """The challenger's card: the parent's network, input and use; its own weights, data and figures.

    Fine-tuning and federated training both make one. ``packages`` are the libraries whose
    versions the card records; ``created_at`` defaults to now (UTC, seconds).
    """
    schema = copy.deepcopy(parent.data_schema)
    schema["store_revision"] = store_revision
    return ModelCard(
        version=version,
        network=copy.deepcopy(parent.network),
        weights={"path": weights.name, "sha256": sha256_file(weights)},
        target_layer=parent.target_layer,
        input=copy.deepcopy(parent.input),
        preprocessing=copy.deepcopy(parent.preprocessing),
        data_schema=schema,
        labels=list(parent.labels),
        operating_threshold=round(threshold, 6),
        hyperparameters=hyperparameters,
        training_data=training_data,
        code_version=code_version(),
        environment=environment(packages),
        metrics=metrics,
        created_at=created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        parent_version=parent.version,
        intended_use=parent.intended_use,
    )
