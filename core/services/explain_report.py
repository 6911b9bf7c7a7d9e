"""Compute, store and read the faithfulness and sanity report of a model version's explanations.

The report runs every method on the cohort's positive cases that have lesion masks (the
synthetic cohort's ground truth), measures the pointing game, deletion/insertion against a
random order and the model-parameter randomization test (:mod:`core.explain.faithfulness`),
stores the :class:`~core.explain.report.TrustReport` with its model version and audits it. The
review page reads :func:`trust_sentences` for the sentence beside each overlay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from core.audit.events import AuditAction
from core.errors import PathNotFoundError
from core.explain.dispatch import ExplainOptions, check_target_layer, map_function
from core.explain.faithfulness import FaithfulnessOptions, assess_method, randomized_copy, top_layers
from core.explain.gradient_shap import GradientShapOptions, baselines_sha256
from core.explain.kernel_shap import KernelShapOptions
from core.explain.report import TrustReport, trust_level
from core.explain.result import ExplainMethod
from core.imaging.dicom import read_dicom
from core.models.intended_use import check_intended_use
from core.models.loading import LoadedModel, sha256_file
from core.models.preprocess import preprocess
from core.sampledata import MANIFEST_NAME, MASKS_NAME, ManifestRow, read_manifest, read_masks
from core.services import models as model_service
from core.store import audit_log, explain_reports, model_versions
from core.store.engine import SessionFactory
from core.types import BoolArray, JSONObject

__all__ = [
    "ReportCohort",
    "ReportOptions",
    "StoredReport",
    "compute_report",
    "create_report",
    "latest_report",
    "load_cohort",
    "load_version",
    "trust_sentences",
]


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What the report runs on and how.

    Attributes
    ----------
    max_cases : int
        Positive cases explained at most (spread evenly over the sorted candidates).
    n_baselines : int
        Benchmark-site negatives used as GradientShap baselines.
    include_train : bool
        Also evaluate positives of the benchmark training split (default: held out only).
    randomize_top : int
        Top layers re-initialized for the randomization test.
    """

    max_cases: int = 16
    n_baselines: int = 16
    include_train: bool = False
    randomize_top: int = 2
    methods: tuple[ExplainMethod, ...] = tuple(ExplainMethod)
    faithfulness: FaithfulnessOptions = field(default_factory=FaithfulnessOptions)
    gradient_shap: GradientShapOptions = field(default_factory=GradientShapOptions)
    kernel_shap: KernelShapOptions = field(default_factory=KernelShapOptions)


