"""The relational schema: typed SQLAlchemy 2.0 declarative rows.

Rows never leave ``core.store``; the store modules turn them into frozen records. The
migration ``0001`` creates exactly this schema, and a test compares the two.

Free-text DICOM attributes are ``Text`` (real headers overrun their VR limits, and a
``VARCHAR(n)`` that SQLite ignores would fail on PostgreSQL); identifiers and hashes have
their true fixed lengths. Absent DICOM text is ``""``, absent numbers are NULL, as in
``core.imaging.image.DicomMeta``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "SignInThrottleRow",
    "UTCDateTime",
    "SiteRow",
    "StudyRow",
    "InstanceRow",
    "ModelVersionRow",
    "PredictionRow",
    "ExplanationRow",
    "UserRow",
    "AuditEntryRow",
    "FeedbackRow",
    "OutcomeRow",
    "SiteCalibratorRow",
    "ImageFeatureRow",
    "DriftAlertRow",
    "DriftIncidentRow",
    "ExplainReportRow",
    "EmrIngestRunRow",
    "EmrEvidenceRow",
    "EmrPatientRow",
    "EmrUnmappedCodeRow",
    "EmrPullMarkRow",
    "PacsSeenRow",
    "FlSiteKeyRow",
    "FlRunRow",
    "FlUpdateRow",
    "SignatureRequestRow",
]

# Named constraints, so later migrations (batch mode on SQLite included) can address them.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID: Final = 64  # DICOM UI value representation, at most 64 characters
SHA256_HEX: Final = 64
CODE: Final = 64  # short coded strings: modality, view, vendor, device, role, method


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every database.

    Refuses naive datetimes on the way in. SQLite stores no zone, so values are converted
    to UTC before writing and marked UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC; refuse a naive one."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()!r}: store only aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SiteRow(Base):
    """A hospital site; ``is_benchmark`` marks the retrospective benchmark site."""

    __tablename__ = "site"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    is_benchmark: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StudyRow(Base):
    """One imaging study (StudyInstanceUID) with its harmonized header."""

    __tablename__ = "study"
    # A case's prior studies are looked up by patient within a site (core.services.priors, migration 0020).
    __table_args__ = (Index("ix_study_patient_id_site_id", "patient_id", "site_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(UID), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    patient_id: Mapped[str] = mapped_column(Text)
    accession_number: Mapped[str] = mapped_column(Text)
    study_date: Mapped[date | None] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(CODE))
    body_part: Mapped[str] = mapped_column(Text)
    view_position: Mapped[str] = mapped_column(String(CODE))
    manufacturer_raw: Mapped[str] = mapped_column(Text)
    vendor: Mapped[str] = mapped_column(String(CODE))
    vendor_mapped: Mapped[bool]
    manufacturer_model_name: Mapped[str] = mapped_column(Text)
    station_name: Mapped[str] = mapped_column(Text)
    institution_name: Mapped[str] = mapped_column(Text)
    software_versions: Mapped[str] = mapped_column(Text)
    protocol_name: Mapped[str] = mapped_column(Text)
    patient_age: Mapped[str] = mapped_column(String(CODE))
    patient_sex: Mapped[str] = mapped_column(String(CODE))
    kvp: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InstanceRow(Base):
    """One DICOM file (SOP instance) of a study; the same UID with other bytes is another row."""

    __tablename__ = "instance"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID))
    series_uid: Mapped[str] = mapped_column(String(UID))
    sop_class_uid: Mapped[str] = mapped_column(String(UID))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    rows: Mapped[int]
    columns: Mapped[int]
    pixel_spacing_row: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_col: Mapped[float | None] = mapped_column(Float)
    photometric: Mapped[str] = mapped_column(String(CODE))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UID))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The attribute the spacing above came from ("PixelSpacing" or "ImagerPixelSpacing", migration
    # 0018): a length measured with ImagerPixelSpacing is at the detector, not in the patient.
    spacing_source: Mapped[str | None] = mapped_column(String(CODE))


class ModelVersionRow(Base):
    """A registered model version; its card is immutable canonical JSON.

    ``content_sha256`` is the content address (``core.registry.address``). Migration ``0011``'s
    triggers refuse an UPDATE of any column but ``is_serving`` and every DELETE; ``is_serving``
    moves only together with a :class:`DeploymentRow`.
    """

    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(128), unique=True)
    card_json: Mapped[str] = mapped_column(Text)
    weights_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    is_serving: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    content_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX), unique=True, index=True)


class ModelTagRow(Base):
    """A tag added to a model version (a clearance number, "pilot"); never changed or removed."""

    __tablename__ = "model_tag"
    __table_args__ = (UniqueConstraint("model_version_id", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    tag: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HoldoutStudyRow(Base):
    """A study in the locked hold-out: evaluated by the change-control gate, never trained on."""

    __tablename__ = "holdout_study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    lock_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    actor: Mapped[str] = mapped_column(String(128))
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChangeValidationRow(Base):
    """One change-control gate run: a challenger against the champion under a plan, on the hold-out."""

    __tablename__ = "change_validation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    challenger_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    champion_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    plan_id: Mapped[str] = mapped_column(String(128))
    plan_version: Mapped[str] = mapped_column(String(CODE))
    plan_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    holdout_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    passed: Mapped[bool]
    significant_change: Mapped[bool]
    report_json: Mapped[str] = mapped_column(Text)
    report_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeploymentRow(Base):
    """One switch of the serving version (initial, promote, rollback), signed when it is a promotion."""

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    action: Mapped[str] = mapped_column(String(CODE))
    slot: Mapped[str] = mapped_column(String(CODE))
    validation_id: Mapped[int | None] = mapped_column(ForeignKey("change_validation.id"))
    switched_by: Mapped[str] = mapped_column(String(128))
    switched_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    signer: Mapped[str | None] = mapped_column(String(128))
    signature_meaning: Mapped[str | None] = mapped_column(Text)
    signature_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    reason: Mapped[str] = mapped_column(Text)
    # The site this switch applies to; NULL for the fleet-wide switch (migration ``0016``).
    site: Mapped[str | None] = mapped_column(String(128), index=True)


class PredictionRow(Base):
    """One model version's output for one instance; unscored instances carry ``fallback``."""

    __tablename__ = "prediction"
    __table_args__ = (
        UniqueConstraint("instance_id", "model_version_id"),
        # The worklist pages from these in its two score orders (core.store.reviews), so a page
        # reads one page of index entries whatever the store's size (migration 0019).
        Index("ix_prediction_worklist_priority", "model_version_id", "label", "score"),
        Index("ix_prediction_worklist_score", "model_version_id", "score"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    input_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[bool | None]
    threshold: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(CODE))
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    fallback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExplanationRow(Base):
    """An explanation artifact (a float32 ``.npy`` map) for one prediction."""

    __tablename__ = "explanation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("prediction.id"), index=True)
    method: Mapped[str] = mapped_column(String(CODE))
    params_json: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    artifact_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserRow(Base):
    """A person who signs in; ``password_hash`` is an Argon2 hash, never the password."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(CODE))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The printed name of an electronic signature (migration ``0016``; backfilled with username).
    full_name: Mapped[str] = mapped_column(String(128))


class AuditEntryRow(Base):
    """One audit ledger entry, stored exactly as hashed.

    ``recorded_at`` is the hashed ISO-8601 text, not a ``DateTime``, so that no database
    round trip can change a byte of it. ``seq`` and ``entry_hash`` are unique so that two
    concurrent appends after the same entry conflict instead of forking the chain. Rows are
    never updated or deleted: migration ``0010``'s triggers refuse both at the database.
    """

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recorded_at: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(CODE))
    subject: Mapped[str] = mapped_column(Text)
    payload_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    entry_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)


class FeedbackRow(Base):
    """One reader's feedback on one study's prediction (migration ``0002``).

    Rows are never updated: a correction is a new row whose ``supersedes_id`` names the row it
    replaces, and ``supersedes_id`` is unique so a row is corrected at most once (the history is
    a chain, never a fork). ``idempotency_key`` is unique so a double-submitted form writes one
    row. ``study_id`` repeats what ``prediction_id`` implies so that worklists can ask "reviewed?"
    without joining through instances.
    """

    __tablename__ = "clinician_feedback"
    __table_args__ = (
        CheckConstraint("confidence >= 1 AND confidence <= 5", name="confidence_1_to_5"),
        CheckConstraint("finding IN ('present', 'absent', 'indeterminate')", name="finding_known"),
        CheckConstraint(
            "explanation_rating IS NULL OR explanation_rating IN ('focused', 'partly', 'misleading')",
            name="explanation_rating_known",
        ),
        CheckConstraint("time_on_case_ms >= 0", name="time_on_case_not_negative"),
        # The worklist asks "has this reader read this study?" once per study (migration 0015):
        # without it SQLite walks every row of the reader's on each study, O(studies x reads).
        Index("ix_clinician_feedback_study_id_user_id", "study_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("prediction.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    reader_role: Mapped[str] = mapped_column(String(CODE))
    agrees: Mapped[bool]
    finding: Mapped[str] = mapped_column(String(CODE))
    confidence: Mapped[int] = mapped_column(Integer)
    explanation_rating: Mapped[str | None] = mapped_column(String(CODE))
    comment: Mapped[str] = mapped_column(Text)
    time_on_case_ms: Mapped[int] = mapped_column(Integer)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("clinician_feedback.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- Outcomes and site calibrators (issue 5, pilot drift; migration 0003) ---------------------


class OutcomeRow(Base):
    """One label for one study from one source (migration ``0003``); rows are never updated.

    ``source`` is ``adjudicated``, ``emr`` or ``ground_truth`` (a reference manifest, marked as
    such); reader feedback stays in ``clinician_feedback``. ``source_ref`` names what the label
    came from (an adjudication, a FHIR resource, ``manifest:<sha256>``) and is unique per study
    and source, so loading the same source twice writes nothing new.
    """

    __tablename__ = "outcome"
    __table_args__ = (
        CheckConstraint("source IN ('adjudicated', 'emr', 'ground_truth')", name="source_known"),
        UniqueConstraint("study_id", "source", "source_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    source: Mapped[str] = mapped_column(String(CODE))
    label: Mapped[bool]
    source_ref: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(128))
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SiteCalibratorRow(Base):
    """A recalibration of one model version's probabilities at one site (migration ``0003``).

    ``revision`` counts calibrators per (model version, site). Scores are recalibrated only by
    an ``approved`` calibrator; approving one retires the one approved before it.
    """

    __tablename__ = "site_calibrator"
    __table_args__ = (
        CheckConstraint("method IN ('platt', 'isotonic')", name="method_known"),
        CheckConstraint("status IN ('proposed', 'approved', 'retired')", name="status_known"),
        UniqueConstraint("model_version_id", "site_id", "revision"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(CODE))
    params_json: Mapped[str] = mapped_column(Text)
    n_cases: Mapped[int] = mapped_column(Integer)
    n_folds: Mapped[int] = mapped_column(Integer)
    ece_before: Mapped[float] = mapped_column(Float)
    ece_after: Mapped[float] = mapped_column(Float)
    brier_before: Mapped[float] = mapped_column(Float)
    brier_after: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(CODE))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(128))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- Drift monitoring (issue 6; migration 0004; incidents, issue 21: migration 0007) ------------


class ImageFeatureRow(Base):
    """Input statistics and the penultimate-layer embedding of one instance under one model version.

    A cache that drift monitoring fills once per instance (migration ``0004``): intensity mean and
    spread and a noise estimate of the preprocessed model input, and the embedding as base64 of
    little-endian float32. ``error`` says why an instance has no features (its pixels no longer
    decode); the numbers are NULL then.
    """

    __tablename__ = "image_feature"
    __table_args__ = (UniqueConstraint("instance_id", "model_version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    intensity_mean: Mapped[float | None] = mapped_column(Float)
    intensity_spread: Mapped[float | None] = mapped_column(Float)
    noise: Mapped[float | None] = mapped_column(Float)
    embedding_b64: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DriftAlertRow(Base):
    """One drift alert: an alarm on one stream of one site, or a metadata novelty (migration ``0004``).

    ``dedupe_key`` is unique, so the same alarm found by two monitoring runs is stored once. The
    status moves ``open`` -> ``acknowledged`` -> ``resolved`` (or ``open`` -> ``resolved``), each
    step with who, when and why; rows are updated only along that path.
    """

    __tablename__ = "drift_alert"
    __table_args__ = (CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    stream: Mapped[str] = mapped_column(String(CODE))
    detector: Mapped[str] = mapped_column(String(CODE))
    window: Mapped[str] = mapped_column(String(CODE))
    alarm_date: Mapped[date] = mapped_column(Date)
    change_date: Mapped[date | None] = mapped_column(Date)
    statistic: Mapped[float | None] = mapped_column(Float)
    control_limit: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    details_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(CODE))
    raised_by: Mapped[str] = mapped_column(String(128))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledge_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_note: Mapped[str | None] = mapped_column(Text)
    #: The incident the alert is evidence of (migration ``0007``); NULL for alerts raised before
    #: incidents existed that no monitoring run has grouped since (see ``core.services.monitoring_alerts``).
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("drift_incident.id"), index=True)


class DriftIncidentRow(Base):
    """One drift incident: a site's alerts of one family that started within the incident window (``0007``).

    ``first_alarm_date`` and ``change_date`` are the earliest alarm date and the earliest estimated
    change date among its alerts, kept up to date as alerts join. The status moves like an
    alert's, ``open`` -> ``acknowledged`` -> ``resolved`` (or ``open`` -> ``resolved``), each step
    with who, when and why; a resolved incident is never joined again.
    """

    __tablename__ = "drift_incident"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status_known"),
        CheckConstraint("family IN ('score', 'image', 'label', 'metadata')", name="family_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    family: Mapped[str] = mapped_column(String(CODE))
    first_alarm_date: Mapped[date] = mapped_column(Date)
    change_date: Mapped[date | None] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(CODE))
    opened_by: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledge_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_note: Mapped[str | None] = mapped_column(Text)


# --- Explanation faithfulness reports (issue 4; migration 0005) --------------------------------


class ExplainReportRow(Base):
    """A faithfulness and sanity report of one model version's explanation methods (migration ``0005``).

    ``report_json`` is the canonical JSON of :class:`core.explain.report.TrustReport` and
    ``report_sha256`` its SHA-256 (what the audit entry carries). Rows are never updated: a new
    computation is a new row, and readers take the latest one of a version.
    """

    __tablename__ = "explain_report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    report_json: Mapped[str] = mapped_column(Text)
    report_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- EMR outcomes from FHIR (issue 13; migration 0008) -----------------------------------------
#
# Nothing here holds a direct identifier: patients and accession numbers are keyed pseudonyms
# (HMAC with the site secret), resource ids are keyed hashes, and text is de-identified before it
# reaches the store (``core.fhir``).


class EmrIngestRunRow(Base):
    """One FHIR payload ingested (a Bundle or an NDJSON file) and what became of its resources."""

    __tablename__ = "emr_ingest_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_name: Mapped[str] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    kind: Mapped[str] = mapped_column(String(CODE))
    mapping_version: Mapped[str] = mapped_column(String(CODE))
    n_entries: Mapped[int] = mapped_column(Integer)
    n_accepted: Mapped[int] = mapped_column(Integer)
    n_rejected: Mapped[int] = mapped_column(Integer)
    n_unmapped: Mapped[int] = mapped_column(Integer)
    n_evidence: Mapped[int] = mapped_column(Integer)
    n_linked: Mapped[int] = mapped_column(Integer)
    n_outcomes: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmrEvidenceRow(Base):
    """One version of one FHIR resource that says something about the finding (migration ``0008``).

    Unique per ``(ref, version)``: the same resource version ingested twice is stored once, a new
    version is new evidence. ``study_id`` and ``link_method`` are set once, when the evidence is
    linked to a study (at its own ingest or a later one); they are never changed after that.
    """

    __tablename__ = "emr_evidence"
    __table_args__ = (
        UniqueConstraint("ref", "version"),
        CheckConstraint("outcome IN ('finding_confirmed', 'finding_excluded', 'indeterminate')", name="outcome_known"),
        CheckConstraint(
            "evidence_type IN ('histopathology', 'follow_up_imaging', 'clinical_diagnosis', 'note_mention')",
            name="evidence_type_known",
        ),
        CheckConstraint("link_method IN ('study_uid', 'accession', 'patient_date', '')", name="link_method_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(CODE))
    patient: Mapped[str | None] = mapped_column(String(CODE), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(UID))
    accession: Mapped[str | None] = mapped_column(String(CODE))
    effective: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(CODE))
    evidence_type: Mapped[str] = mapped_column(String(CODE))
    strength: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(255))
    display: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    ingest_run_id: Mapped[int] = mapped_column(ForeignKey("emr_ingest_run.id"), index=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id"), index=True)
    link_method: Mapped[str] = mapped_column(String(CODE))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmrPatientRow(Base):
    """A patient known from the EMR, by keyed pseudonym only: sex and an age band, nothing else."""

    __tablename__ = "emr_patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(CODE), unique=True)
    gender: Mapped[str] = mapped_column(String(CODE))
    age_band: Mapped[str] = mapped_column(String(CODE))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmrUnmappedCodeRow(Base):
    """A code the outcome mapping does not know, counted for an admin to map (nothing is guessed)."""

    __tablename__ = "emr_unmapped_code"
    __table_args__ = (UniqueConstraint("system", "code", "resource_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    system: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(255))
    resource_type: Mapped[str] = mapped_column(String(CODE))
    count: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class EmrPullMarkRow(Base):
    """How far a pull from one FHIR server has read one resource type (``meta.lastUpdated`` high-water mark)."""

    __tablename__ = "emr_pull_mark"
    __table_args__ = (UniqueConstraint("server", "resource_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server: Mapped[str] = mapped_column(String(512))
    resource_type: Mapped[str] = mapped_column(String(CODE))
    mark: Mapped[str] = mapped_column(String(CODE))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditCheckpointRow(Base):
    """A signed Merkle checkpoint of the audit ledger (migration ``0009``), as signed.

    ``timestamp`` is the signed ISO-8601 text, not a ``DateTime``, for the same reason as
    ``AuditEntryRow.recorded_at``: a round trip must not change a byte of what was signed.
    ``tree_size`` is unique: one checkpoint per ledger size.
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer, unique=True)
    root_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    timestamp: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(CODE))
    signature: Mapped[str] = mapped_column(String(128))


