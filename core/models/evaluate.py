"""Held-out evaluation of a model on a labelled cohort, site by site.

Images are read with :func:`core.imaging.dicom.read_dicom` and prepared with
:func:`core.models.preprocess.preprocess`: the same path production ingest and inference take, so a
figure computed here is a figure about the deployed pipeline, not about a training shortcut.

A labelled cohort is a folder with ``manifest.csv`` holding at least the columns ``path``
(relative to the folder), ``site``, ``label`` (0/1), ``split`` and ``is_benchmark`` (0/1); the
synthetic cohort of :mod:`core.sampledata` writes exactly that, and so can a hospital's own
retrospective set.

scikit-learn is imported where an AUC or a ROC curve is computed, not with the module: this module
is imported by every federated site's ClientApp, which Flower starts once per message, and most of
those messages (training) never compute either; the import is a third of that process's start.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from core.errors import BadInputError, PathNotFoundError
from core.imaging.dicom import read_dicom
from core.models.loading import sha256_file
from core.models.preprocess import PreprocessParams, preprocess
from core.types import FloatArray, IntArray, JSONObject, JSONValue

__all__ = [
    "REQUIRED_COLUMNS",
    "LabelledStudy",
    "SiteResult",
    "auc_or_nan",
    "evaluate_by_site",
    "held_out_metrics",
    "load_inputs",
    "read_labelled_studies",
    "score_inputs",
    "score_studies",
    "sensitivity_keeping_threshold",
    "youden_threshold",
]

REQUIRED_COLUMNS: Final = ("path", "file_sha256", "site", "label", "split", "is_benchmark")


@dataclass(frozen=True, slots=True)
class LabelledStudy:
    """One image with its reference label.

    Attributes
    ----------
    path : Path
        Absolute path of the DICOM file.
    sha256 : str
        SHA-256 of the file's bytes as the manifest records it; checked whenever the file is read.
    split : str
        ``train``/``val``/``test`` at the benchmark site, ``deployment`` elsewhere.
    lesion_centre : tuple of float or None
        Centre of the annotated lesion as fractions (row / rows, column / columns) of the image,
        when the manifest has ``nodule_row``, ``nodule_col``, ``rows`` and ``columns``; None for
        negatives and for cohorts without lesion annotations.
    """

    path: Path
    sha256: str
    site: str
    label: int
    split: str
    is_benchmark: bool
    lesion_centre: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class SiteResult:
    """Discrimination and operating-point figures of one site.

    Attributes
    ----------
    auc : float
        ROC AUC; NaN (with a warning) when the site has a single class.
    sensitivity, specificity : float
        At the model's operating threshold; NaN when there is no positive (negative) study.
    """

    site: str
    n: int
    n_positive: int
    auc: float
    sensitivity: float
    specificity: float

    def to_json(self) -> JSONObject:
        """JSON-ready record; NaN becomes ``None`` (JSON has no NaN)."""
        return {
            "n": self.n,
            "n_positive": self.n_positive,
            "auc": _finite_or_none(self.auc),
            "sensitivity": _finite_or_none(self.sensitivity),
            "specificity": _finite_or_none(self.specificity),
        }


def _finite_or_none(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def read_labelled_studies(cohort_dir: Path) -> tuple[LabelledStudy, ...]:
    """Read ``cohort_dir/manifest.csv``.

    Raises
    ------
    PathNotFoundError
        There is no manifest.
    BadInputError
        A required column is missing or a label is not 0/1.
    """
    manifest = cohort_dir / "manifest.csv"
    if not manifest.is_file():
        raise PathNotFoundError(manifest)
    with manifest.open(encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    if records and (missing := [c for c in REQUIRED_COLUMNS if c not in records[0]]):
        raise BadInputError(f"{manifest} lacks columns: {', '.join(missing)}")
    studies = []
    for rec in records:
        if rec["label"] not in {"0", "1"}:
            raise BadInputError(f"{manifest}: label must be 0 or 1, got {rec['label']!r} for {rec['path']}")
        studies.append(
            LabelledStudy(
                cohort_dir / rec["path"],
                rec["file_sha256"],
                rec["site"],
                int(rec["label"]),
                rec["split"],
                rec["is_benchmark"] == "1",
                _lesion_centre(rec),
            )
        )
    return tuple(studies)


def _lesion_centre(rec: dict[str, str]) -> tuple[float, float] | None:
    try:
        row, col = float(rec["nodule_row"]), float(rec["nodule_col"])
        return (row + 0.5) / int(rec["rows"]), (col + 0.5) / int(rec["columns"])
    except (KeyError, ValueError):
        return None


def load_inputs(
    studies: Sequence[LabelledStudy], params: PreprocessParams, *, progress: Callable[[int, int], None] | None = None
) -> torch.Tensor:
    """Read and preprocess ``studies``, each checked against its manifest SHA-256.

    Returns
    -------
    Tensor of shape (n, 1, size, size), float32

    Raises
    ------
    DicomRejectedError
        A file is unreadable, or its bytes are not those the manifest records (an image
        regenerated or edited after the manifest was written).
    """
    arrays = []
    for i, study in enumerate(studies, start=1):
        arrays.append(preprocess(read_dicom(study.path, sha256=study.sha256).pixels, params))
        if progress is not None:
            progress(i, len(studies))
    if not arrays:
        return torch.zeros((0, 1, params.size, params.size))
    return torch.from_numpy(np.stack(arrays))


def score_inputs(network: nn.Module, inputs: torch.Tensor, *, batch_size: int = 64) -> FloatArray:
    """Probabilities (sigmoid of the single logit) for preprocessed inputs, in eval mode.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    was_training = network.training
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch_size):
            out.append(torch.sigmoid(network(inputs[start : start + batch_size])).reshape(-1).double().numpy())
    network.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def score_studies(
    network: nn.Module, studies: Sequence[LabelledStudy], params: PreprocessParams, *, batch_size: int = 64
) -> FloatArray:
    """Read, preprocess and score ``studies`` a batch at a time (memory stays bounded).

    Returns
    -------
    ndarray of shape (len(studies),), float64
    """
    scores = [
        score_inputs(network, load_inputs(studies[i : i + batch_size], params), batch_size=batch_size)
        for i in range(0, len(studies), batch_size)
    ]
    return np.concatenate(scores) if scores else np.zeros(0)


