"""Tags on model versions (a clearance number, "pilot"): added, never changed or removed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.tables import ModelTagRow

__all__ = ["add_tag", "tags_of"]


def add_tag(session: Session, *, model_version_id: int, tag: str, actor: str, now: datetime) -> bool:
    """Stage ``tag`` on a version; False (nothing staged) when the version already carries it."""
    if tag in tags_of(session, model_version_id):
        return False
    session.add(ModelTagRow(model_version_id=model_version_id, tag=tag, actor=actor, created_at=now))
    session.flush()
    return True


def tags_of(session: Session, model_version_id: int) -> list[str]:
    """The version's tags, in the order they were added."""
    query = select(ModelTagRow.tag).where(ModelTagRow.model_version_id == model_version_id).order_by(ModelTagRow.id)
    return list(session.scalars(query))
