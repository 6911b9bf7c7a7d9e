"""Per-site deployment and signers' printed full names.

Revision ID: 0016
Revises: 0015
Create Date: 2027-06-01

- ``deployment.site``: the site a switch applies to, or NULL for the fleet-wide switch that serves
  every site without a switch of its own. Indexed: "what serves site S" reads the newest row of S.
- ``app_user.full_name``: the printed name an electronic signature shows (21 CFR 11.50(a)(1)).
  Users created before it have none on record, so it is backfilled with their username, which
  is what their signatures printed until now.

Both are plain ``ADD COLUMN``s on both databases, so ``deployment`` keeps its append-only
triggers (migration ``0011``); a batch rebuild on SQLite would have dropped them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None

NAME = 128


def upgrade() -> None:
    """Add ``deployment.site`` and ``app_user.full_name`` (backfilled with the username)."""
    op.add_column("deployment", sa.Column("site", sa.String(length=NAME), nullable=True))
    op.create_index("ix_deployment_site", "deployment", ["site"])
    # NOT NULL needs a default for the rows already there; the backfill replaces it at once.
    op.add_column("app_user", sa.Column("full_name", sa.String(length=NAME), nullable=False, server_default=""))
    op.execute("UPDATE app_user SET full_name = username")
    if op.get_context().dialect.name == "postgresql":
        # SQLite cannot drop a column default without rebuilding the table; the model always sets it.
        op.alter_column("app_user", "full_name", server_default=None)


def downgrade() -> None:
    """Drop both columns (SQLite 3.35 and later drop a column in place)."""
    op.drop_index("ix_deployment_site", table_name="deployment")
    op.execute("ALTER TABLE deployment DROP COLUMN site")
    op.execute("ALTER TABLE app_user DROP COLUMN full_name")
