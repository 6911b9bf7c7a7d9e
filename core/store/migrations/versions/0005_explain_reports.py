"""Explanation faithfulness reports: one row per computed report of a model version.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-28

A branch beside ``0002``-``0004`` (``migrate`` runs ``upgrade heads``); a merge revision joins
them. Frozen like ``0001``: written out in full rather than importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``explain_report`` with its foreign key and index."""
    op.create_table(
        "explain_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("report_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_explain_report_model_version_id_model_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explain_report")),
    )
    op.create_index(op.f("ix_explain_report_model_version_id"), "explain_report", ["model_version_id"], unique=False)


def downgrade() -> None:
    """Drop ``explain_report``."""
    op.drop_index(op.f("ix_explain_report_model_version_id"), table_name="explain_report")
    op.drop_table("explain_report")
