"""Initial schema: sites, studies, instances, model versions, predictions, explanations, users, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Frozen: written out in full rather than importing ``core.store.tables``, so later changes to
the models never change what this revision does. ``tests/core/store`` checks that the
migrated schema equals the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

UID = 64
SHA = 64
CODE = 64


def _created_at() -> sa.Column[sa.DateTime]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Create every table of the first release."""
    _create_site_study_instance()
    _create_models_and_outputs()
    _create_users_and_audit()


def downgrade() -> None:
    """Drop every table, dependents first."""
    op.drop_index(op.f("ix_explanation_prediction_id"), table_name="explanation")
    op.drop_table("explanation")
    op.drop_index(op.f("ix_prediction_model_version_id"), table_name="prediction")
    op.drop_table("prediction")
    op.drop_index(op.f("ix_instance_study_id"), table_name="instance")
    op.drop_table("instance")
    op.drop_index(op.f("ix_study_site_id"), table_name="study")
    op.drop_table("study")
    op.drop_table("site")
    op.drop_table("model_version")
    op.drop_table("audit_entry")
    op.drop_table("app_user")


def _create_site_study_instance() -> None:
    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("is_benchmark", sa.Boolean(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("name", name=op.f("uq_site_name")),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=UID), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("accession_number", sa.Text(), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("modality", sa.String(length=CODE), nullable=False),
        sa.Column("body_part", sa.Text(), nullable=False),
        sa.Column("view_position", sa.String(length=CODE), nullable=False),
        sa.Column("manufacturer_raw", sa.Text(), nullable=False),
        sa.Column("vendor", sa.String(length=CODE), nullable=False),
        sa.Column("vendor_mapped", sa.Boolean(), nullable=False),
        sa.Column("manufacturer_model_name", sa.Text(), nullable=False),
        sa.Column("station_name", sa.Text(), nullable=False),
        sa.Column("institution_name", sa.Text(), nullable=False),
        sa.Column("software_versions", sa.Text(), nullable=False),
        sa.Column("protocol_name", sa.Text(), nullable=False),
        sa.Column("patient_age", sa.String(length=CODE), nullable=False),
        sa.Column("patient_sex", sa.String(length=CODE), nullable=False),
        sa.Column("kvp", sa.Float(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_study_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_study_study_uid")),
    )
    op.create_index(op.f("ix_study_site_id"), "study", ["site_id"], unique=False)
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=UID), nullable=False),
        sa.Column("series_uid", sa.String(length=UID), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=UID), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=SHA), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("pixel_spacing_row", sa.Float(), nullable=True),
        sa.Column("pixel_spacing_col", sa.Float(), nullable=True),
        sa.Column("photometric", sa.String(length=CODE), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=UID), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_instance_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
        sa.UniqueConstraint("sop_instance_uid", "sha256", name=op.f("uq_instance_sop_instance_uid_sha256")),
    )
    op.create_index(op.f("ix_instance_study_id"), "instance", ["study_id"], unique=False)


def _create_models_and_outputs() -> None:
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("card_json", sa.Text(), nullable=False),
        sa.Column("weights_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("is_serving", sa.Boolean(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_version")),
        sa.UniqueConstraint("version", name=op.f("uq_model_version_version")),
    )
    op.create_table(
        "prediction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("input_sha256", sa.String(length=SHA), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.Boolean(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("device", sa.String(length=CODE), nullable=False),
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("fallback", sa.Text(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"], name=op.f("fk_prediction_instance_id_instance")),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_version.id"], name=op.f("fk_prediction_model_version_id_model_version")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction")),
        sa.UniqueConstraint(
            "instance_id", "model_version_id", name=op.f("uq_prediction_instance_id_model_version_id")
        ),
    )
    op.create_index(op.f("ix_prediction_model_version_id"), "prediction", ["model_version_id"], unique=False)
    op.create_table(
        "explanation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=CODE), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["prediction_id"], ["prediction.id"], name=op.f("fk_explanation_prediction_id_prediction")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explanation")),
    )
    op.create_index(op.f("ix_explanation_prediction_id"), "explanation", ["prediction_id"], unique=False)


def _create_users_and_audit() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=CODE), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=CODE), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=SHA), nullable=False),
        sa.Column("entry_hash", sa.String(length=SHA), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entry")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_entry_entry_hash")),
    )
