"""Model outputs: one row per (instance, model version), scored or skipped with a reason."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.store.batching import chunks
from core.store.tables import InstanceRow, PredictionRow, StudyRow

__all__ = [
    "PredictionIn",
    "PredictionRecord",
    "add_prediction",
    "add_predictions",
    "count_predictions",
    "list_predictions",
    "predicted_instances",
    "prediction_for",
]


@dataclass(frozen=True, slots=True)
class PredictionIn:
    """What inference produced for one instance.

    Attributes
    ----------
    instance_id, model_version_id : int
        Keys of the instance scored and the model version that scored it.
    input_sha256 : str or None
        Hex SHA-256 of the preprocessed input tensor's bytes; None when not scored.
    score : float or None
        Probability of the finding in [0, 1]; None when not scored (never NaN).
    label : bool or None
        ``score >= threshold``; None when not scored.
    threshold : float
        The model card's operating threshold.
    latency_ms : float or None
        Wall time of the forward pass for this instance's share of the batch, in ms.
    device : str
        Where it ran: ``"cpu"``, ``"cuda:0"``, ...
    peak_memory_bytes : int or None
        Peak accelerator (or process) memory during the batch, in bytes.
    fallback : str or None
        Why it was not scored (outside intended use), or which device fallback happened.
    """

    instance_id: int
    model_version_id: int
    input_sha256: str | None
    score: float | None
    label: bool | None
    threshold: float
    latency_ms: float | None
    device: str
    peak_memory_bytes: int | None = None
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """A stored prediction: :class:`PredictionIn`'s fields plus its key and creation time."""

    id: int
    instance_id: int
    model_version_id: int
    input_sha256: str | None
    score: float | None
    label: bool | None
    threshold: float
    latency_ms: float | None
    device: str
    peak_memory_bytes: int | None
    fallback: str | None
    created_at: datetime

    @property
    def scored(self) -> bool:
        """True when the model produced a score (not skipped)."""
        return self.score is not None

    @classmethod
    def from_row(cls, row: PredictionRow) -> PredictionRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def add_prediction(session: Session, prediction: PredictionIn, *, now: datetime) -> PredictionRecord:
    """Stage one prediction. The caller owns the transaction.

    Raises
    ------
    ValueError
        If ``score`` is NaN or outside [0, 1]: an undefined score is stored as None with a
        ``fallback`` reason, never as a number.
    sqlalchemy.exc.IntegrityError
        If this model version already has a prediction for this instance
        (check :func:`prediction_for` first), or a key does not exist.
    """
    return add_predictions(session, [(prediction, now)])[0]


def add_predictions(session: Session, rows: Sequence[tuple[PredictionIn, datetime]]) -> list[PredictionRecord]:
    """Stage predictions, each with its creation time, in one flush; as :func:`add_prediction` each.

    Every row is checked before any is staged. Returns the records in the order given.
    """
    for prediction, _ in rows:
        if prediction.score is not None and not (0.0 <= prediction.score <= 1.0):  # also catches NaN
            raise ValueError(f"score must be in [0, 1] or None, got {prediction.score!r}")
        if math.isnan(prediction.threshold):
            raise ValueError(f"threshold must be a number, got {prediction.threshold!r}")
    staged = [
        PredictionRow(created_at=now, **{f.name: getattr(prediction, f.name) for f in fields(prediction)})
        for prediction, now in rows
    ]
    session.add_all(staged)
    session.flush()
    return [PredictionRecord.from_row(row) for row in staged]


def predicted_instances(session: Session, instance_ids: Collection[int], model_version_id: int) -> set[int]:
    """Which of ``instance_ids`` already have a prediction from ``model_version_id``."""
    found = set[int]()
    for chunk in chunks(list(instance_ids)):
        query = select(PredictionRow.instance_id).where(
            PredictionRow.model_version_id == model_version_id, PredictionRow.instance_id.in_(chunk)
        )
        found.update(session.scalars(query))
    return found


def prediction_for(session: Session, instance_id: int, model_version_id: int) -> PredictionRecord | None:
    """Return the prediction ``model_version_id`` made for ``instance_id``, if any."""
    query = select(PredictionRow).where(
        PredictionRow.instance_id == instance_id, PredictionRow.model_version_id == model_version_id
    )
    row = session.scalars(query).one_or_none()
    return None if row is None else PredictionRecord.from_row(row)


def list_predictions(
    session: Session,
    *,
    model_version_id: int | None = None,
    site_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[PredictionRecord]:
    """Predictions in the order stored, optionally of one model version and/or one site."""
    query = select(PredictionRow).order_by(PredictionRow.id).limit(limit).offset(offset)
    if model_version_id is not None:
        query = query.where(PredictionRow.model_version_id == model_version_id)
    if site_id is not None:
        query = (
            query.join(InstanceRow, PredictionRow.instance_id == InstanceRow.id)
            .join(StudyRow, InstanceRow.study_id == StudyRow.id)
            .where(StudyRow.site_id == site_id)
        )
    return [PredictionRecord.from_row(row) for row in session.scalars(query)]


def count_predictions(session: Session, *, model_version_id: int | None = None, scored_only: bool = False) -> int:
    """Count stored predictions, optionally of one model version and/or only scored ones."""
    query = select(func.count()).select_from(PredictionRow)
    if model_version_id is not None:
        query = query.where(PredictionRow.model_version_id == model_version_id)
    if scored_only:
        query = query.where(PredictionRow.score.is_not(None))
    return session.scalars(query).one()
