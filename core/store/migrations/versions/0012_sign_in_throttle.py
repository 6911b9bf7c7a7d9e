"""Failed sign-in counters: a lock that grows with repeated failures, per username and per client address.

Revision ID: 0012
Revises: 0011
Create Date: 2027-04-15

Creates ``sign_in_throttle`` (key, consecutive failures, locked-until, attempts refused while
locked, last update). A new table only; frozen like ``0001``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``sign_in_throttle``."""
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttle")),
    )


def downgrade() -> None:
    """Drop ``sign_in_throttle``."""
    op.drop_table("sign_in_throttle")
