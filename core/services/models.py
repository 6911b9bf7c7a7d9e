"""Register model versions, list their cards and load the serving one."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from core.audit.events import AuditAction
from core.errors import BadInputError
from core.models.card import ModelCard, read_card, write_card
from core.models.loading import BUNDLED_DIR, LoadedModel, load_model
from core.store import audit_log, model_versions
from core.store.engine import SessionFactory

__all__ = ["RegisteredModel", "register_model", "register_bundled", "list_models", "get_card", "load_serving"]


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A model version as the store knows it."""

    version: str
    serving: bool
    created_at: str
    card: ModelCard


def _model_dir(models_dir: Path, version: str) -> Path:
    return models_dir / version


def register_model(
    session_factory: SessionFactory,
    card: ModelCard,
    *,
    source_dir: Path,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> RegisteredModel:
    """Copy a version's weights and card under ``models_dir`` and record it, with its audit entry.

    The weights are loaded once (which checks their SHA-256 against the card) before
    anything is written. The first registered version becomes the serving one.

    Raises
    ------
    WeightsIntegrityError
        The weights file is missing, does not match the card's SHA-256 or does not fit.
    BadInputError
        The version is already registered.
    """
    load_model(card, source_dir, device=torch.device("cpu"))
    with session_factory.begin() as session:
        target = _model_dir(models_dir, card.version)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_dir / str(card.weights["path"]), target / str(card.weights["path"]))
        write_card(card, target / "card.json")
        serving = not model_versions.list_versions(session)
        rec = model_versions.register(
            session, version=card.version, card=card.to_dict(), weights_sha256=str(card.weights["sha256"]), now=now()
        )
        if serving:
            rec = model_versions.set_serving(session, card.version)
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_REGISTERED,
            subject=card.version,
            payload={
                "weights_sha256": str(card.weights["sha256"]),
                "serving": serving,
                "parent_version": card.parent_version,
            },
            recorded_at=now().isoformat(),
        )
    return RegisteredModel(card.version, rec.is_serving, rec.created_at.isoformat(), card)


def register_bundled(
    session_factory: SessionFactory, *, models_dir: Path, actor: str, now: Callable[[], datetime]
) -> RegisteredModel | None:
    """Register the bundled demonstration model unless it is already there (idempotent)."""
    card = read_card(BUNDLED_DIR / "card.json")
    with session_factory() as session:
        if any(r.version == card.version for r in model_versions.list_versions(session)):
            return None
    return register_model(session_factory, card, source_dir=BUNDLED_DIR, models_dir=models_dir, actor=actor, now=now)


def list_models(session_factory: SessionFactory) -> list[RegisteredModel]:
    """Every registered version, oldest first."""
    with session_factory() as session:
        rows = model_versions.list_versions(session)
    return [
        RegisteredModel(r.version, r.is_serving, r.created_at.isoformat(), ModelCard.from_dict(json.loads(r.card_json)))
        for r in rows
    ]


def get_card(session_factory: SessionFactory, version: str) -> ModelCard:
    """The stored card of ``version``; raises ``UnknownModelVersionError``."""
    with session_factory() as session:
        rec = model_versions.get_by_version(session, version)
    return ModelCard.from_dict(json.loads(rec.card_json))


def load_serving(
    session_factory: SessionFactory, *, models_dir: Path, device: torch.device | None = None
) -> LoadedModel:
    """Load the serving version from ``models_dir``, checking its weights against the stored card."""
    with session_factory() as session:
        rec = model_versions.serving(session)
    if rec is None:
        raise BadInputError("no model version is serving: run `vigil init` to register the bundled model")
    card = ModelCard.from_dict(json.loads(rec.card_json))
    return load_model(card, _model_dir(models_dir, card.version), device=device)
