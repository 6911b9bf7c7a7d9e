"""Per-site recalibration: fit (Platt or isotonic, cross-validated), approve, and apply only once approved.

Fitting stores a ``proposed`` calibrator with its out-of-fold ECE and Brier score before and after;
nothing changes for anyone until a person with the right to approve deployments approves it. Both
steps are audited. Scores are recalibrated on read by :func:`recalibrate`, which uses only the
approved calibrator, and the stored predictions are never altered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from core.audit.events import AuditAction
from core.errors import BadInputError
from core.metrics.recalibration import (
    CalibratorMethod,
    CrossValidatedCalibration,
    calibrator_from_params,
    cross_validate_calibrator,
)
from core.services.outcomes import evaluation_set
from core.services.permissions import Permission, SignedInUser, require
from core.store import audit_log, model_versions, site_calibrators, sites
from core.store.engine import SessionFactory
from core.store.site_calibrators import SiteCalibratorIn, SiteCalibratorRecord
from core.types import FloatArray, JSONObject

__all__ = [
    "AUTO",
    "CalibrationFit",
    "approve_site_calibrator",
    "fit_site_calibrator",
    "list_site_calibrators",
    "recalibrate",
]

#: Method name that fits both and keeps the one with the lower out-of-fold ECE.
AUTO = "auto"


@dataclass(frozen=True, slots=True)
class CalibrationFit:
    """The stored (proposed) calibrator and every method that was cross-validated."""

    calibrator: SiteCalibratorRecord
    candidates: tuple[CrossValidatedCalibration, ...]

    def to_dict(self) -> JSONObject:
        """The ``--json`` object."""
        return {"calibrator": self.calibrator.to_dict(), "candidates": [c.to_dict() for c in self.candidates]}


def fit_site_calibrator(
    session_factory: SessionFactory,
    site: str,
    *,
    method: str = AUTO,
    model_version: str | None = None,
    n_folds: int = 5,
    random_state: int = 0,
    actor: str,
    now: Callable[[], datetime],
) -> CalibrationFit:
    """Fit a calibrator on ``site``'s labelled cases and store it as ``proposed`` (audited).

    Parameters
    ----------
    site : str
        A registered site.
    method : {"auto", "platt", "isotonic"}, default "auto"
        ``auto`` cross-validates both and keeps the lower out-of-fold ECE (Platt on a tie).
    model_version : str, optional
        The serving version when None.
    n_folds : int, default 5
    random_state : int, default 0
        Seeds the folds.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    UnknownMethodError
        ``method`` is not one of the above.
    BadInputError
        Too few labelled cases of a class for ``n_folds``-fold cross-validation.
    """
    methods = _methods(method)
    ev = evaluation_set(session_factory, model_version=model_version)
    with session_factory() as session:
        site_rec = sites.get_site(session, site)
    cases = [
        s
        for s in ev.studies
        if s.site == site and s.score is not None and s.study_id in ev.labels.labels and s.study_id not in ev.excluded
    ]
    y = np.array([ev.labels.labels[s.study_id].label for s in cases], dtype=np.int64)
    p = np.array([s.score for s in cases], dtype=np.float64)
    if y.size == 0:
        raise BadInputError(f"site {site!r} has no labelled, scored cases to recalibrate on")
    candidates = tuple(
        cross_validate_calibrator(y, p, method=m, n_folds=n_folds, random_state=random_state) for m in methods
    )
    best = min(candidates, key=lambda c: (c.ece_after, c.method != CalibratorMethod.PLATT))
    staged = SiteCalibratorIn(
        model_version_id=ev.model_version.id,
        site_id=site_rec.id,
        method=str(best.method),
        params=best.calibrator.to_params(),
        n_cases=best.n_cases,
        n_folds=n_folds,
        ece_before=best.ece_before,
        ece_after=best.ece_after,
        brier_before=best.brier_before,
        brier_after=best.brier_after,
        created_by=actor,
    )
    with session_factory.begin() as session:
        record = site_calibrators.add_calibrator(session, staged, now=now())
        payload = record.to_dict()
        payload["candidates"] = [{k: v for k, v in c.to_dict().items() if k != "params"} for c in candidates]
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.SITE_CALIBRATOR_FITTED,
            subject=f"{ev.model_version.version}@{site}",
            payload=payload,
            recorded_at=now().isoformat(),
        )
    return CalibrationFit(record, candidates)


def _methods(method: str) -> Sequence[CalibratorMethod]:
    if method == AUTO:
        return (CalibratorMethod.PLATT, CalibratorMethod.ISOTONIC)
    from core.metrics.recalibration import make_calibrator

    return (make_calibrator(method).method,)  # raises UnknownMethodError naming the value


def approve_site_calibrator(
    session_factory: SessionFactory,
    calibrator_id: int,
    *,
    actor: str,
    now: Callable[[], datetime],
    user: SignedInUser | None = None,
) -> SiteCalibratorRecord:
    """Approve a proposed calibrator: from now on it recalibrates its site's scores (audited).

    Parameters
    ----------
    user : SignedInUser, optional
        When a signed-in person acts, they need the ``approve_deployment`` permission.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not approve deployments.
    UnknownCalibratorError, CalibratorStateError
        No such calibrator, or it is not ``proposed``.
    """
    if user is not None:
        require(user, Permission.APPROVE_DEPLOYMENT)
    with session_factory.begin() as session:
        record = site_calibrators.approve_calibrator(session, calibrator_id, approved_by=actor, now=now())
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.SITE_CALIBRATOR_APPROVED,
            subject=f"{record.model_version}@{record.site}",
            payload={
                "calibrator_id": record.id,
                "revision": record.revision,
                "method": record.method,
                "site": record.site,
                "model_version": record.model_version,
            },
            recorded_at=now().isoformat(),
        )
    return record


def list_site_calibrators(
    session_factory: SessionFactory, *, site: str | None = None, model_version: str | None = None
) -> list[SiteCalibratorRecord]:
    """Stored calibrators, optionally of one site and/or one model version (oldest first)."""
    with session_factory() as session:
        site_id = sites.get_site(session, site).id if site is not None else None
        mv_id = model_versions.get_by_version(session, model_version).id if model_version is not None else None
        return site_calibrators.list_calibrators(session, model_version_id=mv_id, site_id=site_id)


def recalibrate(
    session_factory: SessionFactory, scores: npt.ArrayLike, *, site: str, model_version: str
) -> FloatArray | None:
    """``scores`` of ``model_version`` at ``site`` through the approved calibrator; None when none is approved.

    Returns
    -------
    ndarray of shape (n_samples,) or None
        Recalibrated probabilities; a proposed (unapproved) calibrator is never applied.
    """
    with session_factory() as session:
        mv = model_versions.get_by_version(session, model_version)
        approved = site_calibrators.approved_calibrator(session, mv.id, sites.get_site(session, site).id)
    if approved is None:
        return None
    calibrator = calibrator_from_params(approved.method, approved.params)
    return np.clip(calibrator.predict(np.asarray(scores, dtype=np.float64)), 0.0, 1.0)
