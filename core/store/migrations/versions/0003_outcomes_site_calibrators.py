"""Outcome store and site calibrators: labels by source, and per-site recalibration of a model version.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28

A branch beside ``0002`` (``migrate`` runs ``upgrade heads``); a merge revision joins them.
Frozen like ``0001``: written out in full rather than importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64


def upgrade() -> None:
    """Create ``outcome`` and ``site_calibrator`` with their checks, unique keys and indexes."""
    op.create_table(
        "outcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=CODE), nullable=False),
        sa.Column("label", sa.Boolean(), nullable=False),
        sa.Column("source_ref", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('adjudicated', 'emr', 'ground_truth')", name=op.f("ck_outcome_source_known")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_outcome_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome")),
        sa.UniqueConstraint("study_id", "source", "source_ref", name=op.f("uq_outcome_study_id_source_source_ref")),
    )
    op.create_index(op.f("ix_outcome_study_id"), "outcome", ["study_id"], unique=False)
    op.create_table(
        "site_calibrator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=CODE), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("n_cases", sa.Integer(), nullable=False),
        sa.Column("n_folds", sa.Integer(), nullable=False),
        sa.Column("ece_before", sa.Float(), nullable=False),
        sa.Column("ece_after", sa.Float(), nullable=False),
        sa.Column("brier_before", sa.Float(), nullable=False),
        sa.Column("brier_after", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=CODE), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("method IN ('platt', 'isotonic')", name=op.f("ck_site_calibrator_method_known")),
        sa.CheckConstraint(
            "status IN ('proposed', 'approved', 'retired')", name=op.f("ck_site_calibrator_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_version.id"], name=op.f("fk_site_calibrator_model_version_id_model_version")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_site_calibrator_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_calibrator")),
        sa.UniqueConstraint(
            "model_version_id", "site_id", "revision", name=op.f("uq_site_calibrator_model_version_id_site_id_revision")
        ),
    )
    op.create_index(op.f("ix_site_calibrator_model_version_id"), "site_calibrator", ["model_version_id"], unique=False)
    op.create_index(op.f("ix_site_calibrator_site_id"), "site_calibrator", ["site_id"], unique=False)


def downgrade() -> None:
    """Drop ``site_calibrator`` and ``outcome`` with their indexes."""
    op.drop_index(op.f("ix_site_calibrator_site_id"), table_name="site_calibrator")
    op.drop_index(op.f("ix_site_calibrator_model_version_id"), table_name="site_calibrator")
    op.drop_table("site_calibrator")
    op.drop_index(op.f("ix_outcome_study_id"), table_name="outcome")
    op.drop_table("outcome")
