"""One case on the review screen: the study, its prediction, the image, the Grad-CAM overlay.

The heavy steps run once per study, never per widget change: :func:`load_case_image` reads and
decodes the DICOM file, and :func:`case_explanation` reuses a stored Grad-CAM artifact when one
exists (checked against its SHA-256) and computes and stores one otherwise. :func:`render_view`
is the per-rerun step: windowing, blending and cropping an image of a few hundred pixels.

The lesion mask of the synthetic cohort is ground truth for evaluation: nothing here reads it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from core.audit.events import AuditAction
from core.errors import BadInputError, DicomRejectedError, OutsideIntendedUseError, PixelsUnreadableError
from core.explain.overlay import COLORMAPS, DIVERGING_COLORMAPS, blend
from core.explain.result import ExplainMethod
from core.imaging.dicom import read_dicom
from core.imaging.window import apply_window, default_window
from core.models.card import ModelCard
from core.models.loading import LoadedModel
from core.services.explanation import array_sha256, explain_study
from core.services.permissions import Permission, SignedInUser, require
from core.store import audit_log, explanations, model_versions, predictions, studies
from core.store.engine import SessionFactory
from core.store.explanations import ExplanationRecord
from core.types import FloatArray

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "ZOOM_LEVELS",
    "CardEssentials",
    "CaseExplanation",
    "CaseImage",
    "CaseInfo",
    "CasePrediction",
    "CaseStudy",
    "ViewSettings",
    "WindowPreset",
    "case_explanation",
    "load_case_image",
    "open_case",
    "record_explanation_viewed",
    "render_view",
]

ZOOM_LEVELS: Final = (1.0, 1.5, 2.0, 3.0, 4.0)
#: (name, low percentile, high percentile) of the pixel values each preset window spans.
_PRESET_PERCENTILES: Final = (
    ("Full range", 0.5, 99.5),
    ("Lung (dark detail)", 1.0, 60.0),
    ("Mediastinum / bone (bright detail)", 40.0, 99.8),
)

ModelProvider = Callable[[], tuple[LoadedModel, threading.Lock]]


@dataclass(frozen=True, slots=True)
class CaseStudy:
    """The DICOM metadata a reader needs beside the image (site, vendor, protocol, date, ...)."""

    study_uid: str
    accession_number: str
    site: str
    study_date: date | None
    modality: str
    body_part: str
    view_position: str
    vendor: str
    manufacturer: str
    manufacturer_model_name: str
    station_name: str
    institution_name: str
    software_versions: str
    protocol_name: str
    patient_age: str
    patient_sex: str
    kvp: float | None
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class CasePrediction:
    """The serving model's output for the study; ``score`` is None when it was not scored."""

    prediction_id: int
    model_version: str
    score: float | None
    label: bool | None
    threshold: float
    fallback: str | None


@dataclass(frozen=True, slots=True)
class CardEssentials:
    """What a reader must know about the model that scored the study.

    ``synthetic`` is True when the card says it was trained on synthetic data only (the bundled
    demonstration model); the UI then says so on every case.
    """

    version: str
    intended_use: str
    operating_threshold: float
    labels: tuple[str, ...]
    synthetic: bool
    training_data: str
    created_at: str


@dataclass(frozen=True, slots=True)
class CaseInfo:
    """Everything about a case except pixels: cheap to load, safe to cache per data version."""

    study: CaseStudy
    prediction: CasePrediction | None
    card: CardEssentials | None


@dataclass(frozen=True, slots=True)
class WindowPreset:
    """A named window (centre and width in the image's modality units)."""

    name: str
    center: float
    width: float


@dataclass(frozen=True, slots=True, eq=False)
class CaseImage:
    """A decoded image ready for display.

    Attributes
    ----------
    pixels : ndarray of shape (rows, columns), float32, read-only
        Modality units, MONOCHROME1 already inverted.
    presets : tuple of WindowPreset
        The file's own window first ("File default"), then percentile windows.
    value_range : (float, float)
        Smallest and largest finite pixel value, for slider bounds.
    """

    study_uid: str
    pixels: FloatArray
    presets: tuple[WindowPreset, ...]
    value_range: tuple[float, float]

    @property
    def default(self) -> WindowPreset:
        """The window the file asks for (or its percentile range when it names none)."""
        return self.presets[0]


@dataclass(frozen=True, slots=True, eq=False)
class CaseExplanation:
    """A Grad-CAM map on the image grid, as stored.

    Attributes
    ----------
    heatmap : ndarray of shape (rows, columns), float32 in [0, 1], read-only
    reused : bool
        True when a stored artifact was loaded, False when it was computed by this call.
    flat : bool
        The map is all zero: nothing at the target layer raised the score, so there is nothing to show.
    """

    explanation_id: int
    heatmap: FloatArray
    sha256: str
    model_version: str
    reused: bool

    @property
    def flat(self) -> bool:
        """True for an all-zero map."""
        return not bool(np.any(self.heatmap))


