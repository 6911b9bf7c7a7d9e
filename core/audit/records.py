"""What the audit ledger records about a stored row: a fixed field list per kind and its SHA-256.

Pure: no storage, no clock. The services that write a prediction, explanation, feedback or
outcome row put :func:`record_sha256` of the row, as read back after the insert, into the audit
entry of the same transaction; ``vigil audit verify`` recomputes it from the row as stored now
(``core.services.audit_records``), so an edit of the row in its own table is caught and named.

The hashed body is the canonical JSON (:func:`core.audit.chain.canonical_json`) of
``{"kind": <kind>, <field>: <value>, ...}`` over exactly :data:`RECORD_FIELDS` of the kind, with
values as the store returns them: datetimes as UTC ISO-8601 text
(``"2026-11-28T12:00:00+00:00"``), floats as stored (shortest round-trip repr), booleans as
JSON booleans, absent values as ``null``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from core.audit.chain import canonical_json
from core.audit.events import AuditAction
from core.types import JSONValue

__all__ = [
    "BULK_HASH_KEY",
    "RECORD_ACTIONS",
    "RECORD_FIELDS",
    "RECORD_HASH_KEY",
    "RecordAction",
    "RecordKind",
    "changed_fields",
    "record_sha256",
    "record_value",
]


class RecordKind(StrEnum):
    """The tables whose rows are cross-checked against the ledger; the values are hashed."""

    PREDICTION = "prediction"
    EXPLANATION = "explanation"
    FEEDBACK = "feedback"
    OUTCOME = "outcome"


#: Every column of each kind's table (``prediction``, ``explanation``, ``clinician_feedback``,
#: ``outcome``), in the order of ``core/store/tables.py``. Fixed: adding a column to a table does
#: not add it here, and changing this list changes every hash, so it is never edited once released.
RECORD_FIELDS: Final[Mapping[RecordKind, tuple[str, ...]]] = MappingProxyType(
    {
        RecordKind.PREDICTION: (
            "id",
            "instance_id",
            "model_version_id",
            "input_sha256",
            "score",
            "label",
            "threshold",
            "latency_ms",
            "device",
            "peak_memory_bytes",
            "fallback",
            "created_at",
        ),
        RecordKind.EXPLANATION: (
            "id",
            "prediction_id",
            "method",
            "params_json",
            "artifact_sha256",
            "artifact_path",
            "created_at",
        ),
        RecordKind.FEEDBACK: (
            "id",
            "study_id",
            "prediction_id",
            "user_id",
            "reader_role",
            "agrees",
            "finding",
            "confidence",
            "explanation_rating",
            "comment",
            "time_on_case_ms",
            "supersedes_id",
            "idempotency_key",
            "created_at",
        ),
        RecordKind.OUTCOME: (
            "id",
            "study_id",
            "source",
            "label",
            "source_ref",
            "detail",
            "recorded_by",
            "effective_at",
            "created_at",
        ),
    }
)

#: Payload key of a single-record entry: the hex SHA-256 of the row its id key names.
RECORD_HASH_KEY: Final = "record_sha256"
#: Payload key of a bulk outcome entry: ``{"<outcome id>": "<hex SHA-256>", ...}``, one per row written.
BULK_HASH_KEY: Final = "outcome_sha256"


@dataclass(frozen=True, slots=True)
class RecordAction:
    """How an audit action records rows of one kind.

    Attributes
    ----------
    kind : RecordKind
        The table its rows belong to.
    id_key : str or None
        Payload key holding the one row's id (single-record entries, hash under
        :data:`RECORD_HASH_KEY`); None for bulk entries (hashes under :data:`BULK_HASH_KEY`).
    count_key : str or None
        Bulk entries only: payload key counting the rows written, which is all an entry written
        before record hashes existed says about them.
    source : str or None
        Bulk entries only: the ``outcome.source`` of the rows it writes.
    """

    kind: RecordKind
    id_key: str | None
    count_key: str | None = None
    source: str | None = None


#: Every action whose entry records the hashes of the rows written in its transaction.
RECORD_ACTIONS: Final[Mapping[AuditAction, RecordAction]] = MappingProxyType(
    {
        AuditAction.PREDICTION_MADE: RecordAction(RecordKind.PREDICTION, "prediction_id"),
        AuditAction.PREDICTION_SKIPPED: RecordAction(RecordKind.PREDICTION, "prediction_id"),
        AuditAction.EXPLANATION_CREATED: RecordAction(RecordKind.EXPLANATION, "explanation_id"),
        AuditAction.FEEDBACK_RECORDED: RecordAction(RecordKind.FEEDBACK, "feedback_id"),
        AuditAction.ADJUDICATION_RECORDED: RecordAction(RecordKind.OUTCOME, "outcome_id"),
        AuditAction.GROUND_TRUTH_LOADED: RecordAction(RecordKind.OUTCOME, None, "loaded", "ground_truth"),
        AuditAction.OUTCOMES_INGESTED: RecordAction(RecordKind.OUTCOME, None, "outcomes", "emr"),
        AuditAction.EMR_RELINKED: RecordAction(RecordKind.OUTCOME, None, "outcomes", "emr"),
    }
)


def record_value(value: object) -> JSONValue:
    """One field as it is hashed: aware datetimes as UTC ISO-8601 text, JSON scalars unchanged.

    Raises
    ------
    ValueError
        If ``value`` is a naive datetime.
    TypeError
        If ``value`` is not a JSON scalar or a datetime.

    Examples
    --------
    >>> from datetime import timezone, timedelta
    >>> record_value(datetime(2026, 11, 28, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    '2026-11-28T12:00:00+00:00'
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()!r}: rows hold aware UTC datetimes")
        return value.astimezone(UTC).isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a record field must be a JSON scalar or a datetime, got {type(value).__name__}")


def record_sha256(kind: RecordKind | str, fields: Mapping[str, object]) -> str:
    """Hex SHA-256 of one row: canonical JSON of ``{"kind": kind, **fields}``.

    Parameters
    ----------
    kind : RecordKind or str
        Which table the row is from.
    fields : Mapping of str to object
        Exactly :data:`RECORD_FIELDS` ``[kind]``, valued as the store returns them.

    Returns
    -------
    str
        64 lower-case hex digits.

    Raises
    ------
    ValueError
        If ``fields`` lacks a field of the kind or holds another, or a value is NaN, an
        infinity or a naive datetime.

    Examples
    --------
    >>> fields = {"id": 1, "study_id": 2, "source": "emr", "label": True, "source_ref": "Condition/7@1",
    ...           "detail": "", "recorded_by": "t", "effective_at": None,
    ...           "created_at": datetime(2026, 11, 28, 12, 0, tzinfo=UTC)}
    >>> record_sha256("outcome", fields) == record_sha256(RecordKind.OUTCOME, dict(fields))
    True
    """
    kind = RecordKind(kind)
    expected = RECORD_FIELDS[kind]
    if set(fields) != set(expected):
        missing = sorted(set(expected) - set(fields))
        extra = sorted(set(fields) - set(expected))
        raise ValueError(f"{kind} record fields differ from the fixed list: missing {missing}, extra {extra}")
    body: dict[str, JSONValue] = {name: record_value(fields[name]) for name in expected}
    body["kind"] = str(kind)
    return hashlib.sha256(canonical_json(body)).hexdigest()


def changed_fields(
    kind: RecordKind | str, fields: Mapping[str, object], payload: Mapping[str, JSONValue]
) -> tuple[str, ...]:
    """The row's fields that the entry's payload also recorded and that now differ, in field order.

    An entry records some fields beside the hash (a prediction's ``score`` and ``label``, say);
    those can be named when a row no longer matches its hash. Fields the payload lacks cannot be.

    Examples
    --------
    >>> changed_fields("outcome", {"id": 3, "label": False, "detail": "x"}, {"outcome_id": 3, "label": True})
    ('label',)
    """
    names = RECORD_FIELDS[RecordKind(kind)]
    return tuple(
        name
        for name in names
        if name != "id" and name in payload and name in fields and record_value(fields[name]) != payload[name]
    )
