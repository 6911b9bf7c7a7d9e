"""Signed Merkle checkpoints of the audit ledger.

Revision ID: 0009
Revises: 0008
Create Date: 2027-03-01

Creates ``audit_checkpoint``: one row per signed checkpoint (tree size, root hash, the signed
timestamp text, key id, Ed25519 signature). A new table only, so SQLite and PostgreSQL take the
same plain ``CREATE TABLE``. Frozen like ``0001``: written out in full rather than importing
``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64
SHA256_HEX = 64


def upgrade() -> None:
    """Create ``audit_checkpoint``."""
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.Integer(), nullable=False),
        sa.Column("root_hash", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("timestamp", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=CODE), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
        sa.UniqueConstraint("tree_size", name=op.f("uq_audit_checkpoint_tree_size")),
    )


def downgrade() -> None:
    """Drop ``audit_checkpoint``."""
    op.drop_table("audit_checkpoint")
