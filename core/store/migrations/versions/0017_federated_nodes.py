"""Federated node health and live runs.

Revision ID: 0017
Revises: 0016
Create Date: 2027-06-01

Creates ``fl_node`` (per site: the Vigil and Flower versions, architecture and preprocessing
hashes its node last reported, the server's verdict on them, and when it was last seen) and
``fl_launch`` (a run while it runs: its launcher's process id, who launched it, the request and
the progress so far, which the Federated page reads). New tables only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64
SHA = 64
NAME = 128


def upgrade() -> None:
    """Create ``fl_node`` and ``fl_launch``."""
    op.create_table(
        "fl_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=NAME), nullable=False),
        sa.Column("vigil_version", sa.String(length=CODE), nullable=False),
        sa.Column("flwr_version", sa.String(length=CODE), nullable=False),
        sa.Column("arch_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("preprocessing_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("compatible", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("last_run_key", sa.String(length=CODE), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fl_node")),
        sa.UniqueConstraint("site", name=op.f("uq_fl_node_site")),
    )
    op.create_table(
        "fl_launch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=CODE), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("launched_by", sa.String(length=NAME), nullable=False),
        sa.Column("state", sa.String(length=CODE), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fl_launch")),
        sa.UniqueConstraint("run_key", name=op.f("uq_fl_launch_run_key")),
    )
    op.create_index(op.f("ix_fl_launch_state"), "fl_launch", ["state"], unique=False)


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_index(op.f("ix_fl_launch_state"), table_name="fl_launch")
    op.drop_table("fl_launch")
    op.drop_table("fl_node")