class SignInThrottleRow(Base):
    """Consecutive failed sign-ins of one key (``user:NAME`` or ``address:IP``) and its current lock."""

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refused: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PacsSeenRow(Base):
    """One instance a PACS pull has dealt with (migration ``0013``): never retrieved from that endpoint again.

    ``outcome`` is ``stored`` (a new instance), ``duplicate`` (already in the store) or
    ``rejected`` (the gate refused it, or the PACS could not serve it; ``reason`` says why).
    """

    __tablename__ = "pacs_seen"
    __table_args__ = (UniqueConstraint("endpoint", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(512))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    study_uid: Mapped[str] = mapped_column(String(UID), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID))
    outcome: Mapped[str] = mapped_column(String(CODE))
    reason: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FlSiteKeyRow(Base):
    """A site's registered Ed25519 key for signing federated updates (migration ``0014``); one per site."""

    __tablename__ = "fl_site_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FlRunRow(Base):
    """A federated training run (migration ``0014``): who took part, how, and how it ended.

    ``sites`` and ``config`` are canonical JSON (the site list; the run's plan without the keys).
    ``status`` is ``finished`` or ``failed``; ``model_version`` names the registered aggregate.
    """

    __tablename__ = "fl_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_key: Mapped[str] = mapped_column(String(CODE), unique=True)
    parent_version: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(128))
    sites: Mapped[str] = mapped_column(Text)
    rounds: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(CODE))
    status: Mapped[str] = mapped_column(String(CODE))
    reason: Mapped[str] = mapped_column(Text)
    config: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FlUpdateRow(Base):
    """One site's update in one round of a federated run (migration ``0014``), accepted or refused.

    ``metrics`` is canonical JSON of aggregates only (examples, losses, validation AUC, update norm).
    """

    __tablename__ = "fl_update"
    __table_args__ = (UniqueConstraint("run_id", "round", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("fl_run.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(128))
    accepted: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)
    update_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    aggregate_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    metrics: Mapped[str] = mapped_column(Text)


class FlNodeRow(Base):
    """A site's federated node as last seen (migration ``0017``): its reported profile, heartbeat, verdict.

    One row per site, overwritten at each check-in (a reply in a run): ``last_seen_at`` is the
    heartbeat; ``compatible`` and ``reason`` the server's last verdict on the node's profile.
    """

    __tablename__ = "fl_node"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(128), unique=True)
    vigil_version: Mapped[str] = mapped_column(String(CODE))
    flwr_version: Mapped[str] = mapped_column(String(CODE))
    arch_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    preprocessing_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    compatible: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)
    last_run_key: Mapped[str] = mapped_column(String(CODE))
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FlLaunchRow(Base):
    """A federated run while it runs (migration ``0017``): its launcher process and its progress so far.

    ``request`` is canonical JSON of what was asked; ``events`` the ServerApp's log so far (a JSON
    list), rewritten at each event; ``state`` is ``running`` until the launcher records the run
    (then ``ended``, and ``fl_run`` holds the outcome).
    """

    __tablename__ = "fl_launch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_key: Mapped[str] = mapped_column(String(CODE), unique=True)
    pid: Mapped[int] = mapped_column(Integer)
    launched_by: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(CODE), index=True)
    reason: Mapped[str] = mapped_column(Text)
    request: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SignatureRequestRow(Base):
    """A signature waiting for its signer's re-authentication at the identity provider (migration ``0021``).

    One per signer: a new request replaces the old. ``subject`` is what will be signed (a model
    version), ``scope`` canonical JSON of the rest of the act (the sites), ``meaning`` the
    signature's meaning. The row is deleted in the transaction that completes the signature.
    """

    __tablename__ = "signature_request"

    signer: Mapped[str] = mapped_column(String(64), primary_key=True)
    meaning: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
