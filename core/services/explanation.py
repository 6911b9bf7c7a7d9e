"""Explain a study's prediction, store the map as a content-addressed artifact, audit it; view and export it.

One explanation is one artifact (``<sha256>.npz`` under ``artifacts/explanations``), one
``explanation`` row linked to the prediction it explains, with the method, the model version
that made it and every parameter, and one audit entry carrying the artifact's SHA-256. Showing
an explanation to a reader and exporting it as DICOM are audited too.

Grad-CAM artifacts hold the float16 map on the target layer's grid (a few hundred bytes instead
of a float32 map per image pixel); the row's parameters record ``stored_shape``,
``stored_dtype``, ``image_shape`` and the ``upsample`` rule, and this module upsamples on load,
so the viewer and the exporter still get the map on the image grid. Rows written before carry no
``stored_shape``: their full-resolution float32 artifacts load as they are.

A study may be explained by a model version that did not score it (the serving model changed
since): the explanation is then linked to the newest scored prediction, and
:attr:`StoredExplanation.notice` says which version scored and which explained, for the UI to show.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, cast

import numpy as np
import torch
from sqlalchemy.orm import Session

from core import __version__
from core.audit.events import AuditAction
from core.audit.records import RECORD_HASH_KEY, RecordKind
from core.errors import BadInputError, DicomRejectedError, PixelsUnreadableError
from core.explain.dispatch import ExplainOptions, explain, parse_method
from core.explain.gradcam import STORED_UPSAMPLE, upsample_stored
from core.explain.overlay import COLORMAPS, DIVERGING_COLORMAPS, blend, overlay, overlay_signed
from core.explain.result import ExplainMethod
from core.imaging.dicom import read_dicom
from core.imaging.export import ExplanationExport, ExportedObject, export_explanation
from core.imaging.image import DicomImage
from core.imaging.window import apply_window, default_window
from core.models.loading import LoadedModel
from core.models.preprocess import preprocess
from core.services.permissions import Permission, SignedInUser, require
from core.store import (
    audit_log,
    deployments,
    explanations,
    model_versions,
    outcomes,
    predictions,
    record_hashes,
    sites,
    studies,
)
from core.store.engine import SessionFactory
from core.store.explanations import ExplanationIn, ExplanationRecord
from core.store.model_versions import ModelVersionRecord
from core.store.predictions import PredictionRecord
from core.store.studies import InstanceRecord
from core.types import FloatArray, JSONObject

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "ExplainMethod",
    "ModelProvider",
    "StoredExplanation",
    "array_sha256",
    "benchmark_baselines",
    "blend",
    "explain_case",
    "explain_study",
    "export_dicom",
    "parse_method",
    "record_explanation",
    "record_explanations",
    "record_viewed",
    "write_artifact",
]

#: Given a version's name, its shared loaded model and the lock its explanations hold.
ModelProvider = Callable[[str], tuple[LoadedModel, threading.Lock]]

#: Baseline images GradientShap draws from (benchmark-site negatives).
N_BASELINES: Final = 16
#: Opacity of the map in the exported Secondary Capture.
_EXPORT_OPACITY: Final = 0.5


@dataclass(frozen=True, slots=True, eq=False)
class StoredExplanation:
    """An explanation map and where it is stored.

    Attributes
    ----------
    heatmap : ndarray of shape (rows, columns), float32
        On the DICOM image's own pixel grid: [0, 1] for Grad-CAM, [-1, 1] for the SHAP methods.
    sha256 : str
        :func:`array_sha256` of the stored array: ``heatmap`` itself, or for Grad-CAM the float16
        layer-grid map it is upsampled from (``params["upsample"]``); the artifact's address and
        what the audit entry carries.
    model_version : str
        The version that made the map.
    predicted_by : str
        The version whose prediction it is linked to (the one that scored the study).
    params : dict
        Everything that determines the map.
    reused : bool
        True when a stored artifact was loaded instead of computed.
    """

    study_uid: str
    method: str
    model_version: str
    heatmap: FloatArray
    sha256: str
    artifact_path: Path
    explanation_id: int
    predicted_by: str = ""
    params: JSONObject = field(default_factory=dict)
    reused: bool = False

    @property
    def signed(self) -> bool:
        """Whether the map carries evidence against the finding too (the SHAP methods)."""
        return ExplainMethod(self.method).signed

    @property
    def version_mismatch(self) -> bool:
        """True when the map was made by another version than the one that scored the study."""
        return bool(self.predicted_by) and self.predicted_by != self.model_version

    @property
    def notice(self) -> str | None:
        """What the UI must say when :attr:`version_mismatch`, else None."""
        if not self.version_mismatch:
            return None
        return (
            f"This explanation was made by model {self.model_version}, but the score shown was predicted by "
            f"model {self.predicted_by}: it explains what {self.model_version} sees, not why {self.predicted_by} "
            "scored the study as it did."
        )


def array_sha256(arr: FloatArray) -> str:
    """SHA-256 over dtype, shape and C-order bytes: equal arrays, equal address (zip timestamps aside)."""
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# --- baselines ---------------------------------------------------------------------------------


def _negative_studies(session_factory: SessionFactory, model: LoadedModel) -> tuple[list[str], str, str]:
    """(study UIDs, source, site) of the benchmark site's negatives: labelled ones, else scored below threshold."""
    with session_factory() as session:
        bench = sites.benchmark_site(session)
        if bench is None:
            raise BadInputError(
                "GradientShap draws its baselines from the benchmark site's negatives: no benchmark site"
            )
        labels: dict[str, set[bool]] = {}
        for rec in outcomes.list_outcomes(session, site=bench.name):
            labels.setdefault(rec.study_uid, set()).add(rec.label)
        labelled = sorted(uid for uid, seen in labels.items() if seen == {False})
        if labelled:
            return labelled, "labelled negatives", bench.name
        mv = model_versions.get_by_version(session, model.card.version)
        scored = outcomes.scored_studies(session, mv.id, site=bench.name)
    below = sorted(s.study_uid for s in scored if s.score is not None and s.score < model.card.operating_threshold)
    if not below:
        raise BadInputError(f"no negatives at benchmark site {bench.name!r} to draw GradientShap baselines from")
    return below, f"scored below the operating threshold by {model.card.version}", bench.name


