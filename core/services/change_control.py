"""``vigil validate-change``: a challenger against the serving champion, on the locked hold-out, by the plan.

The service reads both versions (refusing a changed record or weights file), determines what kind
of modification the challenger is and whether the plan allows it, refuses a challenger whose
training manifest names a hold-out study, scores every labelled hold-out study with both models,
reads the challenger's newest explanation report, and hands arrays to the pure
:func:`core.registry.gate.evaluate_gate`. The report, the hold-out's use and the gate's result
are stored and audited in one transaction: ``holdout_used`` (which studies, and the SHA-256 of
both score vectors) then ``change_validated`` (the plan's hash and the report's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.audit.events import AuditAction
from core.config import Settings
from core.errors import BadInputError, HoldoutLeakError
from core.imaging.dicom import read_dicom
from core.models.inference import predict_images
from core.models.loading import LoadedModel
from core.registry.gate import GateReport, HoldoutScores, evaluate_gate
from core.registry.lineage import trained_uids
from core.registry.modification import classify, determine
from core.registry.plan import DEFAULT_PLAN_PATH, ChangePlan, read_plan
from core.services.holdout import LabelledCase, holdout_cases, holdout_sha256
from core.services.models import load_version
from core.services.permissions import Permission, SignedInUser, require
from core.store import audit_log, change_validations, deployments, explain_reports, model_versions
from core.store import sites as site_store
from core.store.change_validations import ValidationRecord
from core.store.engine import SessionFactory
from core.store.model_versions import ModelVersionRecord
from core.types import JSONObject, JSONValue

__all__ = ["ChangeValidation", "explanation_verdict", "plan_path", "validate_change", "validate_change_as"]

#: The explanation method whose report verdict the plan's ``require_explanation`` refers to.
GATE_METHOD = "gradcam"


@dataclass(frozen=True, slots=True)
class ChangeValidation:
    """A stored gate run and the report it stored."""

    record: ValidationRecord
    report: GateReport
    challenger: str
    champion: str
    holdout_sha256: str

    def to_dict(self) -> JSONObject:
        """The ``--json`` object of ``vigil validate-change``."""
        return {
            "validation_id": self.record.id,
            "challenger_version": self.challenger,
            "champion_version": self.champion,
            "holdout_sha256": self.holdout_sha256,
            "report_sha256": self.record.report_sha256,
            **self.report.to_dict(),
            "scope": self.record.report.get("scope"),
        }


def plan_path(settings: Settings) -> Path:
    """The configured change-control plan, or the bundled one."""
    return settings.change_control_plan if settings.change_control_plan is not None else DEFAULT_PLAN_PATH


def validate_change_as(
    session_factory: SessionFactory,
    user: SignedInUser | None,
    challenger: str,
    *,
    settings: Settings,
    now: Callable[[], datetime],
    site: str | None = None,
    scope: Sequence[str] | None = None,
) -> ChangeValidation:
    """:func:`validate_change` by the signed-in user (an ML engineer), under the configured plan.

    ``site`` and ``scope`` are :func:`validate_change`'s.
    """
    engineer = require(user, Permission.MANAGE_MODELS)
    return validate_change(
        session_factory,
        challenger,
        plan=read_plan(plan_path(settings)),
        models_dir=settings.home / "models",
        actor=engineer.username,
        now=now,
        batch_size=settings.batch_size,
        site=site,
        scope=scope,
    )


def validate_change(  # noqa: PLR0913 - keyword-only; each is one input of the gate
    session_factory: SessionFactory,
    challenger: str,
    *,
    plan: ChangePlan,
    models_dir: Path,
    actor: str,
    now: Callable[[], datetime],
    batch_size: int = 16,
    site: str | None = None,
    scope: Sequence[str] | None = None,
) -> ChangeValidation:
    """Run the change-control gate of ``challenger`` against the serving version and store it.

    The champion is the fleet-wide serving version, or with ``site`` the version serving that
    site: a site switched to a version of its own needs a gate against that version before a
    promotion there (``core.services.deployment.promote`` checks it per site).

    With ``scope`` (registered site names) the challenger is judged for those sites only, as a
    promotion at those sites would serve it: only their hold-out studies are scored, so every
    criterion (each site's AUC, the overall AUC, sensitivity, calibration) is about the studies
    the change would serve, and the champion is the one version serving all of them. A passing
    scoped gate clears a promotion at those sites, never fleet-wide. The hold-out's use is still
    counted against the whole locked hold-out.

    Raises
    ------
    UnknownModelVersionError
        ``challenger`` is not registered.
    ModelTamperedError, WeightsIntegrityError
        Either version changed since registration.
    NoModificationError
        The challenger has the champion's weights and threshold.
    HoldoutLeakError
        The challenger's training manifest names a hold-out study.
    BadInputError
        The challenger is the serving version, nothing serves, or the hold-out holds no labelled study.
    UnknownSiteError
        ``site`` or a site of ``scope`` is not registered.
    """
    scoped = _scope(scope, site)
    with session_factory() as session:
        cand = model_versions.get_by_version(session, challenger)
        champ = _champion(session, site, scoped)
    if champ is None:
        raise BadInputError("no version is serving: `vigil init` registers the first")
    if champ.id == cand.id:
        where = "" if site is None else f" at {site!r}"
        raise BadInputError(f"{challenger!r} is the serving version{where}; validate a challenger against it")
    champion_model, challenger_model = (
        load_version(champ, models_dir=models_dir),
        load_version(cand, models_dir=models_dir),
    )
    determination = determine(plan, classify(champ.card, cand.card))
    locked = holdout_cases(session_factory)
    if not locked:
        raise BadInputError("the hold-out holds no labelled study: lock one with `vigil holdout lock`")
    _refuse_leak(cand, locked)
    held = holdout_sha256(c.study_uid for c in locked)  # a scoped look is still a look at this hold-out
    cases = locked if scoped is None else [c for c in locked if c.site in scoped]
    if not cases:
        raise BadInputError(f"the hold-out holds no labelled study at {', '.join(scoped or ())}")
    y = np.array([c.label for c in cases], dtype=np.int64)
    champion_scores = _scores(champion_model, cases, batch_size)
    challenger_scores = _scores(challenger_model, cases, batch_size)
    scores = HoldoutScores(
        y_true=y,
        sites=tuple(c.site for c in cases),
        champion=champion_scores,
        challenger=challenger_scores,
        champion_threshold=champion_model.card.operating_threshold,
        challenger_threshold=challenger_model.card.operating_threshold,
    )
    report = evaluate_gate(
        plan, scores, explanation_verdict=explanation_verdict(session_factory, cand), determination=determination
    )
    record = _store(session_factory, cand, champ, plan, report, held, cases, scores, scope=scoped, actor=actor, now=now)
    return ChangeValidation(record, report, cand.version, champ.version, held)


def _scope(scope: Sequence[str] | None, site: str | None) -> tuple[str, ...] | None:
    """The scope's distinct site names, sorted; None for the whole hold-out."""
    if scope is None:
        return None
    if site is not None:
        raise BadInputError("a scoped gate takes its champion from its sites: give a scope or a site, not both")
    names = tuple(sorted({s.strip() for s in scope if s.strip()}))
    if not names:
        raise BadInputError(f"a gate's scope names at least one site, got {list(scope)!r}")
    return names


def _champion(session: Session, site: str | None, scope: tuple[str, ...] | None) -> ModelVersionRecord | None:
    """What the challenger is judged against: the version serving the site, the scope or the fleet."""
    if site is None and scope is None:
        return model_versions.serving(session)
    named = (site,) if site is not None else scope or ()
    serving = {}
    for name in named:
        site_store.get_site(session, name)
        serving[name] = deployments.version_serving(session, name)
    versions = {v.version if v is not None else None for v in serving.values()}
    if len(versions) > 1:
        served = ", ".join(f"{n}: {v.version if v is not None else 'none'}" for n, v in serving.items())
        raise BadInputError(f"the scope's sites are served by different versions ({served}): gate each apart")
    return next(iter(serving.values()))


def _refuse_leak(cand: ModelVersionRecord, cases: Sequence[LabelledCase]) -> None:
    leaked = sorted(trained_uids([cand.card]) & {c.study_uid for c in cases})
    if leaked:
        raise HoldoutLeakError(leaked[0], len(leaked))


def _scores(model: LoadedModel, cases: Sequence[LabelledCase], batch_size: int) -> np.ndarray:
    """Probabilities of every case's stored image, shape (n,); a case the model cannot score is an error."""
    images = [read_dicom(Path(c.path)) for c in cases]
    predictions = predict_images(model, images, batch_size=batch_size)
    out = np.empty(len(cases), dtype=np.float64)
    for i, (case, pred) in enumerate(zip(cases, predictions, strict=True)):
        if pred.score is None:
            raise BadInputError(
                f"hold-out study {case.study_uid} cannot be scored by {model.card.version}: {pred.fallback}"
            )
        out[i] = pred.score
    return out


def explanation_verdict(session_factory: SessionFactory, version: ModelVersionRecord) -> str | None:
    """The Grad-CAM trust level of the version's newest explanation report; None without a report."""
    with session_factory() as session:
        stored = explain_reports.latest_report(session, version.id)
    if stored is None:
        return None
    methods = stored.report.get("methods")
    for method in methods if isinstance(methods, list) else []:
        if isinstance(method, dict) and method.get("method") == GATE_METHOD:
            trust = method.get("trust")
            return str(trust) if trust is not None else None
    return None


def _vector_sha256(values: np.ndarray) -> str:
    return hashlib.sha256(canonical_json([round(float(v), 12) for v in values])).hexdigest()


def _store(  # noqa: PLR0913 - everything one gate run records
    session_factory: SessionFactory,
    cand: ModelVersionRecord,
    champ: ModelVersionRecord,
    plan: ChangePlan,
    report: GateReport,
    held: str,
    cases: Sequence[LabelledCase],
    scores: HoldoutScores,
    *,
    scope: tuple[str, ...] | None,
    actor: str,
    now: Callable[[], datetime],
) -> ValidationRecord:
    scope_json: JSONValue = None if scope is None else [*scope]
    data: JSONObject = {**report.to_dict(), "scope": scope_json}
    sites: dict[str, int] = {}
    for c in cases:
        sites[c.site] = sites.get(c.site, 0) + 1
    with session_factory.begin() as session:
        # Every look at the same hold-out spends some of its independence: say how many came before.
        prior = change_validations.count_holdout_uses(session, held)
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.HOLDOUT_USED,
            subject=cand.version,
            payload={
                "purpose": "change-control gate",
                "holdout_sha256": held,
                "n": len(cases),
                "earlier_uses": prior,
                "per_site": dict(sorted(sites.items())),
                "scope": scope_json,
                "champion": champ.version,
                "champion_scores_sha256": _vector_sha256(np.asarray(scores.champion)),
                "challenger_scores_sha256": _vector_sha256(np.asarray(scores.challenger)),
            },
            recorded_at=now().isoformat(),
        )
        record = change_validations.add(
            session,
            challenger_id=cand.id,
            champion_id=champ.id,
            plan_id=plan.id,
            plan_version=plan.version,
            plan_sha256=plan.sha256,
            holdout_sha256=held,
            passed=report.passed,
            significant_change=report.significant_change,
            report={**data, "plan_file": plan.to_dict(), "holdout_earlier_uses": prior},
            actor=actor,
            now=now(),
        )
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.CHANGE_VALIDATED,
            subject=cand.version,
            payload={
                "validation_id": record.id,
                "champion": champ.version,
                "scope": scope_json,
                "passed": report.passed,
                "failed": list(report.failed),
                "significant_change": report.significant_change,
                "plan_id": plan.id,
                "plan_version": plan.version,
                "plan_sha256": plan.sha256,
                "report_sha256": record.report_sha256,
            },
            recorded_at=now().isoformat(),
        )
    return record
