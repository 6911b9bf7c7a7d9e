"""Faithfulness and sanity reports of model versions' explanation methods (table ``explain_report``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.store.tables import ExplainReportRow, ModelVersionRow
from core.types import JSONObject, JSONValue

__all__ = ["ExplainReportRecord", "add_report", "latest_report", "list_reports"]


@dataclass(frozen=True, slots=True)
class ExplainReportRecord:
    """A stored report.

    Attributes
    ----------
    report_json : str
        Canonical JSON, exactly as stored and hashed; :attr:`report` parses it.
    report_sha256 : str
        Hex SHA-256 of ``report_json``'s UTF-8 bytes.
    """

    id: int
    model_version: str
    report_json: str
    report_sha256: str
    created_by: str
    created_at: datetime

    @property
    def report(self) -> JSONObject:
        """The report as a fresh dict."""
        return cast(JSONObject, json.loads(self.report_json))


def add_report(
    session: Session,
    *,
    model_version_id: int,
    report: Mapping[str, JSONValue],
    created_by: str,
    now: datetime,
) -> ExplainReportRecord:
    """Stage one report as canonical JSON. The caller owns the transaction.

    Raises
    ------
    ValueError
        ``report`` holds NaN or an infinity (canonical JSON refuses them; use None).
    sqlalchemy.exc.IntegrityError
        ``model_version_id`` does not exist.
    """
    text = canonical_json(dict(report)).decode("utf-8")
    row = ExplainReportRow(
        model_version_id=model_version_id,
        report_json=text,
        report_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        created_by=created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    version = session.get_one(ModelVersionRow, model_version_id).version
    return _record(row, version)


def latest_report(session: Session, model_version_id: int) -> ExplainReportRecord | None:
    """The most recent report of a model version, or None."""
    rows = list_reports(session, model_version_id)
    return rows[-1] if rows else None


def list_reports(session: Session, model_version_id: int) -> list[ExplainReportRecord]:
    """Every report of a model version, oldest first."""
    query = (
        select(ExplainReportRow, ModelVersionRow.version)
        .join(ModelVersionRow, ExplainReportRow.model_version_id == ModelVersionRow.id)
        .where(ExplainReportRow.model_version_id == model_version_id)
        .order_by(ExplainReportRow.id)
    )
    return [_record(row, version) for row, version in session.execute(query)]


def _record(row: ExplainReportRow, version: str) -> ExplainReportRecord:
    return ExplainReportRecord(
        id=row.id,
        model_version=version,
        report_json=row.report_json,
        report_sha256=row.report_sha256,
        created_by=row.created_by,
        created_at=row.created_at,
    )
