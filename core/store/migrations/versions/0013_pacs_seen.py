"""Instances a PACS pull has dealt with, per DICOMweb endpoint, so that none is retrieved twice.

Revision ID: 0013
Revises: 0012
Create Date: 2027-05-02

Creates ``pacs_seen`` (endpoint, site, study and SOP Instance UID, outcome, reason, when), unique
per endpoint and SOP Instance UID. A new table only; frozen like ``0001``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

UID = 64
CODE = 64


def upgrade() -> None:
    """Create ``pacs_seen``."""
    op.create_table(
        "pacs_seen",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=512), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=UID), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=UID), nullable=False),
        sa.Column("outcome", sa.String(length=CODE), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_pacs_seen_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_seen")),
        sa.UniqueConstraint("endpoint", "sop_instance_uid", name=op.f("uq_pacs_seen_endpoint_sop_instance_uid")),
    )
    op.create_index(op.f("ix_pacs_seen_study_uid"), "pacs_seen", ["study_uid"], unique=False)


def downgrade() -> None:
    """Drop ``pacs_seen``."""
    op.drop_index(op.f("ix_pacs_seen_study_uid"), table_name="pacs_seen")
    op.drop_table("pacs_seen")
