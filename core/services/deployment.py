"""Blue-green deployment: promote a validated version under an electronic signature, roll back, history.

A promotion switches the serving version only when, in this order: the version is registered and
unchanged since (content address, weights file on disk); the newest change-control gate run of
this version against the version serving now passed; and the approver's electronic signature
verifies (their password, entered again, and a role that may approve deployments; an account the
identity provider manages re-authenticates there instead, see ``core.services.provider_signature``).
The signature is the record 21 CFR 11.50 asks for: the signer's printed name, the date and time,
and its meaning ("approved for clinical use"), bound to the exact version and gate report by the
SHA-256 of the signed manifest, which also says how the signer was authenticated. The switch, its
history row and its audit entry are one transaction; a refused signature is audited in its own.

A promotion may name sites: each is switched on its own and every other site keeps what serves
it (``core.store.deployments`` holds the rule); each site's serving version needs its own passing
gate run, one signature covers them all, and the audit entry names the sites. The manifest prints
the signer's full name and their username.

A rollback returns a scope (the fleet, or one site) at once to the version that served it before
its newest switch; it needs no gate (that version was approved before) and no signature, and it
is audited like a promotion. "Which version served site X at T" also answers which site
calibrator was in effect for it then.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
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
from core.services import auth, provider_signature
from core.services.models import load_version
from core.services.permissions import (
    ACTIONS,
    Permission,
    SignedInUser,
    require,
    require_any,
)
from core.store import (
    audit_log,
    change_validations,
    deployments,
    model_tags,
    model_versions,
    site_calibrators,
    users,
)
from core.store import sites as site_store
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory, write_with_retries
from core.store.signature_requests import SignatureRequestRecord
from core.types import JSONObject

__all__ = [
    "SIGNATURE_MEANING",
    "DeploymentOverview",
    "Served",
    "SiteServing",
    "ValidationSummary",
    "add_tag",
    "calibrator_in_effect",
    "deployment_dict",
    "deployment_history",
    "overview",
    "promote",
    "pending_signature_as",
    "promote_as",
    "promote_signed_at_provider_as",
    "request_promotion_signature_as",
    "rollback",
    "rollback_as",
    "served_at",
    "serving_now",
    "signature_sites",
    "validation_html",
    "withdraw_signature_as",
]

#: Why a promotion naming sites is refused where the ``per_site_deployment`` setting is switched off.
PER_SITE_OFF: Final = (
    "per-site promotion is switched off in this installation's configuration (per_site_deployment = false): "
    "promote fleet-wide, or set per_site_deployment = true"
)
#: What a promotion's signature means (21 CFR 11.50(b)(3)).
SIGNATURE_MEANING: Final = "approved for clinical use"
#: Verification builds the network only to check it fits its weights; the CPU suffices.
_CHECK_DEVICE: Final = torch.device("cpu")
_TAG: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/#()+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Served:
    """What served a site at a moment: the switch that put the version there, and the site's calibrator.

    Attributes
    ----------
    deployment : DeploymentRecord or None
        The site's newest switch of its own made by ``at``, else the fleet's; None before any.
    calibrator : SiteCalibratorRecord or None
        The calibrator approved for that version at that site and not yet replaced at ``at`` (its
        ``status`` is today's); None when the version's scores were not recalibrated there then.
    """

    site: str
    at: datetime
    deployment: DeploymentRecord | None
    calibrator: site_calibrators.SiteCalibratorRecord | None = None

    def to_dict(self) -> JSONObject:
        """The ``--json`` object of ``vigil deploy history --site --at``."""
        d, c = self.deployment, self.calibrator
        return {
            "site": self.site,
            "at": self.at.isoformat(),
            "model_version": None if d is None else d.version,
            "since": None if d is None else d.switched_at.isoformat(),
            "scope": None if d is None else ("site" if d.site is not None else "fleet"),
            "deployment": None if d is None else deployment_dict(d),
            "calibrator": None if c is None else {**c.to_dict(), "in_effect_since": _iso(c.approved_at)},
        }


def deployment_dict(d: DeploymentRecord) -> JSONObject:
    """A switch as JSON-ready data (``site`` None: fleet-wide)."""
    return {
        "id": d.id,
        "site": d.site,
        "model_version": d.version,
        "previous_version": d.previous_version,
        "action": d.action,
        "slot": d.slot,
        "validation_id": d.validation_id,
        "switched_by": d.switched_by,
        "switched_at": d.switched_at.isoformat(),
        "signer": d.signer,
        "signer_name": d.signer_name,
        "signature_meaning": d.signature_meaning,
        "signature_sha256": d.signature_sha256,
        "reason": d.reason,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --- promote ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """One scope a promotion switches, with what serves it now and the gate run that clears the target."""

    site: str | None
    champion: model_versions.ModelVersionRecord
    gate: change_validations.ValidationRecord

    @property
    def label(self) -> str:
        return "every site" if self.site is None else self.site


def promote(  # noqa: PLR0913 - keyword-only; each is one input of the signed act
    session_factory: SessionFactory,
    version: str,
    *,
    signer: str,
    password: str,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    sites: Sequence[str] = (),
    per_site_allowed: bool = True,
) -> tuple[DeploymentRecord, ...]:
    """Switch ``sites`` (every site without its own switch when empty) to ``version``, signed.

    Each named site is switched on its own: the others keep what serves them. For every scope, the
    newest gate run of ``version`` against the version serving that scope must have passed. One
    signature covers every scope; the switches, their history rows and one audit entry naming the
    sites are one transaction.

    Returns
    -------
    tuple of DeploymentRecord
        One switch per scope, in the order the sites were given (one row when fleet-wide).

    Raises
    ------
    BadInputError
        A site is blank or named twice.
    UnknownSiteError
        A site is not registered.
    UnknownModelVersionError
        ``version`` is not registered.
    ModelTamperedError, WeightsIntegrityError
        Its record or weights changed since registration.
    DeploymentRefusedError
        It already serves a scope, or no passing gate run against a scope's serving version exists,
        or ``sites`` are named while ``per_site_allowed`` is False (the ``per_site_deployment``
        setting switched off).
    SignatureFailedError
        Wrong password, unknown signer, or a signer whose role may not approve deployments
        (audited as ``signature_failed``).
    """
    names = _site_names(sites)
    target, scopes = _prepare(session_factory, version, names, per_site_allowed=per_site_allowed, models_dir=models_dir)
    signer_role = auth.verify_signature(
        session_factory,
        signer,
        password,
        permission=Permission.APPROVE_DEPLOYMENT,
        meaning=SIGNATURE_MEANING,
        subject=version,
        now=now,
    ).role
    signed = _Signed(signer, signer_role.value, {"method": "password entered again"})
    return _switch(session_factory, target, scopes, names, signed, actor=actor, now=now)


@dataclass(frozen=True, slots=True)
class _Signed:
    """A verified signature: who, their role, how they were authenticated, and the request it completes."""

    signer: str
    role: str
    authentication: JSONObject
    request: SignatureRequestRecord | None = None


def _prepare(
    session_factory: SessionFactory,
    version: str,
    names: tuple[str, ...],
    *,
    per_site_allowed: bool,
    models_dir: Path,
) -> tuple[model_versions.ModelVersionRecord, tuple[_Scope, ...]]:
    """The registered, unchanged ``version`` and each scope's passing gate run; refused otherwise."""
    with session_factory() as session:
        for name in names:
            site_store.get_site(session, name)
        if names and not per_site_allowed:
            raise DeploymentRefusedError(PER_SITE_OFF)
        target = model_versions.get_by_version(session, version)
        champions = {site: _serving_version(session, site) for site in (names or (None,))}
    # Refuses a changed record or weights file first; built on the CPU only to be checked.
    load_version(target, models_dir=models_dir, device=_CHECK_DEVICE)
    return target, _gated_scopes(session_factory, target, champions)


def _switch(  # noqa: PLR0913 - keyword-only after the act's parts
    session_factory: SessionFactory,
    target: model_versions.ModelVersionRecord,
    scopes: tuple[_Scope, ...],
    names: tuple[str, ...],
    signed: _Signed,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> tuple[DeploymentRecord, ...]:
    """Switch every scope to ``target`` under ``signed``: one transaction with its audit entry."""
    signed_at = now()
    with session_factory.begin() as session:
        # The head lock first: a concurrent switch or prediction batch is then ordered around this one.
        audit_log.lock_head(session)
        if signed.request is not None:
            provider_signature.take(session, signed.signer, signed.request)
        for scope in scopes:
            _check_still_serving(session, scope.site, scope.champion)
        manifest = _manifest(
            target,
            scopes,
            signer=signed.signer,
            printed_name=users.get_user(session, signed.signer).full_name,
            signer_role=signed.role,
            signed_at=signed_at,
            authentication=signed.authentication,
        )
        signature = hashlib.sha256(canonical_json(manifest)).hexdigest()
        records = tuple(
            deployments.record_switch(
                session,
                version_id=target.id,
                action="promote",
                switched_by=actor,
                now=signed_at,
                reason=f"promoted under validation {scope.gate.id}",
                site=scope.site,
                validation_id=scope.gate.id,
                signer=signed.signer,
                signature_meaning=SIGNATURE_MEANING,
                signature_sha256=signature,
            )
            for scope in scopes
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_PROMOTED,
            subject=target.version,
            payload={
                "sites": list(names) if names else None,
                "switches": [_switch_payload(r, s.champion) for r, s in zip(records, scopes, strict=True)],
                "to_weights_sha256": target.weights_sha256,
                "signature_sha256": signature,
                "signature": manifest,
            },
            recorded_at=signed_at.isoformat(),
        )
    return records


def _site_names(sites: Sequence[str]) -> tuple[str, ...]:
    """The sites as given, stripped; a blank or repeated name is refused, naming it."""
    names = tuple(s.strip() for s in sites)
    for raw, name in zip(sites, names, strict=True):
        if not name:
            raise BadInputError(f"a site name is blank: {raw!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInputError(f"site {repeated[0]!r} is named more than once; name each site once")
    return names


def _serving_version(session: Session, site: str | None) -> model_versions.ModelVersionRecord:
    current = deployments.serving_for(session, site)
    if current is None:
        raise DeploymentRefusedError("no version is serving yet; `vigil init` registers the first")
    return model_versions.get_by_id(session, current.version_id)


def _gated_scopes(
    session_factory: SessionFactory,
    target: model_versions.ModelVersionRecord,
    champions: Mapping[str | None, model_versions.ModelVersionRecord],
) -> tuple[_Scope, ...]:
    """Each scope with the passing gate run that clears ``target`` against what serves it."""
    scopes = []
    with session_factory() as session:
        for site, champion in champions.items():
            where = "" if site is None else f" at {site!r}"
            if champion.id == target.id:
                raise DeploymentRefusedError(f"{target.version!r} is already serving{where}")
            gate = change_validations.latest_for(session, target.id, champion.id, site=site)
            if gate is None:
                raise DeploymentRefusedError(
                    f"{target.version!r} has not been validated against the serving version {champion.version!r}"
                    f"{where}: run `vigil validate-change {target.version}"
                    f"{'' if site is None else f' --site {site}'}` first"
                    f"{'' if site is not None else ' (a gate scoped to some sites clears those sites only)'}"
                )
            if not gate.passed:
                failed = ", ".join(str(f) for f in _failed(gate.report)) or "see the report"
                raise DeploymentRefusedError(
                    f"{target.version!r} failed its change-control gate (validation {gate.id}: {failed})"
                )
            scopes.append(_Scope(site, champion, gate))
    return tuple(scopes)


def _manifest(  # noqa: PLR0913 - keyword-only; each is one fact of the signature
    target: model_versions.ModelVersionRecord,
    scopes: Sequence[_Scope],
    *,
    signer: str,
    printed_name: str,
    signer_role: str,
    signed_at: datetime,
    authentication: JSONObject,
) -> JSONObject:
    """The signed record (21 CFR 11.50): printed name, username, role, time, meaning, and what is signed."""
    return {
        "meaning": SIGNATURE_MEANING,
        "authentication": authentication,
        "signer": signer,
        "printed_name": printed_name,
        "signer_role": signer_role,
        "signed_at": signed_at.isoformat(),
        "model_version": target.version,
        "content_sha256": target.content_sha256,
        "weights_sha256": target.weights_sha256,
        "sites": None if scopes[0].site is None else [s.label for s in scopes],
        "replaces": {s.label: s.champion.version for s in scopes},
        "validations": [
            {
                "site": s.site,
                "validation_id": s.gate.id,
                "validation_report_sha256": s.gate.report_sha256,
                "plan_sha256": s.gate.plan_sha256,
            }
            for s in scopes
        ],
    }


def _switch_payload(record: DeploymentRecord, leaving: model_versions.ModelVersionRecord) -> JSONObject:
    return {
        "deployment_id": record.id,
        "site": record.site,
        "slot": record.slot,
        "from_version": leaving.version,
        "from_weights_sha256": leaving.weights_sha256,
    }


def _failed(report: JSONObject) -> list[object]:
    failed = report.get("failed")
    return list(failed) if isinstance(failed, list) else []


def _check_still_serving(session: Session, site: str | None, champion: model_versions.ModelVersionRecord) -> None:
    """Inside the switch's transaction, after the head lock: the scope still serves ``champion``."""
    current = deployments.serving_for(session, site)
    if current is None or current.version_id != champion.id:
        where = "" if site is None else f" at {site!r}"
        raise DeploymentRefusedError(
            f"the serving version{where} changed from {champion.version!r} while this one was prepared"
        )


# --- rollback -----------------------------------------------------------------------------------


def rollback(  # noqa: PLR0913 - keyword-only; each is one input of the act
    session_factory: SessionFactory,
    *,
    reason: str,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    site: str | None = None,
) -> DeploymentRecord:
    """Return ``site`` (the fleet when None) at once to the version that served it before its newest switch.

    A site's rollback undoes the site's own newest switch; a fleet rollback undoes the newest
    fleet-wide switch and leaves every site with a switch of its own as it is.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    DeploymentRefusedError
        Nothing to roll back to: no earlier version in that scope, no switch of the site's own, or
        the scope's newest switch was itself a rollback (roll forward with a promotion instead).
    """
    with session_factory() as session:
        if site is not None:
            site_store.get_site(session, site)
        current = deployments.latest(session, site)
        if current is None and site is not None:
            raise DeploymentRefusedError(
                f"site {site!r} has no switch of its own to roll back; it is served fleet-wide"
            )
        if current is None or current.previous_version is None:
            raise DeploymentRefusedError("no earlier version to roll back to")
        if current.action == "rollback":
            raise DeploymentRefusedError(
                f"{current.version!r} serves {current.scope} because of a rollback; "
                "promote a validated version to move on"
            )
        previous = model_versions.get_by_version(session, current.previous_version)
        leaving = model_versions.get_by_version(session, current.version)
    load_version(previous, models_dir=models_dir, device=_CHECK_DEVICE)  # the version returned to must be intact
    with session_factory.begin() as session:
        audit_log.lock_head(session)
        if deployments.latest(session, site) != current:
            raise DeploymentRefusedError(f"{current.scope} was switched again while this rollback was prepared")
        record = deployments.record_switch(
            session, version_id=previous.id, action="rollback", switched_by=actor, now=now(), reason=reason, site=site
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.MODEL_ROLLED_BACK,
            subject=previous.version,
            payload={
                "sites": None if site is None else [site],
                "switches": [_switch_payload(record, leaving)],
                "to_weights_sha256": previous.weights_sha256,
                "reason": reason,
            },
            recorded_at=record.switched_at.isoformat(),
        )
    return record


# --- history and tags ---------------------------------------------------------------------------


def served_at(session_factory: SessionFactory, *, site: str, at: datetime) -> Served:
    """Which version served ``site`` at ``at``, and the site calibrator in effect for it then.

    The site's newest switch of its own made by ``at``, else the fleet's newest; the calibrator is
    the one approved for that version at ``site`` most recently by ``at`` (approving one retires
    the one before, so it was in force from its approval until the next).

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    """
    with session_factory() as session:
        site_id = site_store.get_site(session, site).id
        record = deployments.served_at(session, at, site)
        calibrators = (
            []
            if record is None
            else site_calibrators.list_calibrators(session, model_version_id=record.version_id, site_id=site_id)
        )
    return Served(site, at, record, calibrator_in_effect(calibrators, at))


def calibrator_in_effect(
    calibrators: Sequence[site_calibrators.SiteCalibratorRecord], at: datetime
) -> site_calibrators.SiteCalibratorRecord | None:
    """The calibrator in force at ``at`` among one version's calibrators at one site.

    The newest approval at or before ``at`` (the id breaks a tie within one instant); a proposed
    calibrator never was in force. Pure: the caller reads the calibrators.
    """
    approved = [c for c in calibrators if c.approved_at is not None and c.approved_at <= at]
    return max(approved, key=lambda c: (c.approved_at, c.id), default=None)


def deployment_history(session_factory: SessionFactory, site: str | None = None) -> list[DeploymentRecord]:
    """Every switch, oldest first; with ``site``, the ones that applied to it (its own and the fleet's).

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    """
    with session_factory() as session:
        if site is not None:
            site_store.get_site(session, site)
        return deployments.history(session, site)


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
class SiteServing:
    """What serves one site now: its own newest switch, or the fleet's, and where a rollback of it goes."""

    site: str
    deployment: DeploymentRecord | None
    own: bool
    rollback_to: str | None


@dataclass(frozen=True, slots=True)
class DeploymentOverview:
    """Everything the Deployment page shows, read in one transaction.

    ``serving`` and ``rollback_to`` are the fleet-wide scope's; ``sites`` says what serves each
    registered site.
    """

    serving: DeploymentRecord | None
    rollback_to: str | None
    versions: tuple[model_versions.ModelVersionRecord, ...]
    tags: dict[str, tuple[str, ...]]
    validations: tuple[ValidationSummary, ...]
    history: tuple[DeploymentRecord, ...]
    sites: tuple[SiteServing, ...] = ()

    def promotable(self) -> tuple[str, ...]:
        """Versions whose newest gate run against a version serving now (fleet-wide or at a site) passed."""
        serving = {d.version for d in (self.serving, *(s.deployment for s in self.sites)) if d is not None}
        newest: dict[tuple[str, str], ValidationSummary] = {}
        for v in self.validations:  # newest first
            if v.champion in serving:
                newest.setdefault((v.challenger, v.champion), v)
        passed = [challenger for (challenger, _), v in newest.items() if v.passed]
        return tuple(dict.fromkeys(name for name in passed if self.serving is None or name != self.serving.version))


def overview(session_factory: SessionFactory, user: SignedInUser | None) -> DeploymentOverview:
    """The serving versions (fleet-wide and per site), the registry, the gate runs and the history.

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
        fleet, per_site = _serving_now(session)
    return DeploymentOverview(fleet, _rollback_target(fleet), tuple(records), tags, validations, history, per_site)


def serving_now(session_factory: SessionFactory) -> tuple[DeploymentRecord | None, tuple[SiteServing, ...]]:
    """The newest fleet-wide switch (None before any) and what serves each registered site (``vigil deploy status``)."""
    with session_factory() as session:
        return _serving_now(session)


def _serving_now(session: Session) -> tuple[DeploymentRecord | None, tuple[SiteServing, ...]]:
    fleet = deployments.latest(session)
    return fleet, tuple(_site_serving(session, s.name, fleet) for s in site_store.list_sites(session))


def _site_serving(session: Session, site: str, fleet: DeploymentRecord | None) -> SiteServing:
    own = deployments.latest(session, site)
    return SiteServing(site, own or fleet, own is not None, _rollback_target(own))


def _rollback_target(current: DeploymentRecord | None) -> str | None:
    return None if current is None or current.action == "rollback" else current.previous_version


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


def promote_as(  # noqa: PLR0913 - the signer, the version and password, then keywords
    session_factory: SessionFactory,
    user: SignedInUser | None,
    version: str,
    password: str,
    *,
    models_dir: Path,
    now: Callable[[], datetime],
    sites: Sequence[str] = (),
    per_site_allowed: bool = True,
) -> tuple[DeploymentRecord, ...]:
    """:func:`promote` of ``sites`` (fleet-wide when empty), signed by the signed-in user with their password again."""
    signer = require(user, Permission.APPROVE_DEPLOYMENT)
    return promote(
        session_factory,
        version,
        signer=signer.username,
        password=password,
        models_dir=models_dir,
        actor=signer.username,
        now=now,
        sites=sites,
        per_site_allowed=per_site_allowed,
    )


def request_promotion_signature_as(  # noqa: PLR0913 - the signer and the version, then keywords
    session_factory: SessionFactory,
    user: SignedInUser | None,
    version: str,
    *,
    models_dir: Path,
    now: Callable[[], datetime],
    sites: Sequence[str] = (),
    per_site_allowed: bool = True,
) -> SignatureRequestRecord:
    """Ask to sign the promotion of ``version`` at the identity provider (single sign-on accounts).

    Everything a promotion checks before its signature is checked now, so the signer does not
    re-authenticate for an act that would be refused; the request then waits for
    :func:`promote_signed_at_provider_as` (see ``core.services.provider_signature``), audited as
    ``signature_requested``. A request the signer had waiting is replaced.

    Raises
    ------
    PermissionDeniedError, BadInputError, UnknownSiteError, UnknownModelVersionError, DeploymentRefusedError
        As :func:`promote` before its signature; nothing is kept.
    """
    signer = require(user, Permission.APPROVE_DEPLOYMENT)
    names = _site_names(sites)
    _prepare(session_factory, version, names, per_site_allowed=per_site_allowed, models_dir=models_dir)
    moment = now()
    return write_with_retries(
        session_factory,
        lambda s: provider_signature.request(
            s, signer, meaning=SIGNATURE_MEANING, subject=version, scope={"sites": list(names)}, now=moment
        ),
    )


def promote_signed_at_provider_as(  # noqa: PLR0913 - the signer and their proof, then keywords
    session_factory: SessionFactory,
    user: SignedInUser | None,
    proof: provider_signature.ProviderReauthentication,
    *,
    models_dir: Path,
    now: Callable[[], datetime],
    per_site_allowed: bool = True,
) -> tuple[DeploymentRecord, ...]:
    """Complete the promotion the signed-in user asked to sign, with their re-authentication at the provider.

    The gate, the serving versions and the sites are checked again (they may have changed while
    the signer was away); the switch, its audit entry and the deletion of the request are one
    transaction. The manifest records the issuer, the subject and when the provider authenticated
    the signer, beside the request's time.

    Raises
    ------
    BadInputError
        No request waits (or it lapsed), or it was withdrawn or replaced meanwhile.
    SignatureFailedError
        :func:`core.services.provider_signature.verify` refused ``proof`` (audited).
    DeploymentRefusedError, UnknownSiteError, UnknownModelVersionError, ModelTamperedError
        As :func:`promote`.
    """
    signer = require(user, Permission.APPROVE_DEPLOYMENT)
    role, request = provider_signature.verify(
        session_factory, signer.username, proof, permission=Permission.APPROVE_DEPLOYMENT, now=now
    )
    if request.meaning != SIGNATURE_MEANING:
        raise BadInputError(f"the waiting signature means {request.meaning!r}, not {SIGNATURE_MEANING!r}")
    names = _site_names(signature_sites(request))
    target, scopes = _prepare(
        session_factory, request.subject, names, per_site_allowed=per_site_allowed, models_dir=models_dir
    )
    how = {**proof.to_dict(), "requested_at": request.requested_at.isoformat()}
    signed = _Signed(signer.username, role.value, how, request)
    return _switch(session_factory, target, scopes, names, signed, actor=signer.username, now=now)


def signature_sites(request: SignatureRequestRecord) -> list[str]:
    """The sites a waiting promotion names (empty: every site without a switch of its own)."""
    sites = request.scope.get("sites")
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise BadInputError(f"the waiting signature's sites are not a list of names: {sites!r}")
    return [str(s) for s in sites]


def pending_signature_as(
    session_factory: SessionFactory, user: SignedInUser | None, *, now: datetime
) -> SignatureRequestRecord | None:
    """The promotion the signed-in user asked to sign at the identity provider, while it waits."""
    signer = require(user, Permission.APPROVE_DEPLOYMENT)
    return provider_signature.pending(session_factory, signer.username, now=now)


def withdraw_signature_as(
    session_factory: SessionFactory, user: SignedInUser | None, *, now: Callable[[], datetime]
) -> bool:
    """Withdraw the signed-in user's waiting signature (audited); whether one waited."""
    return provider_signature.cancel(session_factory, require(user, Permission.APPROVE_DEPLOYMENT), now=now)


def rollback_as(  # noqa: PLR0913 - keyword-only
    session_factory: SessionFactory,
    user: SignedInUser | None,
    *,
    reason: str,
    models_dir: Path,
    now: Callable[[], datetime],
    site: str | None = None,
) -> DeploymentRecord:
    """:func:`rollback` of ``site`` (the fleet when None) by the signed-in user (a CMIO or an ML engineer)."""
    actor = require_any(user, ACTIONS["roll back"])
    text = reason.strip()
    if not text:
        raise BadInputError("a rollback needs a reason")
    return rollback(
        session_factory, reason=text[:2000], models_dir=models_dir, actor=actor.username, now=now, site=site
    )
