"""Blue-green deployment: promote a validated version under an electronic signature, roll back, history.

A promotion switches the serving version only when, in this order: the version is registered and
unchanged since (content address, weights file on disk); the newest change-control gate run of
this version against the version serving now passed; and the approver's electronic signature
verifies (their password, entered again, and a role that may approve deployments). The signature
is the record 21 CFR 11.50 asks for: the signer's printed name, the date and time, and its
meaning ("approved for clinical use"), bound to the exact version and gate report by the SHA-256
of the signed manifest. The switch, its history row and its audit entry are one transaction;
a refused signature is audited in its own.

A rollback returns at once to the version that served before the current one; it needs no gate
(that version was approved before) and no signature, and it is audited like a promotion.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import torch
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.audit.events import AuditAction
from core.errors import (
    BadInputError,
    DeploymentRefusedError,
    InvalidTagError,
    UnknownValidationError,
)
from core.services import auth
from core.services.models import load_version
from core.services.permissions import (
    ACTIONS,
    Permission,
    SignedInUser,
    require,
    require_any,
)
from core.store import audit_log, change_validations, deployments, model_tags, model_versions, sites
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = [
    "SIGNATURE_MEANING",
    "DeploymentOverview",
    "Served",
    "ValidationSummary",
    "add_tag",
    "deployment_dict",
    "deployment_history",
    "overview",
    "promote",
    "promote_as",
    "rollback",
    "rollback_as",
    "served_at",
    "validation_html",
]

#: What a promotion's signature means (21 CFR 11.50(b)(3)).
SIGNATURE_MEANING: Final = "approved for clinical use"
#: Verification builds the network only to check it fits its weights; the CPU suffices.
_CHECK_DEVICE: Final = torch.device("cpu")
_TAG: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/#()+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Served:
    """Which version served a site at a moment, and the switch that put it there."""

    site: str
    at: datetime
    deployment: DeploymentRecord | None

    def to_dict(self) -> JSONObject:
        """The ``--json`` object of ``vigil deploy history --at``."""
        d = self.deployment
        return {
            "site": self.site,
            "at": self.at.isoformat(),
            "model_version": None if d is None else d.version,
            "since": None if d is None else d.switched_at.isoformat(),
            "deployment": None if d is None else deployment_dict(d),
        }


def deployment_dict(d: DeploymentRecord) -> JSONObject:
    """A switch as JSON-ready data."""
    return {
        "id": d.id,
        "model_version": d.version,
        "previous_version": d.previous_version,
        "action": d.action,
        "slot": d.slot,
        "validation_id": d.validation_id,
        "switched_by": d.switched_by,
        "switched_at": d.switched_at.isoformat(),
        "signer": d.signer,
        "signature_meaning": d.signature_meaning,
        "signature_sha256": d.signature_sha256,
        "reason": d.reason,
    }


# --- promote ------------------------------------------------------------------------------------


def promote(  # noqa: PLR0913 - keyword-only; each is one input of the signed act
    session_factory: SessionFactory,
    version: str,
    *,
    signer: str,
    password: str,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> DeploymentRecord:
    """Switch the serving version to ``version`` after the gate and the approver's signature.

    Raises
    ------
    UnknownModelVersionError
        ``version`` is not registered.
    ModelTamperedError, WeightsIntegrityError
        Its record or weights changed since registration.
    DeploymentRefusedError
        It already serves, or no passing gate run against the serving version exists.
    SignatureFailedError
        Wrong password, unknown signer, or a signer whose role may not approve deployments
        (audited as ``signature_failed``).
    """
    with session_factory() as session:
        target = model_versions.get_by_version(session, version)
        champion = model_versions.serving(session)
    # Refuses a changed record or weights file first; built on the CPU only to be checked.
    load_version(target, models_dir=models_dir, device=_CHECK_DEVICE)
    if champion is None:
        raise DeploymentRefusedError("no version is serving yet; `vigil init` registers the first")
    if champion.id == target.id:
        raise DeploymentRefusedError(f"{version!r} is already serving")
    with session_factory() as session:
        gate = change_validations.latest_for(session, target.id, champion.id)
    if gate is None:
        raise DeploymentRefusedError(
            f"{version!r} has not been validated against the serving version {champion.version!r}: "
            f"run `vigil validate-change {version}` first"
        )
    if not gate.passed:
        failed = ", ".join(str(f) for f in _failed(gate.report)) or "see the report"
        raise DeploymentRefusedError(f"{version!r} failed its change-control gate (validation {gate.id}: {failed})")
    signer_role = auth.verify_signature(
        session_factory,
        signer,
        password,
        permission=Permission.APPROVE_DEPLOYMENT,
        meaning=SIGNATURE_MEANING,
        subject=version,
        now=now,
    ).role
    signed_at = now()
    manifest: JSONObject = {
        "meaning": SIGNATURE_MEANING,
        "signer": signer,
        "printed_name": signer,
        "signer_role": signer_role.value,
        "signed_at": signed_at.isoformat(),
        "model_version": version,
        "content_sha256": target.content_sha256,
        "weights_sha256": target.weights_sha256,
        "replaces": champion.version,
        "validation_id": gate.id,
        "validation_report_sha256": gate.report_sha256,
        "plan_sha256": gate.plan_sha256,
    }
    signature = hashlib.sha256(canonical_json(manifest)).hexdigest()
    with session_factory.begin() as session:
        _check_still_serving(session, champion.id, champion.version)
        record = deployments.record_switch(
            session,
            version_id=target.id,
            action="promote",
            switched_by=actor,
            now=signed_at,
            reason=f"promoted under validation {gate.id}",
            validation_id=gate.id,
            signer=signer,
            signature_meaning=SIGNATURE_MEANING,
            signature_sha256=signature,
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_PROMOTED,
            subject=version,
            payload={
                "deployment_id": record.id,
                "slot": record.slot,
                "from_version": champion.version,
                "from_weights_sha256": champion.weights_sha256,
                "to_weights_sha256": target.weights_sha256,
                "signature_sha256": signature,
                "signature": manifest,
            },
            recorded_at=signed_at.isoformat(),
        )
    return record


def _failed(report: JSONObject) -> list[object]:
    failed = report.get("failed")
    return list(failed) if isinstance(failed, list) else []


def _check_still_serving(session: Session, champion_id: int, champion: str) -> None:
    # The head lock first: a concurrent switch or prediction batch is then ordered around this one.
    audit_log.lock_head(session)
    if model_versions.serving_id(session) != champion_id:
        raise DeploymentRefusedError(f"the serving version changed from {champion!r} while this one was prepared")


# --- rollback -----------------------------------------------------------------------------------


def rollback(
    session_factory: SessionFactory, *, reason: str, models_dir: Path, actor: str, now: Callable[[], datetime]
) -> DeploymentRecord:
    """Return to the version that served before the current one, at once.

    Raises
    ------
    DeploymentRefusedError
        Nothing served before the current version, or the current version came from a rollback
        (roll forward with a promotion instead).
    """
    with session_factory() as session:
        current = deployments.latest(session)
        if current is None or current.previous_version is None:
            raise DeploymentRefusedError("no earlier version to roll back to")
        if current.action == "rollback":
            raise DeploymentRefusedError(
                f"{current.version!r} serves because of a rollback; promote a validated version to move on"
            )
        previous = model_versions.get_by_version(session, current.previous_version)
        leaving = model_versions.get_by_version(session, current.version)
    load_version(previous, models_dir=models_dir, device=_CHECK_DEVICE)  # the version returned to must be intact
    with session_factory.begin() as session:
        _check_still_serving(session, leaving.id, leaving.version)
        record = deployments.record_switch(
            session, version_id=previous.id, action="rollback", switched_by=actor, now=now(), reason=reason
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_ROLLED_BACK,
            subject=previous.version,
            payload={
                "deployment_id": record.id,
                "slot": record.slot,
                "from_version": leaving.version,
                "from_weights_sha256": leaving.weights_sha256,
                "to_weights_sha256": previous.weights_sha256,
                "reason": reason,
            },
            recorded_at=record.switched_at.isoformat(),
        )
    return record


# --- history and tags ---------------------------------------------------------------------------


def served_at(session_factory: SessionFactory, *, site: str, at: datetime) -> Served:
    """Which version served ``site`` at ``at`` (every site is served by the one serving version).

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    """
    with session_factory() as session:
        sites.get_site(session, site)
        return Served(site, at, deployments.served_at(session, at))


def deployment_history(session_factory: SessionFactory) -> list[DeploymentRecord]:
    """Every switch, oldest first."""
    with session_factory() as session:
        return deployments.history(session)


def add_tag(
    session_factory: SessionFactory, version: str, tag: str, *, actor: str, now: Callable[[], datetime]
) -> bool:
    """Add ``tag`` to ``version`` with its audit entry; False when it already carries it.

    Tags are never changed or removed.

    Raises
    ------
    InvalidTagError
        Empty, longer than 64 characters, or characters beyond letters, digits and ``._:/#()+-``.
    UnknownModelVersionError
        ``version`` is not registered.
    """
    if not _TAG.fullmatch(tag):
        raise InvalidTagError(tag, "use 1 to 64 letters, digits, spaces or ._:/#()+- starting with a letter or digit")
    with session_factory.begin() as session:
        rec = model_versions.get_by_version(session, version)
        added = model_tags.add_tag(session, model_version_id=rec.id, tag=tag, actor=actor, now=now())
        if added:
            audit_log.append(
                session,
                actor=actor,
                action=AuditAction.MODEL_TAGGED,
                subject=version,
                payload={"tag": tag, "content_sha256": str(rec.content_sha256)},
                recorded_at=now().isoformat(),
            )
    return added


# --- for the app: the same acts, checked against the signed-in user's role ----------------------


@dataclass(frozen=True, slots=True)
class ValidationSummary:
    """One gate run as the Deployment page lists it."""

    id: int
    challenger: str
    champion: str
    passed: bool
    significant_change: bool
    failed: tuple[str, ...]
    created_at: datetime
    report_sha256: str


@dataclass(frozen=True, slots=True)
class DeploymentOverview:
    """Everything the Deployment page shows, read in one transaction."""

    serving: DeploymentRecord | None
    rollback_to: str | None
    versions: tuple[model_versions.ModelVersionRecord, ...]
    tags: dict[str, tuple[str, ...]]
    validations: tuple[ValidationSummary, ...]
    history: tuple[DeploymentRecord, ...]

    def promotable(self) -> tuple[str, ...]:
        """Versions whose newest gate run against the serving version passed."""
        if self.serving is None:
            return ()
        newest: dict[str, ValidationSummary] = {}
        for v in self.validations:  # newest first
            if v.champion == self.serving.version:
                newest.setdefault(v.challenger, v)
        return tuple(name for name, v in newest.items() if v.passed and name != self.serving.version)


def overview(session_factory: SessionFactory, user: SignedInUser | None) -> DeploymentOverview:
    """The serving version, the registry, the gate runs and the history.

    Raises
    ------
    PermissionDeniedError
        The user's role may not view deployments.
    """
    require(user, Permission.VIEW_DEPLOYMENTS)
    with session_factory() as session:
        records = model_versions.list_versions(session)
        names = {r.id: r.version for r in records}
        history = tuple(deployments.history(session))
        validations = tuple(
            ValidationSummary(
                v.id,
                names[v.challenger_id],
                names[v.champion_id],
                v.passed,
                v.significant_change,
                tuple(str(f) for f in _failed(v.report)),
                v.created_at,
                v.report_sha256,
            )
            for v in change_validations.list_all(session)
        )
        tags = {r.version: tuple(model_tags.tags_of(session, r.id)) for r in records}
    current = history[-1] if history else None
    rollback_to = None if current is None or current.action == "rollback" else current.previous_version
    return DeploymentOverview(current, rollback_to, tuple(records), tags, validations, history)


def validation_html(session_factory: SessionFactory, user: SignedInUser | None, validation_id: int) -> str:
    """The stored gate report as HTML, rendered from the stored JSON.

    Raises
    ------
    PermissionDeniedError, UnknownValidationError
    """
    from core.registry.html import render_gate_html

    require(user, Permission.VIEW_DEPLOYMENTS)
    with session_factory() as session:
        record = change_validations.get(session, validation_id)
        if record is None:
            raise UnknownValidationError(validation_id)
        challenger = model_versions.get_by_id(session, record.challenger_id).version
        champion = model_versions.get_by_id(session, record.champion_id).version
    report = {
        **record.report,
        "challenger_version": challenger,
        "champion_version": champion,
        "holdout_sha256": record.holdout_sha256,
    }
    return render_gate_html(
        report,
        validation_id=record.id,
        created_at=record.created_at.isoformat(),
        report_sha256=record.report_sha256,
    )


def promote_as(
    session_factory: SessionFactory,
    user: SignedInUser | None,
    version: str,
    password: str,
    *,
    models_dir: Path,
    now: Callable[[], datetime],
) -> DeploymentRecord:
    """:func:`promote`, signed by the signed-in user with their password entered again."""
    signer = require(user, Permission.APPROVE_DEPLOYMENT)
    return promote(
        session_factory,
        version,
        signer=signer.username,
        password=password,
        models_dir=models_dir,
        actor=signer.username,
        now=now,
    )


def rollback_as(
    session_factory: SessionFactory,
    user: SignedInUser | None,
    *,
    reason: str,
    models_dir: Path,
    now: Callable[[], datetime],
) -> DeploymentRecord:
    """:func:`rollback` by the signed-in user (a CMIO or an ML engineer)."""
    actor = require_any(user, ACTIONS["roll back"])
    text = reason.strip()
    if not text:
        raise BadInputError("a rollback needs a reason")
    return rollback(session_factory, reason=text[:2000], models_dir=models_dir, actor=actor.username, now=now)