@dataclass(frozen=True, slots=True)
class ViewSettings:
    """How the reader wants the image shown.

    Attributes
    ----------
    center, width : float
        Window in modality units (``width >= 1``).
    zoom : float
        Magnification, one of :data:`ZOOM_LEVELS` or any value >= 1.
    pan_x, pan_y : float
        Centre of the zoomed view as fractions of the width and height, in [0, 1].
    overlay : bool
        Show the heat map.
    opacity : float
        Weight of the heat map colour, in [0, 1].
    cmap : str
        One of :data:`COLORMAPS` (a signed map falls back to "coolwarm" unless it is one of
        :data:`DIVERGING_COLORMAPS`).
    """

    center: float
    width: float
    zoom: float = 1.0
    pan_x: float = 0.5
    pan_y: float = 0.5
    overlay: bool = True
    opacity: float = 0.35
    cmap: str = "jet"


def open_case(session_factory: SessionFactory, user: SignedInUser, study_uid: str) -> CaseInfo:
    """Load a case's study header, the serving model's prediction and card essentials.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        study = studies.get_study(session, study_uid)
        instance = studies.list_instances(session, study_uid)[0]
        serving = model_versions.serving(session)
        pred = None if serving is None else predictions.prediction_for(session, instance.id, serving.id)
    spacing = (
        (instance.pixel_spacing_row, instance.pixel_spacing_col)
        if instance.pixel_spacing_row is not None and instance.pixel_spacing_col is not None
        else None
    )
    case_study = CaseStudy(
        study_uid=study.study_uid,
        accession_number=study.accession_number,
        site=study.site_name,
        study_date=study.study_date,
        modality=study.modality,
        body_part=study.body_part,
        view_position=study.view_position,
        vendor=study.vendor,
        manufacturer=study.manufacturer_raw,
        manufacturer_model_name=study.manufacturer_model_name,
        station_name=study.station_name,
        institution_name=study.institution_name,
        software_versions=study.software_versions,
        protocol_name=study.protocol_name,
        patient_age=study.patient_age,
        patient_sex=study.patient_sex,
        kvp=study.kvp,
        rows=instance.rows,
        columns=instance.columns,
        pixel_spacing_mm=spacing,
    )
    card = None if serving is None else _essentials(ModelCard.from_dict(json.loads(serving.card_json)))
    prediction = (
        None
        if pred is None or serving is None
        else CasePrediction(pred.id, serving.version, pred.score, pred.label, pred.threshold, pred.fallback)
    )
    return CaseInfo(study=case_study, prediction=prediction, card=card)


def load_case_image(session_factory: SessionFactory, user: SignedInUser, study_uid: str) -> CaseImage:
    """Read and decode the study's first image, with its default and preset windows.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    PixelsUnreadableError
        The stored file is missing, unreadable or no longer decodes.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        instance = studies.list_instances(session, study_uid)[0]
    try:
        image = read_dicom(Path(instance.path))
        center, width = default_window(image)
    except DicomRejectedError as exc:
        raise PixelsUnreadableError(study_uid, exc.reason) from exc
    except (OSError, ValueError, BadInputError) as exc:
        raise PixelsUnreadableError(study_uid, f"{type(exc).__name__}: {exc}") from exc
    pixels = image.pixels
    finite = pixels[np.isfinite(pixels)]
    presets = [WindowPreset("File default", float(center), float(width))]
    for name, lo_pct, hi_pct in _PRESET_PERCENTILES:
        lo, hi = (float(v) for v in np.percentile(finite, [lo_pct, hi_pct]))
        presets.append(WindowPreset(name, (lo + hi) / 2 + 0.5, max(hi - lo + 1.0, 1.0)))
    pixels.setflags(write=False)
    return CaseImage(study_uid, pixels, tuple(presets), (float(finite.min()), float(finite.max())))