@dataclass(frozen=True, slots=True, eq=False)
class ReportCohort:
    """The cases and baselines a report runs on.

    Attributes
    ----------
    inputs : Tensor of shape (n, 1, S, S)
        Preprocessed positive cases.
    masks : list of n bool arrays of shape (rows_i, cols_i)
    case_uids : list of str
        Their SOP Instance UIDs.
    baselines : Tensor of shape (k, 1, S, S)
    baseline_uids : list of str
    manifest_sha256 : str
    skipped : int
        Positive cases outside the model's intended use (not scored, so not explained).
    """

    inputs: torch.Tensor
    masks: list[BoolArray]
    case_uids: list[str]
    baselines: torch.Tensor
    baseline_uids: list[str]
    manifest_sha256: str
    skipped: int


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report as stored: its row id, the report, the SHA-256 of its canonical JSON, who and when."""

    id: int
    report: TrustReport
    sha256: str
    created_by: str
    created_at: datetime


def _spread(rows: list[ManifestRow], k: int) -> list[ManifestRow]:
    if len(rows) <= k:
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, k).round().astype(int)]


def _cases(rows: list[ManifestRow], masks: dict[str, BoolArray], options: ReportOptions) -> list[ManifestRow]:
    positives = [r for r in rows if r.label == 1 and r.sop_instance_uid in masks]
    held_out = [r for r in positives if options.include_train or r.split != "train"]
    return _spread(sorted(held_out, key=lambda r: (r.site, r.sop_instance_uid)), options.max_cases)


def _baseline_rows(rows: list[ManifestRow], n: int) -> list[ManifestRow]:
    negatives = sorted(
        (r for r in rows if r.is_benchmark and r.label == 0), key=lambda r: (r.split != "train", r.sop_instance_uid)
    )
    return negatives[:n]


def load_cohort(cohort_dir: Path, model: LoadedModel, *, options: ReportOptions) -> ReportCohort:
    """Read the cohort's positive cases with masks and its benchmark negatives, preprocessed for ``model``.

    Raises
    ------
    PathNotFoundError
        No manifest or masks in ``cohort_dir``.
    """
    manifest, masks_path = cohort_dir / MANIFEST_NAME, cohort_dir / MASKS_NAME
    for path in (manifest, masks_path):
        if not path.is_file():
            raise PathNotFoundError(path)
    rows, masks = read_manifest(manifest), read_masks(masks_path)
    inputs, kept, uids, skipped = [], [], [], 0
    for row in _cases(rows, masks, options):
        image = read_dicom(cohort_dir / row.path, sha256=row.file_sha256)
        if check_intended_use(image.meta, model.card.intended_use) is not None:
            skipped += 1
            continue
        inputs.append(preprocess(image.pixels, model.preprocessing))
        kept.append(masks[row.sop_instance_uid])
        uids.append(row.sop_instance_uid)
    base_rows = _baseline_rows(rows, options.n_baselines)
    baselines = [
        preprocess(read_dicom(cohort_dir / r.path, sha256=r.file_sha256).pixels, model.preprocessing) for r in base_rows
    ]
    size = model.preprocessing.size
    return ReportCohort(
        inputs=torch.from_numpy(np.stack(inputs)) if inputs else torch.zeros(0, 1, size, size),
        masks=kept,
        case_uids=uids,
        baselines=torch.from_numpy(np.stack(baselines)) if baselines else torch.zeros(0, 1, size, size),
        baseline_uids=[r.sop_instance_uid for r in base_rows],
        manifest_sha256=sha256_file(manifest),
        skipped=skipped,
    )


def _params(model: LoadedModel, cohort: ReportCohort, options: ReportOptions, layers: tuple[str, ...]) -> JSONObject:
    return {
        "cohort_manifest_sha256": cohort.manifest_sha256,
        "cases": list(cohort.case_uids),
        "cases_outside_intended_use": cohort.skipped,
        "baseline_instances": list(cohort.baseline_uids),
        "baselines_sha256": baselines_sha256(cohort.baselines) if len(cohort.baselines) else None,
        "target_layer": model.card.target_layer,
        "randomized_layers": list(layers),
        "faithfulness": dict(asdict(options.faithfulness)),
        "gradientshap": options.gradient_shap.to_params(),
        "kernelshap": options.kernel_shap.to_params(),
        "score": "sigmoid(logit) for deletion/insertion; maps explain the logit",
    }


def compute_report(
    model: LoadedModel,
    cohort: ReportCohort,
    *,
    options: ReportOptions,
    lock: threading.Lock | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrustReport:
    """Run every check for every method in ``options.methods``; the model is never mutated.

    Raises
    ------
    BadInputError
        The card's target layer does not exist (checked first), or GradientShap without baselines.
    """
    check_target_layer(model)
    explain_options = ExplainOptions(options.gradient_shap, options.kernel_shap, cohort.baselines)
    guard = lock if lock is not None else contextlib.nullcontext()
    inputs = cohort.inputs.to(model.device)
    with guard:
        layers = top_layers(model.network, k=options.randomize_top)
        randomized = randomized_copy(model.network, layers=layers, seed=options.faithfulness.seed)
        figures = []
        for method in options.methods:
            fn = map_function(method, target_layer=model.card.target_layer, options=explain_options)
            figures.append(
                assess_method(
                    method,
                    fn,
                    network=model.network,
                    randomized=randomized,
                    inputs=inputs,
                    masks=cohort.masks,
                    options=options.faithfulness,
                )
            )
            if progress is not None:
                progress(method.label)  # after the method's checks, so a progress bar counts finished work
    return TrustReport(model.card.version, tuple(figures), _params(model, cohort, options, layers))


def load_version(session_factory: SessionFactory, version: str, *, models_dir: Path) -> LoadedModel:
    """Load a registered version from ``models_dir`` (weights checked against its stored card).

    Raises
    ------
    UnknownModelVersionError, ModelTamperedError, WeightsIntegrityError
    """
    return model_service.load_named(session_factory, version, models_dir=models_dir)


def create_report(
    session_factory: SessionFactory,
    version: str,
    *,
    models_dir: Path,
    cohort_dir: Path,
    options: ReportOptions,
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[str], None] | None = None,
) -> StoredReport:
    """Compute the report of ``version`` on ``cohort_dir`` and store it with its audit entry.

    Raises
    ------
    UnknownModelVersionError, WeightsIntegrityError, PathNotFoundError, BadInputError
        Before anything is written (a missing target layer is checked before the cohort is read).
    """
    model = load_version(session_factory, version, models_dir=models_dir)
    check_target_layer(model)
    cohort = load_cohort(cohort_dir, model, options=options)
    report = compute_report(model, cohort, options=options, progress=progress)
    with session_factory.begin() as session:
        mv = model_versions.get_by_version(session, version)
        rec = explain_reports.add_report(
            session, model_version_id=mv.id, report=report.to_dict(), created_by=actor, now=now()
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.EXPLAIN_REPORT_CREATED,
            subject=version,
            payload={
                "report_id": rec.id,
                "report_sha256": rec.report_sha256,
                "cohort_manifest_sha256": cohort.manifest_sha256,
                "cases": len(cohort.case_uids),
                "trust": dict(_trust(report)),
            },
            recorded_at=now().isoformat(),
        )
    return StoredReport(rec.id, report, rec.report_sha256, rec.created_by, rec.created_at)


def _trust(report: TrustReport) -> dict[str, str]:
    return {str(m.method): str(trust_level(m)) for m in report.methods}


def latest_report(session_factory: SessionFactory, version: str) -> StoredReport | None:
    """The newest stored report of ``version``, or None (raises ``UnknownModelVersionError``)."""
    with session_factory() as session:
        mv = model_versions.get_by_version(session, version)
        rec = explain_reports.latest_report(session, mv.id)
    if rec is None:
        return None
    report = TrustReport.from_dict(json.loads(rec.report_json))
    if hashlib.sha256(rec.report_json.encode("utf-8")).hexdigest() != rec.report_sha256:
        return None  # edited in the database: show no trust sentence rather than a forged one
    return StoredReport(rec.id, report, rec.report_sha256, rec.created_by, rec.created_at)


def trust_sentences(session_factory: SessionFactory, version: str) -> dict[ExplainMethod, str]:
    """The review page's sentence for each method; a 'no report yet' sentence when none is stored."""
    stored = latest_report(session_factory, version)
    if stored is None:
        missing = (
            f"No faithfulness report exists for model {version} yet, so how far this map can be trusted is "
            f"unknown (run `vigil explain-report {version}`)."
        )
        return dict.fromkeys(ExplainMethod, missing)
    return {m: stored.report.sentence(m) for m in ExplainMethod}
