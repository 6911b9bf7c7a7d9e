"""The index a case's prior studies are found with: ``ix_study_patient_id_site_id``.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04

Creates ``ix_study_patient_id_site_id`` on ``study (patient_id, site_id)``. Every case view asks
for the patient's earlier studies at the same site (``core.services.priors``); with only
``ix_study_site_id`` that walks all of the site's studies (about 70 ms per case at a million
studies over five sites, in SQLite; under 0.1 ms with this index). An index only; no data changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the (patient, site) index on ``study``."""
    op.create_index("ix_study_patient_id_site_id", "study", ["patient_id", "site_id"], unique=False)


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_study_patient_id_site_id", table_name="study")
