"""Retraining: fine-tune a registered version on the labels of record into a registered challenger.

The training set is every labelled study outside the locked hold-out: the benchmark's studies and
the deployment sites' studies, each with the source of its label of record. A site- and
label-stratified share of it (``val_fraction``) selects the epoch and the operating threshold;
the rest is fitted. The hold-out is left out here and refused again by the trainer
(``core.models.finetune``); the run is audited (``model_trained``: parent, data manifest,
hyperparameters) and the challenger registered (``model_registered``), never promoted: that takes
the change-control gate and a signature (``core.services.deployment``).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from core.audit.events import AuditAction
from core.errors import BadInputError, DuplicateModelVersionError, UnknownModelVersionError
from core.models.card import check_version_name
from core.models.finetune import FinetuneConfig, finetune_model
from core.services.holdout import LabelledCase, training_pool
from core.services.models import RegisteredModel, get_card, register_model
from core.services.permissions import Permission, SignedInUser, require
from core.store import audit_log, deployments, incidents, model_versions
from core.store.engine import SessionFactory, head_revision
from core.store.incidents import IncidentStatus
from core.types import JSONObject

__all__ = ["RetrainProposal", "retrain", "retrain_as", "retrain_proposals", "split_for_validation"]


@dataclass(frozen=True, slots=True)
class RetrainProposal:
    """A retraining Vigil proposes because a drift incident was confirmed (acknowledged) by a person.

    Proposed while the incident is acknowledged and not resolved, and no version has been trained
    from the serving one since the acknowledgement.
    """

    incident_id: int
    site: str
    family: str
    summary: str
    acknowledged_by: str
    acknowledged_at: datetime
    parent: str

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "incident_id": self.incident_id,
            "site": self.site,
            "family": self.family,
            "summary": self.summary,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat(),
            "parent": self.parent,
            "command": f"vigil train --from {self.parent} --version NAME --for-incident {self.incident_id}",
        }


def retrain_proposals(session_factory: SessionFactory) -> list[RetrainProposal]:
    """Confirmed drift incidents that no retraining of the version serving their site has answered yet.

    The parent proposed for an incident is the version serving the incident's site: the one
    that drifted there (with per-site deployment it may not be the fleet-wide version).
    """
    with session_factory() as session:
        if model_versions.serving(session) is None:
            return []
        serving = deployments.versions_by_site(session)
        confirmed = incidents.list_incidents(session, statuses=(IncidentStatus.ACKNOWLEDGED,))
        registered = model_versions.list_versions(session)
    proposals = []
    for incident in confirmed:
        parent = serving.get(incident.site)
        acked = incident.acknowledged_at
        if parent is None or acked is None:
            continue
        children = [v for v in registered if v.card.get("parent_version") == parent.version]
        if any(child.created_at >= acked for child in children):
            continue
        proposals.append(
            RetrainProposal(
                incident.id,
                incident.site,
                incident.family,
                incident.summary,
                incident.acknowledged_by or "",
                acked,
                parent.version,
            )
        )
    return proposals


def split_for_validation(
    cases: Sequence[LabelledCase], *, fraction: float, seed: int
) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """Split into (train, val), taking ``fraction`` of every (site, label) stratum for val.

    Deterministic from ``seed``: the order within a stratum is the SHA-256 of seed and UID.
    Every stratum with at least two studies gives val at least one.
    """
    strata: dict[tuple[str, int], list[LabelledCase]] = defaultdict(list)
    for case in cases:
        strata[(case.site, case.label)].append(case)
    train: list[LabelledCase] = []
    val: list[LabelledCase] = []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda c: hashlib.sha256(f"val:{seed}:{c.study_uid}".encode()).hexdigest())
        k = max(1, round(fraction * len(members))) if len(members) >= 2 else 0
        val += members[:k]
        train += members[k:]
    return train, val


def retrain(  # noqa: PLR0913 - keyword-only; one argument per input of the run
    session_factory: SessionFactory,
    parent: str,
    *,
    version: str,
    seed: int,
    config: FinetuneConfig,
    models_dir: Path,
    work_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    val_fraction: float = 0.2,
    for_incident: int | None = None,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RegisteredModel:
    """Fine-tune ``parent`` into the challenger ``version`` and register it.

    ``for_incident`` names the confirmed drift incident the run answers (see
    :func:`retrain_proposals`); it is recorded in the ``model_trained`` entry.

    Raises
    ------
    UnknownModelVersionError
        ``parent`` is not registered.
    DuplicateModelVersionError
        ``version`` is taken (checked before training).
    BadInputError
        No labelled study outside the hold-out, or a validation share without both labels.
    HoldoutLeakError
        A hold-out study reached the training data (the trainer's own check).
    """
    check_version_name(version)
    if not 0.0 < val_fraction < 1.0:
        raise BadInputError(f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    parent_card = get_card(session_factory, parent)
    _refuse_taken(session_factory, version)
    cases, holdout_uids = training_pool(session_factory)
    if not cases:
        raise BadInputError("no labelled study outside the hold-out to train on: load outcomes first")
    train, val = split_for_validation(cases, fraction=val_fraction, seed=seed)
    card = finetune_model(
        parent_card=parent_card,
        parent_dir=models_dir / parent,
        train=[c.example() for c in train],
        val=[c.example() for c in val],
        holdout_uids=holdout_uids,
        out_dir=work_dir / version,
        version=version,
        seed=seed,
        store_revision=head_revision(),
        config=config,
        device=device,
        progress=progress,
    )
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_TRAINED,
            subject=version,
            payload={
                "parent_version": parent,
                "for_incident": for_incident,
                "manifest_sha256": str(card.training_data.get("manifest_sha256")),
                "n_train": len(train),
                "n_val": len(val),
                "per_site": dict(sorted(Counter(c.site for c in [*train, *val]).items())),
                "label_sources": dict(sorted(Counter(c.source for c in [*train, *val]).items())),
                "holdout_excluded": len(holdout_uids),
                "hyperparameters": card.hyperparameters,
                "weights_sha256": str(card.weights["sha256"]),
            },
            recorded_at=now().isoformat(),
        )
    return register_model(
        session_factory, card, source_dir=work_dir / version, models_dir=models_dir, actor=actor, now=now
    )


def _refuse_taken(session_factory: SessionFactory, version: str) -> None:
    try:
        get_card(session_factory, version)
    except UnknownModelVersionError:
        return
    raise DuplicateModelVersionError(version)


def retrain_as(  # noqa: PLR0913 - the signed-in user's version of :func:`retrain`
    session_factory: SessionFactory,
    user: SignedInUser | None,
    parent: str,
    *,
    version: str,
    seed: int,
    config: FinetuneConfig,
    models_dir: Path,
    work_dir: Path,
    now: Callable[[], datetime],
    for_incident: int | None = None,
) -> RegisteredModel:
    """:func:`retrain` by the signed-in user (an ML engineer)."""
    engineer = require(user, Permission.MANAGE_MODELS)
    return retrain(
        session_factory,
        parent,
        version=version,
        seed=seed,
        config=config,
        models_dir=models_dir,
        work_dir=work_dir,
        actor=engineer.username,
        now=now,
        for_incident=for_incident,
    )
