"""Drift monitoring: cached image features per instance and model version, and drift alerts.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28

A branch beside ``0002`` and ``0003`` (``migrate`` runs ``upgrade heads``); a merge revision joins
them. Frozen like ``0001``: written out in full rather than importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64


def upgrade() -> None:
    """Create ``image_feature`` and ``drift_alert`` with their checks, unique keys and indexes."""
    op.create_table(
        "image_feature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("intensity_mean", sa.Float(), nullable=True),
        sa.Column("intensity_spread", sa.Float(), nullable=True),
        sa.Column("noise", sa.Float(), nullable=True),
        sa.Column("embedding_b64", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"], name=op.f("fk_image_feature_instance_id_instance")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_image_feature_model_version_id_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_feature")),
        sa.UniqueConstraint(
            "instance_id", "model_version_id", name=op.f("uq_image_feature_instance_id_model_version_id")
        ),
    )
    op.create_index(op.f("ix_image_feature_model_version_id"), "image_feature", ["model_version_id"], unique=False)
    op.create_table(
        "drift_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=CODE), nullable=False),
        sa.Column("detector", sa.String(length=CODE), nullable=False),
        sa.Column("window", sa.String(length=CODE), nullable=False),
        sa.Column("alarm_date", sa.Date(), nullable=False),
        sa.Column("change_date", sa.Date(), nullable=True),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("control_limit", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=CODE), nullable=False),
        sa.Column("raised_by", sa.String(length=128), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledge_note", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_drift_alert_status_known")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_drift_alert_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_alert")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_drift_alert_dedupe_key")),
    )
    op.create_index(op.f("ix_drift_alert_site_id"), "drift_alert", ["site_id"], unique=False)


def downgrade() -> None:
    """Drop ``drift_alert`` and ``image_feature`` with their indexes."""
    op.drop_index(op.f("ix_drift_alert_site_id"), table_name="drift_alert")
    op.drop_table("drift_alert")
    op.drop_index(op.f("ix_image_feature_model_version_id"), table_name="image_feature")
    op.drop_table("image_feature")
