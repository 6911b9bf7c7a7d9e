"""One case on the review screen: the study, its prediction, the image, the Grad-CAM overlay.

The heavy steps run once per study, never per widget change: :func:`load_case_image` reads and
decodes the DICOM file, and ``core.services.explanation.explain_case`` reuses a stored
explanation artifact when one exists (checked against its SHA-256) and computes and stores one
otherwise. Windowing, zoom and the overlay run in the browser's viewer (``ui.components.dicom_viewer``).

The lesion mask of the synthetic cohort is ground truth for evaluation: nothing here reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final, TypeVar

import numpy as np

from core.errors import BadInputError, DicomRejectedError, PixelsUnreadableError
from core.explain.overlay import COLORMAPS, DIVERGING_COLORMAPS
from core.imaging.dicom import read_dicom
from core.imaging.spacing import MeasurementSpacing
from core.imaging.window import default_window
from core.models.card import ModelCard
from core.services import feedback
from core.services.feedback import FeedbackForm, FeedbackRecord, FeedbackSaved
from core.services.permissions import Permission, SignedInUser, require
from core.store import deployments, predictions, studies
from core.store.engine import SessionFactory
from core.types import FloatArray

__all__ = [
    "COLORMAPS",
    "DIVERGING_COLORMAPS",
    "CardEssentials",
    "CaseImage",
    "CaseInfo",
    "CasePrediction",
    "CaseStudy",
    "WindowPreset",
    "load_case_image",
    "open_case",
    "record_verdict",
]

#: (name, low percentile, high percentile) of the pixel values each preset window spans.
_PRESET_PERCENTILES: Final = (
    ("Full range", 0.5, 99.5),
    ("Lung (dark detail)", 1.0, 60.0),
    ("Mediastinum / bone (bright detail)", 40.0, 99.8),
)


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
    spacing: MeasurementSpacing | None  # what lengths are measured with, and from which attribute


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


def open_case(session_factory: SessionFactory, user: SignedInUser, study_uid: str) -> CaseInfo:
    """Load a case's study header, the prediction of the version serving its site, and that card's essentials.

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
        serving = deployments.version_serving(session, study.site_name)
        pred = None if serving is None else predictions.prediction_for(session, instance.id, serving.id)
    spacing = (
        MeasurementSpacing(instance.pixel_spacing_row, instance.pixel_spacing_col, instance.spacing_source)
        if instance.pixel_spacing_row is not None
        and instance.pixel_spacing_col is not None
        and instance.spacing_source is not None
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
        spacing=spacing,
    )
    card = None if serving is None else _essentials(ModelCard.from_dict(json.loads(serving.card_json)))
    prediction = (
        None
        if pred is None or serving is None
        else CasePrediction(pred.id, serving.version, pred.score, pred.label, pred.threshold, pred.fallback)
    )
    return CaseInfo(study=case_study, prediction=prediction, card=card)


H = TypeVar("H")


def record_verdict(
    session_factory: SessionFactory,
    user: SignedInUser,
    form: FeedbackForm,
    *,
    now: Callable[[], datetime],
    after_commit: Callable[[FeedbackRecord], H],
) -> tuple[FeedbackSaved, H | None]:
    """Record a reader's verdict, then run ``after_commit`` on the committed row.

    The verdict commits first, in its own transaction with its audit entry
    (:func:`core.services.feedback.record_feedback`); ``after_commit`` (the PACS auto-push,
    ``core.services.pacs_auto_push.push_after_verdict``) runs afterwards, so nothing it does can
    delay, fail or undo the verdict. It runs once per verdict: not for a repeated submission of
    the same form.

    Returns
    -------
    tuple of (FeedbackSaved, H or None)
        The stored verdict, and what ``after_commit`` returned (None when it did not run).

    Raises
    ------
    PermissionDeniedError, BadInputError, FeedbackConflictError, UnknownStudyError, UnknownUserError
        As ``record_feedback``; then nothing is stored and ``after_commit`` does not run.
    """
    saved = feedback.record_feedback(session_factory, user, form, now=now)
    return saved, (after_commit(saved.record) if saved.created else None)


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
