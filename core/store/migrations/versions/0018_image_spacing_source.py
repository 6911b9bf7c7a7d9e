"""Where an image's pixel spacing came from: ``instance.spacing_source``.

Revision ID: 0018
Revises: 0017
Create Date: 2027-06-01

CR and DX films often state only ImagerPixelSpacing (0018,1164), the spacing at the detector,
and no PixelSpacing; the store kept PixelSpacing only, so their lengths could only be measured in
pixels. ``instance.pixel_spacing_row`` and ``pixel_spacing_col`` now hold the spacing lengths are
measured with (PixelSpacing, else ImagerPixelSpacing) and ``spacing_source`` names the attribute.
Rows stored before this revision held PixelSpacing only, so their source is backfilled as
"PixelSpacing" where they have a spacing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64


def upgrade() -> None:
    """Add ``instance.spacing_source``; earlier rows' spacing was PixelSpacing."""
    op.add_column("instance", sa.Column("spacing_source", sa.String(length=CODE), nullable=True))
    op.execute("UPDATE instance SET spacing_source = 'PixelSpacing' WHERE pixel_spacing_row IS NOT NULL")


def downgrade() -> None:
    """Drop the column; a detector spacing is dropped with it, as the old schema held PixelSpacing only."""
    op.execute(
        "UPDATE instance SET pixel_spacing_row = NULL, pixel_spacing_col = NULL "
        "WHERE spacing_source = 'ImagerPixelSpacing'"
    )
    op.execute("ALTER TABLE instance DROP COLUMN spacing_source")
