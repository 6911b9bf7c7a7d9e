"""Federated training: sites' update-signing keys, runs, and each site's update per round.

Revision ID: 0014
Revises: 0013
Create Date: 2027-05-10

Creates ``fl_site_key`` (one registered Ed25519 public key per site), ``fl_run`` (sites, rounds,
strategy, outcome, plan) and ``fl_update`` (per round and site: accepted or refused with the
reason, the update's and the aggregate's SHA-256, aggregate metrics). New tables only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64
SHA = 64


def upgrade() -> None:
    """Create ``fl_site_key``, ``fl_run`` and ``fl_update``."""
    op.create_table(
        "fl_site_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_fl_site_key_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fl_site_key")),
        sa.UniqueConstraint("site_id", name=op.f("uq_fl_site_key_site_id")),
    )
    op.create_table(
        "fl_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=CODE), nullable=False),
        sa.Column("parent_version", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("sites", sa.Text(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=CODE), nullable=False),
        sa.Column("status", sa.String(length=CODE), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fl_run")),
        sa.UniqueConstraint("run_key", name=op.f("uq_fl_run_run_key")),
    )
    op.create_table(
        "fl_update",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=128), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("update_sha256", sa.String(length=SHA), nullable=False),
        sa.Column("aggregate_sha256", sa.String(length=SHA), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["fl_run.id"], name=op.f("fk_fl_update_run_id_fl_run")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fl_update")),
        sa.UniqueConstraint("run_id", "round", "site", name=op.f("uq_fl_update_run_id_round_site")),
    )
    op.create_index(op.f("ix_fl_update_run_id"), "fl_update", ["run_id"], unique=False)


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index(op.f("ix_fl_update_run_id"), table_name="fl_update")
    op.drop_table("fl_update")
    op.drop_table("fl_run")
    op.drop_table("fl_site_key")
