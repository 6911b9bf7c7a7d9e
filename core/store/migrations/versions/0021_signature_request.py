"""Signatures waiting for the signer's re-authentication at the identity provider.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

Creates ``signature_request`` (signer, meaning, subject, scope as canonical JSON, requested at):
a person signed in through single sign-on has no Vigil password to sign with, so a promotion they
sign waits here while the identity provider asks them for their password again. A new table only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``signature_request``."""
    op.create_table(
        "signature_request",
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("meaning", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signer", name=op.f("pk_signature_request")),
    )


def downgrade() -> None:
    """Drop ``signature_request``."""
    op.drop_table("signature_request")
