"""Explanation artifacts (Grad-CAM, SHAP maps) recorded against a prediction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.store.predictions import PredictionRecord
from core.store.tables import ExplanationRow, ModelVersionRow, PredictionRow
from core.types import JSONObject, JSONValue

__all__ = [
    "ExplanationIn",
    "ExplanationRecord",
    "add_explanation",
    "add_explanations",
    "list_explanations",
    "scored_predictions_of_instance",
]


@dataclass(frozen=True, slots=True)
class ExplanationIn:
    """An explanation written to disk.

    Attributes
    ----------
    prediction_id : int
        The prediction it explains.
    method : str
        ``"gradcam"``, ``"gradientshap"`` or ``"kernelshap"``.
    params : Mapping of str to JSON values
        Every parameter that determines the map (target layer, baselines, n_samples, seed...).
    artifact_sha256 : str
        Hex SHA-256 of the artifact file's bytes.
    artifact_path : str
        Where the float32 ``.npy`` map lives (content-addressed under ``VIGIL_HOME``).
    """

    prediction_id: int
    method: str
    params: Mapping[str, JSONValue]
    artifact_sha256: str
    artifact_path: str


@dataclass(frozen=True, slots=True)
class ExplanationRecord:
    """A stored explanation; ``params_json`` is canonical JSON, :attr:`params` parses it."""

    id: int
    prediction_id: int
    method: str
    params_json: str
    artifact_sha256: str
    artifact_path: str
    created_at: datetime

    @property
    def params(self) -> JSONObject:
        """The parameters as a fresh dict."""
        return cast(JSONObject, json.loads(self.params_json))

    @classmethod
    def from_row(cls, row: ExplanationRow) -> ExplanationRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(
            id=row.id,
            prediction_id=row.prediction_id,
            method=row.method,
            params_json=row.params_json,
            artifact_sha256=row.artifact_sha256,
            artifact_path=row.artifact_path,
            created_at=row.created_at,
        )


def add_explanation(session: Session, explanation: ExplanationIn, *, now: datetime) -> ExplanationRecord:
    """Stage one explanation. The caller owns the transaction.

    Raises
    ------
    ValueError
        If ``params`` holds NaN or an infinity.
    sqlalchemy.exc.IntegrityError
        If ``prediction_id`` does not exist.
    """
    return add_explanations(session, [(explanation, now)])[0]


def add_explanations(session: Session, rows: Sequence[tuple[ExplanationIn, datetime]]) -> list[ExplanationRecord]:
    """Stage explanations, each with its creation time, in one flush; as :func:`add_explanation` each.

    Every row is checked before any is staged. Returns the records in the order given.
    """
    staged = [
        ExplanationRow(
            prediction_id=explanation.prediction_id,
            method=explanation.method,
            params_json=canonical_json(dict(explanation.params)).decode("utf-8"),
            artifact_sha256=explanation.artifact_sha256,
            artifact_path=explanation.artifact_path,
            created_at=now,
        )
        for explanation, now in rows
    ]
    session.add_all(staged)
    session.flush()
    return [ExplanationRecord.from_row(row) for row in staged]


def list_explanations(session: Session, prediction_id: int) -> list[ExplanationRecord]:
    """Every explanation of one prediction, oldest first."""
    query = select(ExplanationRow).where(ExplanationRow.prediction_id == prediction_id).order_by(ExplanationRow.id)
    return [ExplanationRecord.from_row(row) for row in session.scalars(query)]


def scored_predictions_of_instance(session: Session, instance_id: int) -> list[tuple[PredictionRecord, str]]:
    """Every scored prediction of one instance with its model version's name, newest first.

    Explanations by a version that did not score the study link to one of these and say so.
    """
    query = (
        select(PredictionRow, ModelVersionRow.version)
        .join(ModelVersionRow, PredictionRow.model_version_id == ModelVersionRow.id)
        .where(PredictionRow.instance_id == instance_id, PredictionRow.score.is_not(None))
        .order_by(PredictionRow.id.desc())
    )
    return [(PredictionRecord.from_row(row), version) for row, version in session.execute(query)]