def benchmark_baselines(
    session_factory: SessionFactory,
    model: LoadedModel,
    *,
    artifacts_dir: Path,
    n: int = N_BASELINES,
    exclude: str | None = None,
) -> tuple[torch.Tensor, JSONObject]:
    """Preprocessed baseline images for GradientShap: up to ``n`` benchmark-site negatives.

    Negatives are studies whose every stored label says "absent" or, without labels, studies
    ``model`` scored below its operating threshold; the first ``n`` by StudyInstanceUID. The
    stack is cached as ``artifacts/baselines/<sha256>.npy``, addressed by the preprocessing and
    the instances' file hashes.

    Returns
    -------
    baselines : Tensor of shape (k, 1, S, S), float32, k <= n
    provenance : dict
        Source, site, SOP Instance UIDs and the cache key; stored with each map's parameters.

    Raises
    ------
    BadInputError
        No benchmark site, or no negatives there.
    """
    uids, source, site = _negative_studies(session_factory, model)
    uids = [u for u in uids if u != exclude]
    with session_factory() as session:
        chosen = [studies.list_instances(session, uid)[0] for uid in uids[:n]]
    key_src = json.dumps([model.card.preprocessing, [i.sha256 for i in chosen]], sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()
    path = artifacts_dir / "baselines" / f"{key}.npy"
    if path.is_file():
        stack = np.load(path)
    else:
        stack = np.stack([preprocess(read_dicom(Path(i.path)).pixels, model.preprocessing) for i in chosen])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, stack)
    provenance: JSONObject = {
        "baseline_source": source,
        "baseline_site": site,
        "baseline_instances": [i.sop_instance_uid for i in chosen],
        "baseline_cache": key,
    }
    return torch.from_numpy(stack.astype(np.float32)), provenance


# --- explaining and storing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    instance: InstanceRecord
    prediction: PredictionRecord
    predicted_by: str


