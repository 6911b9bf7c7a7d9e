"""Drift incidents: a site's alerts of one family grouped into one incident, and each alert's incident.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-15

Creates ``drift_incident`` and adds the nullable ``drift_alert.incident_id`` (foreign key, index).
Existing alerts keep ``incident_id`` NULL: grouping is an audited action of the monitoring
service (``incident_opened``), not something a schema change may do silently. The next
monitoring run groups the still-unresolved ones by the incident rule; resolved ones stay as
they were, outside any incident.

SQLite cannot add a foreign key to an existing table, so ``drift_alert`` is changed in batch
mode (copied into a new table with its constraints); PostgreSQL gets plain ``ALTER TABLE``.
Frozen like ``0001``: written out in full rather than importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64


def upgrade() -> None:
    """Create ``drift_incident``; add ``drift_alert.incident_id`` with its foreign key and index."""
    op.create_table(
        "drift_incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=CODE), nullable=False),
        sa.Column("first_alarm_date", sa.Date(), nullable=False),
        sa.Column("change_date", sa.Date(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=CODE), nullable=False),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledge_note", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_drift_incident_status_known")
        ),
        sa.CheckConstraint(
            "family IN ('score', 'image', 'label', 'metadata')", name=op.f("ck_drift_incident_family_known")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_drift_incident_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_incident")),
    )
    op.create_index(op.f("ix_drift_incident_site_id"), "drift_incident", ["site_id"], unique=False)
    with op.batch_alter_table("drift_alert") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_drift_alert_incident_id_drift_incident"), "drift_incident", ["incident_id"], ["id"]
        )
        batch.create_index(op.f("ix_drift_alert_incident_id"), ["incident_id"], unique=False)


def downgrade() -> None:
    """Drop ``drift_alert.incident_id`` (with its index and foreign key), then ``drift_incident``."""
    with op.batch_alter_table("drift_alert") as batch:
        batch.drop_index(op.f("ix_drift_alert_incident_id"))
        batch.drop_constraint(op.f("fk_drift_alert_incident_id_drift_incident"), type_="foreignkey")
        batch.drop_column("incident_id")
    op.drop_index(op.f("ix_drift_incident_site_id"), table_name="drift_incident")
    op.drop_table("drift_incident")
