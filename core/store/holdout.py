"""The locked hold-out: studies the change-control gate evaluates and no training run may read."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.tables import HoldoutStudyRow, SiteRow, StudyRow

__all__ = ["add_studies", "holdout_study_ids", "holdout_uids"]


def add_studies(
    session: Session, study_sites: Iterable[tuple[int, int]], *, lock_sha256: str, actor: str, now: datetime
) -> int:
    """Stage ``(study_id, site_id)`` pairs into the hold-out; returns how many were added.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        If a study is already locked (a study joins the hold-out once, for good).
    """
    rows = [
        HoldoutStudyRow(study_id=study_id, site_id=site_id, lock_sha256=lock_sha256, actor=actor, locked_at=now)
        for study_id, site_id in study_sites
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def holdout_study_ids(session: Session) -> frozenset[int]:
    """Every locked study's id."""
    return frozenset(session.scalars(select(HoldoutStudyRow.study_id)))


def holdout_uids(session: Session) -> dict[str, str]:
    """Every locked study's Study Instance UID and its site name."""
    query = (
        select(StudyRow.study_uid, SiteRow.name)
        .join(HoldoutStudyRow, HoldoutStudyRow.study_id == StudyRow.id)
        .join(SiteRow, SiteRow.id == HoldoutStudyRow.site_id)
    )
    return {str(row[0]): str(row[1]) for row in session.execute(query)}
