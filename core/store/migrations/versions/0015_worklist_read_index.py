"""The index the worklist's "not read by me" filter needs at a million studies.

Revision ID: 0015
Revises: 0014
Create Date: 2027-05-12

Creates ``ix_clinician_feedback_study_id_user_id`` on ``clinician_feedback (study_id, user_id)``.
The worklist asks, once per study, whether the signed-in reader has read it; with only the
single-column indexes SQLite answered from ``user_id`` and walked all of that reader's rows for
every study (a 50,000-study store with 2,500 reads: 58 s per page; with this index 0.1 s, see
BENCHMARKS.md, "Store at scale"). An index only; no data changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the (study, reader) index on ``clinician_feedback``."""
    op.create_index(
        "ix_clinician_feedback_study_id_user_id", "clinician_feedback", ["study_id", "user_id"], unique=False
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_clinician_feedback_study_id_user_id", table_name="clinician_feedback")