def _target(session_factory: SessionFactory, model: LoadedModel, study_uid: str) -> _Target:
    """The study's image and the prediction an explanation by ``model`` is linked to."""
    with session_factory() as session:
        inst = studies.list_instances(session, study_uid)[0]
        mv = model_versions.get_by_version(session, model.card.version)
        own = predictions.prediction_for(session, instance_id=inst.id, model_version_id=mv.id)
        others = explanations.scored_predictions_of_instance(session, inst.id)
    if own is not None and own.score is not None:
        return _Target(inst, own, model.card.version)
    if others:
        pred, version = others[0]
        return _Target(inst, pred, version)
    why = "it has no prediction" if own is None else f"it was not scored ({own.fallback})"
    raise BadInputError(f"cannot explain study {study_uid} with model {model.card.version}: {why}")


def _read_image(inst: InstanceRecord) -> DicomImage:
    try:
        return read_dicom(Path(inst.path))
    except DicomRejectedError as exc:
        raise PixelsUnreadableError(inst.study_uid, exc.reason) from exc
    except OSError as exc:
        raise PixelsUnreadableError(inst.study_uid, f"{type(exc).__name__}: {exc}") from exc


def _options(
    session_factory: SessionFactory,
    model: LoadedModel,
    method: ExplainMethod,
    options: ExplainOptions,
    artifacts_dir: Path,
    study_uid: str,
) -> tuple[ExplainOptions, JSONObject]:
    if method is not ExplainMethod.GRADIENTSHAP or options.baselines is not None:
        return options, {}
    baselines, provenance = benchmark_baselines(session_factory, model, artifacts_dir=artifacts_dir, exclude=study_uid)
    return ExplainOptions(options.gradient_shap, options.kernel_shap, baselines), provenance


def explain_study(  # noqa: PLR0913 - the existing signature plus method options
    session_factory: SessionFactory,
    model: LoadedModel,
    study_uid: str,
    *,
    method: ExplainMethod,
    artifacts_dir: Path,
    lock: threading.Lock | None,
    actor: str,
    now: Callable[[], datetime],
    options: ExplainOptions | None = None,
) -> StoredExplanation:
    """Explain ``study_uid`` with ``model`` and store it, audited, in one transaction.

    Parameters
    ----------
    options : ExplainOptions, optional
        Method parameters; GradientShap's baselines default to :func:`benchmark_baselines`.

    Raises
    ------
    UnknownStudyError
        No such study.
    BadInputError
        No scored prediction of the study by any version (run ``vigil predict`` first), the
        card's target layer does not exist, or no GradientShap baselines. Nothing is written.
    PixelsUnreadableError
        The stored image has no readable pixels. Nothing is written.
    """
    target = _target(session_factory, model, study_uid)
    image = _read_image(target.instance)
    opts, provenance = _options(session_factory, model, method, options or ExplainOptions(), artifacts_dir, study_uid)
    result = explain(model, [image], method=method, lock=lock, options=opts)[0]
    params: JSONObject = {**result.params, **provenance, "model_version": model.card.version}
    params["predicted_by"] = target.predicted_by
    # Grad-CAM stores its float16 layer-grid map (params say how to upsample it); the SHAP maps
    # have no coarser grid and are stored in full.
    kept = result.stored if result.stored is not None else result.heatmap
    digest = array_sha256(kept)
    path = write_artifact(artifacts_dir, digest, kept)
    with session_factory.begin() as session:
        rec = record_explanation(
            session,
            ExplanationIn(target.prediction.id, method.value, params, digest, str(path)),
            study_uid=study_uid,
            actor=actor,
            now=now,
        )
    return StoredExplanation(
        study_uid, method.value, model.card.version, result.heatmap, digest, path, rec.id, target.predicted_by, params
    )


def record_explanation(
    session: Session, row: ExplanationIn, *, study_uid: str, actor: str, now: Callable[[], datetime]
) -> ExplanationRecord:
    """Stage the explanation row and its ``explanation_created`` audit entry in the caller's transaction.

    Shared by :func:`explain_study` and the streaming pipeline (:mod:`core.pipeline`), so a
    stored map and its audit payload are the same whichever path made them. ``row.params`` must
    hold ``model_version`` and ``predicted_by``; the artifact must already be written
    (:func:`write_artifact`).
    """
    return record_explanations(session, [(row, study_uid)], actor=actor, now=now)[0]


