"""What drift monitoring reads and caches: one row per study with its score and image features.

``monitored_studies`` is the read model the stream builders need (study header, the first
instance's score under one model version, its cached image features). ``image_feature`` rows
are a cache filled by ``core.services.monitoring`` for instances the model scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Select, and_, func, insert, select
from sqlalchemy.orm import Session

from core.store.tables import AuditEntryRow, ImageFeatureRow, InstanceRow, PredictionRow, SiteRow, StudyRow

__all__ = [
    "FeatureIn",
    "FeatureTask",
    "MonitoredStudy",
    "add_features",
    "data_version",
    "features_pending",
    "monitored_studies",
]


@dataclass(frozen=True, slots=True)
class MonitoredStudy:
    """One study as drift monitoring sees it.

    Attributes
    ----------
    study_date : date or None
        None when the header had no StudyDate (such studies cannot be placed on a time axis).
    score, label : float or None, bool or None
        The model version's output for the study's first instance; None when not scored.
    intensity_mean, intensity_spread, noise : float or None
        Cached image statistics; None when not computed (yet) or unreadable.
    embedding_b64 : str or None
        Cached penultimate-layer embedding, base64 of little-endian float32.
    """

    study_id: int
    study_uid: str
    site: str
    study_date: date | None
    vendor: str
    manufacturer_model_name: str
    protocol_name: str
    software_versions: str
    instance_id: int
    score: float | None
    label: bool | None
    intensity_mean: float | None
    intensity_spread: float | None
    noise: float | None
    embedding_b64: str | None


@dataclass(frozen=True, slots=True)
class FeatureTask:
    """An instance the model scored whose features are not cached yet."""

    instance_id: int
    study_uid: str
    path: str


@dataclass(frozen=True, slots=True)
class FeatureIn:
    """Features of one instance, or why there are none (``error``; the numbers are None then)."""

    instance_id: int
    model_version_id: int
    intensity_mean: float | None
    intensity_spread: float | None
    noise: float | None
    embedding_b64: str | None
    error: str | None = None


def _first_instances() -> Select[int, int]:
    return select(InstanceRow.study_id.label("study_id"), func.min(InstanceRow.id).label("instance_id")).group_by(
        InstanceRow.study_id
    )


def monitored_studies(session: Session, model_version_id: int, *, site_id: int | None = None) -> list[MonitoredStudy]:
    """Every study (of one site, or all) in date order, with its first instance's score and features.

    Studies without a StudyDate come last (``study_date`` None); ties keep storage order.
    """
    first = _first_instances().subquery()
    pred = and_(PredictionRow.instance_id == first.c.instance_id, PredictionRow.model_version_id == model_version_id)
    feat = and_(
        ImageFeatureRow.instance_id == first.c.instance_id, ImageFeatureRow.model_version_id == model_version_id
    )
    query = (
        select(
            StudyRow.id,
            StudyRow.study_uid,
            SiteRow.name,
            StudyRow.study_date,
            StudyRow.vendor,
            StudyRow.manufacturer_model_name,
            StudyRow.protocol_name,
            StudyRow.software_versions,
            first.c.instance_id,
            PredictionRow.score,
            PredictionRow.label,
            ImageFeatureRow.intensity_mean,
            ImageFeatureRow.intensity_spread,
            ImageFeatureRow.noise,
            ImageFeatureRow.embedding_b64,
        )
        .join(SiteRow, StudyRow.site_id == SiteRow.id)
        .join(first, first.c.study_id == StudyRow.id)
        .outerjoin(PredictionRow, pred)
        .outerjoin(ImageFeatureRow, feat)
        .order_by(StudyRow.study_date.is_(None), StudyRow.study_date, StudyRow.id)
    )
    if site_id is not None:
        query = query.where(StudyRow.site_id == site_id)
    return [MonitoredStudy(*row) for row in session.execute(query)]


def features_pending(
    session: Session, model_version_id: int, *, site_id: int | None = None, limit: int | None = None
) -> list[FeatureTask]:
    """First instances that ``model_version_id`` scored and that have no cached features yet."""
    first = _first_instances().subquery()
    has = (
        select(ImageFeatureRow.id)
        .where(ImageFeatureRow.instance_id == InstanceRow.id, ImageFeatureRow.model_version_id == model_version_id)
        .exists()
    )
    query = (
        select(InstanceRow.id, StudyRow.study_uid, InstanceRow.path)
        .join(first, first.c.instance_id == InstanceRow.id)
        .join(StudyRow, StudyRow.id == InstanceRow.study_id)
        .join(
            PredictionRow,
            and_(PredictionRow.instance_id == InstanceRow.id, PredictionRow.model_version_id == model_version_id),
        )
        .where(PredictionRow.score.is_not(None), ~has)
        .order_by(InstanceRow.id)
        .limit(limit)
    )
    if site_id is not None:
        query = query.where(StudyRow.site_id == site_id)
    return [FeatureTask(*row) for row in session.execute(query)]


def add_features(session: Session, features: Sequence[FeatureIn], *, now: datetime) -> int:
    """Stage many feature rows with one Core ``INSERT``; returns how many. The caller owns the transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        An instance already has features for that model version (check :func:`features_pending`).
    """
    if not features:
        return 0
    values = [
        {
            "instance_id": f.instance_id,
            "model_version_id": f.model_version_id,
            "intensity_mean": f.intensity_mean,
            "intensity_spread": f.intensity_spread,
            "noise": f.noise,
            "embedding_b64": f.embedding_b64,
            "error": f.error,
            "created_at": now,
        }
        for f in features
    ]
    session.execute(insert(ImageFeatureRow), values)
    return len(values)


def data_version(session: Session) -> str:
    """A token that changes whenever monitoring could see something new (two index look-ups).

    Every stored action writes an audit entry (studies, predictions, outcomes, feedback, alerts
    and their lifecycle); cached image features are the one thing that does not, so their
    newest id is part of the token.
    """
    seq = session.scalar(select(func.max(AuditEntryRow.seq)))
    feature = session.scalar(select(func.max(ImageFeatureRow.id)))
    return f"{seq if seq is not None else -1}:{feature if feature is not None else 0}"