def auc_or_nan(y_true: IntArray, y_score: FloatArray) -> float:
    """ROC AUC, or NaN with a warning when ``y_true`` holds a single class.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        0/1 labels.
    y_score : ndarray of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> auc_or_nan(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    if np.unique(y_true).size < 2:
        warnings.warn(
            f"y_true holds a single class ({np.unique(y_true).tolist()}); AUC is undefined, returning NaN", stacklevel=2
        )
        return float("nan")
    from sklearn.metrics import roc_auc_score  # deferred: see the module docstring

    return float(roc_auc_score(y_true, y_score))


def youden_threshold(y_true: IntArray, y_score: FloatArray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (Youden's J).

    A study is called positive when its score is ``>=`` the threshold. Returns 0.5 with a warning
    when ``y_true`` holds a single class.
    """
    if np.unique(y_true).size < 2:
        warnings.warn("a single class in the validation split; the operating threshold falls back to 0.5", stacklevel=2)
        return 0.5
    from sklearn.metrics import roc_curve  # deferred: see the module docstring

    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first threshold is +inf (nothing called positive); it never maximises J with both classes.
    return float(min(thresholds[best], 1.0))


def sensitivity_keeping_threshold(y_true: IntArray, y_score: FloatArray, target: float) -> float:
    """The highest threshold whose sensitivity on ``(y_true, y_score)`` is at least ``target``.

    The operating point a change-control plan that holds sensitivity asks for: among the
    thresholds that find at least ``target`` of the positives, the one with the best specificity.
    A study is called positive when its score is ``>=`` the threshold.

    Parameters
    ----------
    y_true : ndarray of shape (n,)
        0/1 labels; at least one positive.
    y_score : ndarray of shape (n,)
    target : float
        Sensitivity to keep, in [0, 1].

    Raises
    ------
    ValueError
        No positive, or ``target`` outside [0, 1].

    Examples
    --------
    >>> sensitivity_keeping_threshold(np.array([1, 1, 1, 0]), np.array([0.9, 0.6, 0.3, 0.5]), 2 / 3)
    0.6
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target sensitivity must be in [0, 1], got {target!r}")
    positives = np.sort(np.asarray(y_score, dtype=np.float64)[np.asarray(y_true) == 1])[::-1]
    if positives.size == 0:
        raise ValueError("no positive study: sensitivity is undefined")
    # Found k positives at threshold = the k-th highest positive score; keep the fewest that reach target.
    k = max(1, int(np.ceil(target * positives.size - 1e-9)))
    return float(positives[k - 1])


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def evaluate_by_site(
    y_true: IntArray, y_score: FloatArray, sites: Sequence[str], *, threshold: float
) -> dict[str, SiteResult]:
    """Per-site AUC, sensitivity and specificity at ``threshold``, sites in sorted order."""
    y, s, site_arr = np.asarray(y_true), np.asarray(y_score), np.asarray(sites)
    results = {}
    for site in sorted(set(sites)):
        sel = site_arr == site
        yt, ys = y[sel], s[sel]
        pred = ys >= threshold
        pos, neg = int(yt.sum()), int((1 - yt).sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = auc_or_nan(yt, ys)
        results[site] = SiteResult(
            site,
            int(sel.sum()),
            pos,
            auc,
            _rate(int((pred & (yt == 1)).sum()), pos),
            _rate(int((~pred & (yt == 0)).sum()), neg),
        )
    return results


def _site_metrics(
    network: nn.Module, studies: Sequence[LabelledStudy], params: PreprocessParams, threshold: float
) -> JSONObject:
    """Per-site figures of ``studies`` as card JSON."""
    scores = score_studies(network, studies, params)
    labels = np.array([s.label for s in studies], dtype=np.int64)
    sites = [s.site for s in studies]
    results = evaluate_by_site(labels, scores, sites, threshold=threshold)
    return {site: r.to_json() for site, r in results.items()}


def held_out_metrics(
    network: nn.Module,
    studies: Sequence[LabelledStudy],
    params: PreprocessParams,
    *,
    threshold: float,
    eval_cohort_dir: Path | None = None,
) -> JSONObject:
    """The model card's ``metrics``: per-site figures on data the model never trained on.

    Parameters
    ----------
    network : nn.Module
    studies : sequence of LabelledStudy
        The training cohort: its benchmark ``test`` split and every deployment-site study are scored.
    params : PreprocessParams
    threshold : float
        The operating threshold (sensitivity and specificity are reported at it).
    eval_cohort_dir : Path, optional
        An independently generated labelled cohort; when given, all its studies are scored and its
        figures become the summary (``benchmark_auc``, ``site_auc``, ``auc_gap_vs_benchmark``).

    Returns
    -------
    dict
        ``benchmark_site``, ``training_cohort_held_out`` (per site), ``evaluation_cohort`` (per site,
        when given), ``source`` (which data the summary figures come from) and the summary. Undefined
        AUCs (a single-class site) are ``None``.
    """
    held_out = [s for s in studies if (s.is_benchmark and s.split == "test") or not s.is_benchmark]
    benchmark = next(s.site for s in studies if s.is_benchmark)
    in_cohort = _site_metrics(network, held_out, params, threshold)
    metrics: JSONObject = {"benchmark_site": benchmark, "training_cohort_held_out": in_cohort}
    primary, source = in_cohort, "training cohort: benchmark test split and all deployment-site studies"
    if eval_cohort_dir is not None:
        eval_studies = read_labelled_studies(eval_cohort_dir)
        primary = _site_metrics(network, eval_studies, params, threshold)
        metrics["evaluation_cohort"] = primary
        source = (
            "independently generated evaluation cohort (different seed), every study; "
            f"manifest SHA-256 {sha256_file(eval_cohort_dir / 'manifest.csv')}"
        )
    metrics.update(_summary(primary, benchmark, source))
    return metrics


def _summary(per_site: JSONObject, benchmark: str, source: str) -> JSONObject:
    aucs = {site: r["auc"] for site, r in per_site.items() if isinstance(r, dict)}
    bench_auc = aucs.get(benchmark)
    site_auc: dict[str, JSONValue] = {s: a for s, a in aucs.items() if s != benchmark}
    gaps: dict[str, JSONValue] = {
        s: round(float(bench_auc) - float(a), 4)
        for s, a in site_auc.items()
        if isinstance(a, float) and isinstance(bench_auc, float)
    }
    return {"source": source, "benchmark_auc": bench_auc, "site_auc": site_auc, "auc_gap_vs_benchmark": gaps}
