"""The indexes the worklist pages from in its score orders, so a page costs the same at a million studies.

Revision ID: 0019
Revises: 0018
Create Date: 2027-06-02

Creates ``ix_prediction_worklist_priority`` on ``prediction (model_version_id, label, score)`` and
``ix_prediction_worklist_score`` on ``prediction (model_version_id, score)``. The worklist's
triage order (model-positive first, then score) and its score order used to sort every matching
study for each page; ``core.store.reviews`` now walks these indexes and stops after one page
(BENCHMARKS.md, suite ``store``). Indexes only; no data changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create both indexes on ``prediction``."""
    op.create_index(
        "ix_prediction_worklist_priority", "prediction", ["model_version_id", "label", "score"], unique=False
    )
    op.create_index("ix_prediction_worklist_score", "prediction", ["model_version_id", "score"], unique=False)


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_prediction_worklist_score", table_name="prediction")
    op.drop_index("ix_prediction_worklist_priority", table_name="prediction")
