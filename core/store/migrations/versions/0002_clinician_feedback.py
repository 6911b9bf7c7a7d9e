"""Clinician feedback: one row per reader's verdict on a study's prediction; corrections append.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Frozen like ``0001``: written out in full rather than importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64


def upgrade() -> None:
    """Create ``clinician_feedback`` with its checks, unique keys and indexes."""
    op.create_table(
        "clinician_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reader_role", sa.String(length=CODE), nullable=False),
        sa.Column("agrees", sa.Boolean(), nullable=False),
        sa.Column("finding", sa.String(length=CODE), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("explanation_rating", sa.String(length=CODE), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("time_on_case_ms", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("confidence >= 1 AND confidence <= 5", name=op.f("ck_clinician_feedback_confidence_1_to_5")),
        sa.CheckConstraint(
            "finding IN ('present', 'absent', 'indeterminate')", name=op.f("ck_clinician_feedback_finding_known")
        ),
        sa.CheckConstraint(
            "explanation_rating IS NULL OR explanation_rating IN ('focused', 'partly', 'misleading')",
            name=op.f("ck_clinician_feedback_explanation_rating_known"),
        ),
        sa.CheckConstraint("time_on_case_ms >= 0", name=op.f("ck_clinician_feedback_time_on_case_not_negative")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_clinician_feedback_study_id_study")),
        sa.ForeignKeyConstraint(
            ["prediction_id"], ["prediction.id"], name=op.f("fk_clinician_feedback_prediction_id_prediction")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name=op.f("fk_clinician_feedback_user_id_app_user")),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["clinician_feedback.id"],
            name=op.f("fk_clinician_feedback_supersedes_id_clinician_feedback"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinician_feedback")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_clinician_feedback_idempotency_key")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_clinician_feedback_supersedes_id")),
    )
    op.create_index(op.f("ix_clinician_feedback_study_id"), "clinician_feedback", ["study_id"], unique=False)
    op.create_index(op.f("ix_clinician_feedback_prediction_id"), "clinician_feedback", ["prediction_id"], unique=False)
    op.create_index(op.f("ix_clinician_feedback_user_id"), "clinician_feedback", ["user_id"], unique=False)


def downgrade() -> None:
    """Drop ``clinician_feedback`` and its indexes."""
    op.drop_index(op.f("ix_clinician_feedback_user_id"), table_name="clinician_feedback")
    op.drop_index(op.f("ix_clinician_feedback_prediction_id"), table_name="clinician_feedback")
    op.drop_index(op.f("ix_clinician_feedback_study_id"), table_name="clinician_feedback")
    op.drop_table("clinician_feedback")
