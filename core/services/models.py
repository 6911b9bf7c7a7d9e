"""Register model versions, list their cards and load the serving one."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from core.audit.events import AuditAction
from core.errors import BadInputError, ModelTamperedError
from core.models.address import content_address
from core.models.card import ModelCard, read_card, write_card
from core.models.loading import BUNDLED_DIR, LoadedModel, load_model
from core.store import audit_log, deployments, model_tags, model_versions, studies
from core.store import sites as site_store
from core.store.engine import SessionFactory

__all__ = [
    "RegisteredModel",
    "card_sha256",
    "get_card",
    "list_models",
    "load_named",
    "load_for_study",
    "load_serving",
    "load_version",
    "register_bundled",
    "register_model",
]


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A model version as the store knows it."""

    version: str
    serving: bool
    created_at: str
    card: ModelCard
    number: int = 0  # the registry's sequence number (the bundled model is 1 on a new installation)
    content_sha256: str | None = None
    tags: tuple[str, ...] = ()


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
        audit_log.lock_head(session)  # before reading the serving pointer: see core.store.deployments
        serving = model_versions.serving(session) is None
        rec = model_versions.register(
            session, version=card.version, card=card.to_dict(), weights_sha256=str(card.weights["sha256"]), now=now()
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_REGISTERED,
            subject=card.version,
            payload={
                "registry_number": rec.number,
                "content_sha256": str(rec.content_sha256),
                "card_sha256": card_sha256(rec.card_json),
                "weights_sha256": str(card.weights["sha256"]),
                "serving": serving,
                "parent_version": card.parent_version,
            },
            recorded_at=now().isoformat(),
        )
        if serving:
            deployments.record_switch(
                session,
                version_id=rec.id,
                action="initial",
                switched_by=actor,
                now=now(),
                reason="the first registered version serves until a promotion",
            )
            rec = model_versions.get_by_version(session, card.version)
    return RegisteredModel(
        card.version,
        rec.is_serving,
        rec.created_at.isoformat(),
        card,
        number=rec.number,
        content_sha256=rec.content_sha256,
    )


def card_sha256(card_json: str) -> str:
    """SHA-256 of a card exactly as stored (canonical JSON)."""
    return hashlib.sha256(card_json.encode("utf-8")).hexdigest()


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
        tags = {r.id: tuple(model_tags.tags_of(session, r.id)) for r in rows}
    return [
        RegisteredModel(
            r.version,
            r.is_serving,
            r.created_at.isoformat(),
            ModelCard.from_dict(json.loads(r.card_json)),
            number=r.number,
            content_sha256=r.content_sha256,
            tags=tags[r.id],
        )
        for r in rows
    ]


def get_card(session_factory: SessionFactory, version: str) -> ModelCard:
    """The stored card of ``version``; raises ``UnknownModelVersionError``."""
    with session_factory() as session:
        rec = model_versions.get_by_version(session, version)
    return ModelCard.from_dict(json.loads(rec.card_json))


def load_serving(
    session_factory: SessionFactory, *, models_dir: Path, device: torch.device | None = None, site: str | None = None
) -> LoadedModel:
    """Load the version serving ``site`` (the fleet-wide one when None), checking its weights against the stored card.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        No version serves yet.
    """
    with session_factory() as session:
        if site is None:
            rec = model_versions.serving(session)
        else:
            site_store.get_site(session, site)
            rec = deployments.version_serving(session, site)
    if rec is None:
        raise BadInputError("no model version is serving: run `vigil init` to register the bundled model")
    return load_version(rec, models_dir=models_dir, device=device)


def load_for_study(
    session_factory: SessionFactory, study_uid: str, *, models_dir: Path, device: torch.device | None = None
) -> LoadedModel:
    """Load the version serving the site of ``study_uid``: the one whose result its readers are shown.

    Raises
    ------
    UnknownStudyError
        No such study.
    BadInputError
        No version serves yet.
    """
    with session_factory() as session:
        site = studies.get_study(session, study_uid).site_name
    return load_serving(session_factory, models_dir=models_dir, device=device, site=site)


def load_named(
    session_factory: SessionFactory, version: str, *, models_dir: Path, device: torch.device | None = None
) -> LoadedModel:
    """Load the registered version ``version`` (see :func:`load_version`); raises ``UnknownModelVersionError``."""
    with session_factory() as session:
        rec = model_versions.get_by_version(session, version)
    return load_version(rec, models_dir=models_dir, device=device)


def load_version(
    rec: model_versions.ModelVersionRecord, *, models_dir: Path, device: torch.device | None = None
) -> LoadedModel:
    """Load a registered version, refusing a record or a weights file that changed since registration.

    Raises
    ------
    ModelTamperedError
        The stored card or weights hash no longer produces the stored content address.
    WeightsIntegrityError
        The weights file on disk does not match the card's SHA-256.
    """
    if rec.content_sha256 is not None and not rec.address_matches():
        actual = content_address(json.loads(rec.card_json), rec.weights_sha256)
        raise ModelTamperedError(
            rec.version, f"its stored card hashes to {actual}, not its address {rec.content_sha256}"
        )
    card = ModelCard.from_dict(json.loads(rec.card_json))
    return load_model(card, _model_dir(models_dir, card.version), device=device)
