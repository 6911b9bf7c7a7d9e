"""Site calibrators: versioned recalibrations of a model version's probabilities at one site.

A calibrator is stored ``proposed``; only an ``approved`` one recalibrates scores, and approving
one retires the calibrator approved before it for the same model version and site. Parameters
are canonical JSON and never change after staging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.errors import CalibratorStateError, UnknownCalibratorError
from core.store.tables import ModelVersionRow, SiteCalibratorRow, SiteRow
from core.types import JSONObject, JSONValue

__all__ = [
    "CalibratorStatus",
    "SiteCalibratorIn",
    "SiteCalibratorRecord",
    "add_calibrator",
    "approve_calibrator",
    "approved_calibrator",
    "get_calibrator",
    "list_calibrators",
]


class CalibratorStatus(StrEnum):
    """Lifecycle of a site calibrator; the values are stored."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class SiteCalibratorIn:
    """A fitted calibrator and its cross-validated effect, as the service computed them."""

    model_version_id: int
    site_id: int
    method: str
    params: Mapping[str, JSONValue]
    n_cases: int
    n_folds: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    created_by: str


@dataclass(frozen=True, slots=True)
class SiteCalibratorRecord:
    """A stored site calibrator with its model version's and site's names."""

    id: int
    model_version: str
    site: str
    revision: int
    method: str
    params_json: str
    n_cases: int
    n_folds: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    status: CalibratorStatus
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None

    @property
    def params(self) -> JSONObject:
        """The fitted parameters as a fresh dict."""
        return cast(JSONObject, json.loads(self.params_json))

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "id": self.id,
            "model_version": self.model_version,
            "site": self.site,
            "revision": self.revision,
            "method": self.method,
            "params": self.params,
            "n_cases": self.n_cases,
            "n_folds": self.n_folds,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "brier_before": self.brier_before,
            "brier_after": self.brier_after,
            "status": str(self.status),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "approved_by": self.approved_by,
            "approved_at": None if self.approved_at is None else self.approved_at.isoformat(),
        }


def add_calibrator(session: Session, calibrator: SiteCalibratorIn, *, now: datetime) -> SiteCalibratorRecord:
    """Stage a ``proposed`` calibrator as the next revision for its model version and site."""
    latest = session.scalars(
        select(func.max(SiteCalibratorRow.revision)).where(
            SiteCalibratorRow.model_version_id == calibrator.model_version_id,
            SiteCalibratorRow.site_id == calibrator.site_id,
        )
    ).one()
    row = SiteCalibratorRow(
        model_version_id=calibrator.model_version_id,
        site_id=calibrator.site_id,
        revision=(latest or 0) + 1,
        method=calibrator.method,
        params_json=canonical_json(dict(calibrator.params)).decode("utf-8"),
        n_cases=calibrator.n_cases,
        n_folds=calibrator.n_folds,
        ece_before=calibrator.ece_before,
        ece_after=calibrator.ece_after,
        brier_before=calibrator.brier_before,
        brier_after=calibrator.brier_after,
        status=str(CalibratorStatus.PROPOSED),
        created_by=calibrator.created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()  # the unique (model version, site, revision) fires here if a concurrent writer won
    return get_calibrator(session, row.id)


def get_calibrator(session: Session, calibrator_id: int) -> SiteCalibratorRecord:
    """Look a calibrator up by id.

    Raises
    ------
    UnknownCalibratorError
        No calibrator has that id.
    """
    found = session.execute(_records().where(SiteCalibratorRow.id == calibrator_id)).one_or_none()
    if found is None:
        raise UnknownCalibratorError(calibrator_id)
    return _record(*found)


def approve_calibrator(
    session: Session, calibrator_id: int, *, approved_by: str, now: datetime
) -> SiteCalibratorRecord:
    """Approve a proposed calibrator and retire the one approved before it (same model version and site).

    Raises
    ------
    UnknownCalibratorError
        No calibrator has that id.
    CalibratorStateError
        It is not ``proposed`` (already approved, or retired).
    """
    current = get_calibrator(session, calibrator_id)
    if current.status is not CalibratorStatus.PROPOSED:
        raise CalibratorStateError(calibrator_id, str(current.status), "approve it")
    row = session.get_one(SiteCalibratorRow, calibrator_id)
    session.execute(
        update(SiteCalibratorRow)
        .where(
            SiteCalibratorRow.model_version_id == row.model_version_id,
            SiteCalibratorRow.site_id == row.site_id,
            SiteCalibratorRow.status == str(CalibratorStatus.APPROVED),
        )
        .values(status=str(CalibratorStatus.RETIRED)),
        execution_options={"synchronize_session": "fetch"},
    )
    row.status = str(CalibratorStatus.APPROVED)
    row.approved_by = approved_by
    row.approved_at = now
    session.flush()
    return get_calibrator(session, calibrator_id)


def approved_calibrator(session: Session, model_version_id: int, site_id: int) -> SiteCalibratorRecord | None:
    """The calibrator in force for a model version at a site, or None."""
    query = _records().where(
        SiteCalibratorRow.model_version_id == model_version_id,
        SiteCalibratorRow.site_id == site_id,
        SiteCalibratorRow.status == str(CalibratorStatus.APPROVED),
    )
    found = session.execute(query).one_or_none()
    return None if found is None else _record(*found)


def list_calibrators(
    session: Session, *, model_version_id: int | None = None, site_id: int | None = None
) -> list[SiteCalibratorRecord]:
    """Calibrators in the order stored, optionally of one model version and/or one site."""
    query = _records().order_by(SiteCalibratorRow.id)
    if model_version_id is not None:
        query = query.where(SiteCalibratorRow.model_version_id == model_version_id)
    if site_id is not None:
        query = query.where(SiteCalibratorRow.site_id == site_id)
    return [_record(*row) for row in session.execute(query)]


def _records() -> Select[SiteCalibratorRow, str, str]:
    return (
        select(SiteCalibratorRow, ModelVersionRow.version, SiteRow.name)
        .join(ModelVersionRow, SiteCalibratorRow.model_version_id == ModelVersionRow.id)
        .join(SiteRow, SiteCalibratorRow.site_id == SiteRow.id)
    )


def _record(row: SiteCalibratorRow, version: str, site: str) -> SiteCalibratorRecord:
    return SiteCalibratorRecord(
        id=row.id,
        model_version=version,
        site=site,
        revision=row.revision,
        method=row.method,
        params_json=row.params_json,
        n_cases=row.n_cases,
        n_folds=row.n_folds,
        ece_before=row.ece_before,
        ece_after=row.ece_after,
        brier_before=row.brier_before,
        brier_after=row.brier_after,
        status=CalibratorStatus(row.status),
        created_by=row.created_by,
        created_at=row.created_at,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
    )