def record_explanations(
    session: Session, rows: Sequence[tuple[ExplanationIn, str]], *, actor: str, now: Callable[[], datetime]
) -> list[ExplanationRecord]:
    """:func:`record_explanation` of each (row, study UID), in order: one flush, one hash query, one insert of entries.

    The rows, hashes and audit entries are the ones a call per row would stage.
    """
    stamped = [(row, uid, now()) for row, uid in rows]
    recs = explanations.add_explanations(session, [(row, at) for row, _, at in stamped])
    digests = record_hashes.record_hashes(session, RecordKind.EXPLANATION, [rec.id for rec in recs])
    drafts = [
        audit_log.EntryDraft(
            actor=actor,
            action=AuditAction.EXPLANATION_CREATED,
            subject=uid,
            payload={
                "explanation_id": rec.id,
                "prediction_id": row.prediction_id,
                "method": row.method,
                "model_version": row.params["model_version"],
                "predicted_by": row.params["predicted_by"],
                "artifact_sha256": row.artifact_sha256,
                RECORD_HASH_KEY: digests[rec.id],
            },
            recorded_at=at.isoformat(),
        )
        for (row, uid, at), rec in zip(stamped, recs, strict=True)
    ]
    audit_log.append_many(session, drafts)
    return recs


def write_artifact(artifacts_dir: Path, digest: str, stored: np.ndarray) -> Path:
    """Write ``<digest>.npz`` (compressed) unless it exists; written via a temporary name of its own.

    Two processes may write the same map at once (two ``vigil predict`` runs, a run and the app):
    each writes its own temporary file and renames it into place, so neither sees the other's
    half-written bytes and the last rename leaves the same content.
    """
    path = artifacts_dir / "explanations" / f"{digest}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, heatmap=stored)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(buf.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def _is_compact(params: JSONObject) -> bool:
    """Whether the row's artifact is a layer-grid map to upsample (rows written before are full maps)."""
    return "stored_shape" in params and params.get("upsample") == STORED_UPSAMPLE


def _load_artifact(rec: ExplanationRecord) -> FloatArray | None:
    """The reader's map from the stored file when it exists and its SHA-256 matches the record; else None.

    A compact artifact (see :func:`_is_compact`) is upsampled to the image grid here, by the rule
    its parameters record; a full-resolution float32 artifact is returned as stored.
    """
    params = rec.params
    compact = _is_compact(params)
    try:
        with np.load(rec.artifact_path) as data:
            stored = np.asarray(data["heatmap"])
    except (OSError, KeyError, ValueError):
        return None
    if not compact:
        stored = stored.astype(np.float32, copy=False)
    if array_sha256(stored) != rec.artifact_sha256:
        return None  # edited or damaged: recompute instead of showing it
    if compact:
        rows, cols = (int(v) for v in cast(list[int], params["image_shape"]))
        heatmap = upsample_stored(stored, input_size=int(cast(int, params["input_size"])), image_shape=(rows, cols))
    else:
        heatmap = stored
    heatmap.setflags(write=False)
    return heatmap


# --- the review page ----------------------------------------------------------------------------


def _version_for(session: Session, study_uid: str) -> ModelVersionRecord:
    """The version serving the study's site: the one whose prediction its reader is shown."""
    study = studies.get_study(session, study_uid)
    serving = deployments.version_serving(session, study.site_name)
    if serving is None:
        raise BadInputError("no model version is serving: run `vigil init`")
    return serving


def _reusable(
    session_factory: SessionFactory, study_uid: str, method: ExplainMethod
) -> tuple[ModelVersionRecord, StoredExplanation | None]:
    """The version serving the study's site, and its newest valid stored map of ``method`` for the study, if any."""
    with session_factory() as session:
        serving = _version_for(session, study_uid)
        inst = studies.list_instances(session, study_uid)[0]
        candidates = [
            (rec, version)
            for pred, version in explanations.scored_predictions_of_instance(session, inst.id)
            for rec in explanations.list_explanations(session, pred.id)
        ]
    mine = [
        (r, v) for r, v in candidates if r.method == method.value and r.params.get("model_version") == serving.version
    ]
    for rec, predicted_by in sorted(mine, key=lambda rv: rv[0].id, reverse=True):
        heatmap = _load_artifact(rec)
        if heatmap is not None:
            return serving, StoredExplanation(
                study_uid, method.value, serving.version, heatmap, rec.artifact_sha256,
                Path(rec.artifact_path), rec.id, predicted_by, rec.params, reused=True,
            )  # fmt: skip
    return serving, None


