"""What a model card says about the data it was trained on (pure: card JSON in, study UIDs out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["trained_uids"]


def trained_uids(cards: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Study Instance UIDs that any card's training-data manifest lists (``training_data.studies``).

    Rows are lists in the manifest's ``study_columns`` order (the UID first), as
    ``core.models.finetune`` writes them, or objects with a ``study_uid`` key. A card without a
    per-study manifest (the bundled model names its cohort manifest by hash instead) adds nothing.
    """
    found: set[str] = set()
    for card in cards:
        training = card.get("training_data")
        rows = training.get("studies") if isinstance(training, Mapping) else None
        for row in rows if isinstance(rows, list) else []:
            uid = (
                row[0] if isinstance(row, list) and row else row.get("study_uid") if isinstance(row, Mapping) else None
            )
            if isinstance(uid, str):
                found.add(uid)
    return frozenset(found)


def _uid(row: object) -> str | None:
    uid = row[0] if isinstance(row, list) and row else row.get("study_uid") if isinstance(row, Mapping) else None
    return uid if isinstance(uid, str) else None
