"""Change-control gate runs: one row per challenger evaluated against the champion under a plan."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.store.tables import ChangeValidationRow
from core.types import JSONObject

__all__ = ["ValidationRecord", "add", "count_holdout_uses", "get", "latest_for", "list_all"]


@dataclass(frozen=True, slots=True)
class ValidationRecord:
    """A stored gate run; ``report`` is the report exactly as stored (canonical JSON)."""

    id: int
    challenger_id: int
    champion_id: int
    plan_id: str
    plan_version: str
    plan_sha256: str
    holdout_sha256: str
    passed: bool
    significant_change: bool
    report_json: str
    report_sha256: str
    actor: str
    created_at: datetime

    @property
    def report(self) -> JSONObject:
        """The report as a fresh dict."""
        return cast(JSONObject, json.loads(self.report_json))

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The sites this run judged, or None for the whole hold-out (runs before scopes existed too)."""
        scope = self.report.get("scope")
        return None if not isinstance(scope, list) else tuple(str(s) for s in scope)

    @classmethod
    def from_row(cls, row: ChangeValidationRow) -> ValidationRecord:
        """Copy a row into a record that outlives its session."""
        return cls(
            row.id,
            row.challenger_id,
            row.champion_id,
            row.plan_id,
            row.plan_version,
            row.plan_sha256,
            row.holdout_sha256,
            row.passed,
            row.significant_change,
            row.report_json,
            row.report_sha256,
            row.actor,
            row.created_at,
        )


def add(  # noqa: PLR0913 - one keyword per stored column
    session: Session,
    *,
    challenger_id: int,
    champion_id: int,
    plan_id: str,
    plan_version: str,
    plan_sha256: str,
    holdout_sha256: str,
    passed: bool,
    significant_change: bool,
    report: JSONObject,
    actor: str,
    now: datetime,
) -> ValidationRecord:
    """Stage a gate run; the report is stored as canonical JSON with its SHA-256."""
    text = canonical_json(report)
    row = ChangeValidationRow(
        challenger_id=challenger_id,
        champion_id=champion_id,
        plan_id=plan_id,
        plan_version=plan_version,
        plan_sha256=plan_sha256,
        holdout_sha256=holdout_sha256,
        passed=passed,
        significant_change=significant_change,
        report_json=text.decode("utf-8"),
        report_sha256=hashlib.sha256(text).hexdigest(),
        actor=actor,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return ValidationRecord.from_row(row)


def get(session: Session, validation_id: int) -> ValidationRecord | None:
    """One gate run by id."""
    row = session.get(ChangeValidationRow, validation_id)
    return None if row is None else ValidationRecord.from_row(row)


def latest_for(
    session: Session, challenger_id: int, champion_id: int, *, site: str | None = None
) -> ValidationRecord | None:
    """The newest gate run of ``challenger_id`` against ``champion_id`` that judged ``site``.

    A run's report may name a ``scope`` (the sites whose hold-out studies it judged): it speaks
    for those sites only. With ``site`` None the newest run over the whole hold-out is returned;
    otherwise the newest run over the whole hold-out or over a scope naming ``site``.
    """
    query = (
        select(ChangeValidationRow)
        .where(ChangeValidationRow.challenger_id == challenger_id, ChangeValidationRow.champion_id == champion_id)
        .order_by(ChangeValidationRow.id.desc())
    )
    for row in session.scalars(query):
        record = ValidationRecord.from_row(row)
        scope = record.scope
        if scope is None or (site is not None and site in scope):
            return record
    return None


def list_all(session: Session) -> list[ValidationRecord]:
    """Every gate run, newest first."""
    query = select(ChangeValidationRow).order_by(ChangeValidationRow.id.desc())
    return [ValidationRecord.from_row(row) for row in session.scalars(query)]


def count_holdout_uses(session: Session, holdout_sha256: str) -> int:
    """How many stored gate runs were judged on the hold-out with this SHA-256."""
    query = (
        select(func.count())
        .select_from(ChangeValidationRow)
        .where(ChangeValidationRow.holdout_sha256 == holdout_sha256)
    )
    return int(session.scalars(query).one())