def explain_case(
    session_factory: SessionFactory,
    user: SignedInUser,
    study_uid: str,
    *,
    method: str | ExplainMethod,
    model: ModelProvider,
    artifacts_dir: Path,
    now: Callable[[], datetime],
) -> StoredExplanation:
    """The ``method`` map of the study by the version serving its site: stored, or computed once and stored.

    Parameters
    ----------
    model : callable
        Given the name of the version serving the study's site, returns its shared model and its
        explanation lock; called only when no valid stored artifact exists, so a cached map never
        loads the model.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownMethodError, BadInputError, PixelsUnreadableError, OutsideIntendedUseError
        As :func:`explain_study`; nothing is written.
    """
    require(user, Permission.REVIEW_STUDIES)
    chosen = parse_method(method)
    serving, stored = _reusable(session_factory, study_uid, chosen)
    if stored is not None:
        return stored
    loaded, lock = model(serving.version)
    if loaded.card.version != serving.version:  # a map by another version would be shown as this one's
        raise BadInputError(
            f"the model provider returned {loaded.card.version!r} for {serving.version!r}, "
            f"the version serving study {study_uid}"
        )
    return explain_study(
        session_factory,
        loaded,
        study_uid,
        method=chosen,
        artifacts_dir=artifacts_dir,
        lock=lock,
        actor=user.username,
        now=now,
    )


def record_viewed(
    session_factory: SessionFactory, user: SignedInUser, shown: StoredExplanation, *, now: Callable[[], datetime]
) -> None:
    """Audit that ``user`` was shown ``shown`` (call once per case visit and method).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=user.username,
            action=AuditAction.EXPLANATION_VIEWED,
            subject=shown.study_uid,
            payload={
                "explanation_id": shown.explanation_id,
                "artifact_sha256": shown.sha256,
                "method": shown.method,
                "model_version": shown.model_version,
                "predicted_by": shown.predicted_by,
            },
            recorded_at=now().isoformat(),
        )


# --- DICOM export --------------------------------------------------------------------------------


def _overlay_rgb(image: DicomImage, stored: StoredExplanation) -> np.ndarray:
    center, width = default_window(image)
    gray = np.nan_to_num(apply_window(image.pixels, center=center, width=width), nan=0.0)
    if stored.signed:
        return overlay_signed(gray, stored.heatmap, opacity=_EXPORT_OPACITY)
    return overlay(gray, stored.heatmap, opacity=_EXPORT_OPACITY, cmap="jet")


def export_dicom(
    session_factory: SessionFactory,
    stored: StoredExplanation,
    *,
    out_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> list[ExportedObject]:
    """Write ``stored`` as a Secondary Capture and a Segmentation in its study, audited.

    Raises
    ------
    BadInputError
        ``out_dir`` is a file; PixelsUnreadableError when the source image cannot be read.
    """
    with session_factory() as session:
        inst = studies.list_instances(session, stored.study_uid)[0]
    image = _read_image(inst)
    export = ExplanationExport(
        method=stored.method,
        method_label=ExplainMethod(stored.method).label,
        model_version=stored.model_version,
        artifact_sha256=stored.sha256,
        heatmap=stored.heatmap,
        signed=stored.signed,
        overlay_rgb=_overlay_rgb(image, stored),
        software_version=__version__,
    )
    objects = export_explanation(Path(inst.path), export, out_dir=out_dir)
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.EXPLANATION_EXPORTED,
            subject=stored.study_uid,
            payload={
                "explanation_id": stored.explanation_id,
                "artifact_sha256": stored.sha256,
                "model_version": stored.model_version,
                "sop_instance_uids": [o.sop_instance_uid for o in objects],
                "sop_class_uids": [o.sop_class_uid for o in objects],
            },
            recorded_at=now().isoformat(),
        )
    return objects