def case_explanation(
    session_factory: SessionFactory,
    user: SignedInUser,
    study_uid: str,
    *,
    model: ModelProvider,
    artifacts_dir: Path,
    now: Callable[[], datetime],
) -> CaseExplanation:
    """The serving model's Grad-CAM for the study: the stored artifact, or computed once and stored.

    Parameters
    ----------
    model : callable
        Returns the shared model and its explanation lock; called only when no valid stored
        artifact exists, so a cached map never loads the model.
    artifacts_dir : Path
        Where new artifacts are written (content-addressed).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    BadInputError
        No serving model, or the study has no scored prediction (pending, outside intended use,
        unreadable): there is nothing to explain.
    """
    require(user, Permission.REVIEW_STUDIES)
    with session_factory() as session:
        instance = studies.list_instances(session, study_uid)[0]
        serving = model_versions.serving(session)
        if serving is None:
            raise BadInputError("no model version is serving: run `vigil init`")
        pred = predictions.prediction_for(session, instance.id, serving.id)
        if pred is None or pred.score is None:
            why = "it has no prediction yet" if pred is None else f"it was not scored ({pred.fallback})"
            raise BadInputError(f"no explanation for study {study_uid}: {why}")
        stored = explanations.list_explanations(session, pred.id)
    for rec in reversed(stored):
        heatmap = _load_artifact(rec) if rec.method == ExplainMethod.GRADCAM.value else None
        if heatmap is not None:
            return CaseExplanation(rec.id, heatmap, rec.artifact_sha256, serving.version, reused=True)
    loaded, lock = model()
    try:
        fresh = explain_study(
            session_factory,
            loaded,
            study_uid,
            method=ExplainMethod.GRADCAM,
            artifacts_dir=artifacts_dir,
            lock=lock,
            actor=user.username,
            now=now,
        )
    except OutsideIntendedUseError as exc:
        raise BadInputError(str(exc)) from exc
    return CaseExplanation(fresh.explanation_id, fresh.heatmap, fresh.sha256, fresh.model_version, reused=False)


def record_explanation_viewed(
    session_factory: SessionFactory,
    user: SignedInUser,
    study_uid: str,
    explanation: CaseExplanation,
    *,
    now: Callable[[], datetime],
) -> None:
    """Audit that ``user`` was shown ``explanation`` (the UI calls it once per case visit).

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
            subject=study_uid,
            payload={
                "explanation_id": explanation.explanation_id,
                "artifact_sha256": explanation.sha256,
                "model_version": explanation.model_version,
            },
            recorded_at=now().isoformat(),
        )


def render_view(
    image: CaseImage, heatmap: FloatArray | None, view: ViewSettings, *, signed: bool = False
) -> npt.NDArray[np.uint8]:
    """Window the image, blend the heat map over it when asked, and crop to the zoomed view.

    Parameters
    ----------
    image : CaseImage
    heatmap : ndarray of shape (rows, columns), or None
        In [0, 1] (Grad-CAM), or in [-1, 1] when ``signed`` (the SHAP methods). None (or
        ``view.overlay`` False) shows the greyscale image alone.
    view : ViewSettings
    signed : bool, default False
        Blend with a diverging colour map weighted by magnitude (``core.explain.overlay.blend``).

    Returns
    -------
    ndarray of shape (h, w, 3), uint8
        ``h = round(rows / zoom)``, ``w = round(columns / zoom)`` (at least 1); the browser scales
        it to the viewport.

    Raises
    ------
    BadInputError
        An undefined window, zoom below 1, an opacity outside [0, 1], an unknown colour map, or
        a map outside its range.
    """
    if view.zoom < 1.0:
        raise BadInputError(f"zoom must be at least 1, got {view.zoom}")
    if view.cmap not in COLORMAPS and view.cmap not in DIVERGING_COLORMAPS:
        raise BadInputError(f"unknown colour map {view.cmap!r}; choose one of {COLORMAPS + DIVERGING_COLORMAPS}")
    gray = np.nan_to_num(apply_window(image.pixels, center=view.center, width=view.width), nan=0.0)
    if view.overlay and heatmap is not None:
        rgb = blend(gray, heatmap, opacity=view.opacity, cmap=view.cmap, signed=signed)
    else:
        rgb = np.repeat(np.rint(gray * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    return _crop(rgb, view)


def _crop(rgb: npt.NDArray[np.uint8], view: ViewSettings) -> npt.NDArray[np.uint8]:
    rows, cols = rgb.shape[:2]
    h, w = max(1, round(rows / view.zoom)), max(1, round(cols / view.zoom))
    top = _start(view.pan_y, h, rows)
    left = _start(view.pan_x, w, cols)
    return np.ascontiguousarray(rgb[top : top + h, left : left + w])


def _start(centre: float, size: int, total: int) -> int:
    """First index of a window of ``size`` centred at fraction ``centre`` of ``total``, kept inside."""
    return min(max(round(min(max(centre, 0.0), 1.0) * total - size / 2), 0), total - size)


def _load_artifact(rec: ExplanationRecord) -> FloatArray | None:
    """The stored map when its file exists and its SHA-256 matches the record; None otherwise."""
    try:
        with np.load(rec.artifact_path) as data:
            heatmap = np.asarray(data["heatmap"], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return None
    if array_sha256(heatmap) != rec.artifact_sha256:
        return None  # edited or damaged: recompute instead of showing it
    heatmap.setflags(write=False)
    return heatmap


def _essentials(card: ModelCard) -> CardEssentials:
    data = card.training_data
    return CardEssentials(
        version=card.version,
        intended_use=card.intended_use.description,
        operating_threshold=card.operating_threshold,
        labels=tuple(card.labels),
        synthetic=bool(data.get("synthetic", False)),
        training_data=str(data.get("description", "")),
        created_at=card.created_at,
    )
