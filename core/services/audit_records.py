"""Cross-check the stored records against the hashes their audit entries recorded.

The hash chain proves the ledger was not edited; it says nothing about the tables beside it. Every
prediction, explanation, feedback and outcome row is written in the same transaction as an audit
entry holding the SHA-256 of the row as stored (:mod:`core.audit.records`). This re-hashes every
row and compares, so a row edited in its own table is named with the ``seq`` of the entry it no
longer matches; a row no entry records is named too, and so is a recorded row that is gone.

Databases written before record hashes existed hold rows whose entries carry no hash. Those rows
are counted as not cross-checkable (``unverifiable``), never as verified: a single-record entry
(prediction, explanation, feedback, adjudication) still names its row's id, so exactly those rows
qualify; a bulk outcome entry (ground truth, EMR ingest, relink) only counted its rows, so at most
that many rows of its source qualify, oldest (lowest id) first, and any beyond are problems.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, cast

from sqlalchemy.orm import Session

from core.audit.events import AuditAction
from core.audit.records import (
    BULK_HASH_KEY,
    RECORD_ACTIONS,
    RECORD_HASH_KEY,
    RecordKind,
    changed_fields,
    record_sha256,
)
from core.store import record_hashes
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["RecordCheck", "RecordProblem", "crosscheck_records"]

_KINDS: Final = tuple(RecordKind)


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """One record that does not match the ledger.

    Attributes
    ----------
    kind : RecordKind
        Its table.
    row_id : int
        Its id.
    seq : int or None
        The audit entry that recorded it; None for a row no entry records.
    reason : str
        One sentence naming the record, the entry and, where the entry recorded them, the
        fields that changed.
    """

    kind: RecordKind
    row_id: int
    seq: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """Outcome of :func:`crosscheck_records`.

    Attributes
    ----------
    ok : bool
        No problem found (rows not cross-checkable do not fail it; they are counted).
    checked : Mapping of str to int
        Rows per kind re-hashed and compared with a recorded hash.
    unverifiable : Mapping of str to int
        Rows per kind written before record hashes existed: audited, but with no hash to compare.
    problems : int
        Rows that differ from their hash, have no entry, or are gone, all kinds together.
    first_problem : RecordProblem or None
        The first found (predictions, explanations, feedback, outcomes, then rows gone).
    """

    ok: bool
    checked: Mapping[str, int]
    unverifiable: Mapping[str, int]
    problems: int = 0
    first_problem: RecordProblem | None = None

    @property
    def reason(self) -> str | None:
        """The first problem's sentence; None when ``ok``."""
        return None if self.first_problem is None else self.first_problem.reason

    def to_dict(self) -> JSONObject:
        """The ``records_*`` fields of ``vigil audit verify --json``."""
        return {
            "records_ok": self.ok,
            "records_checked": dict(self.checked),
            "records_unverifiable": dict(self.unverifiable),
            "records_problems": self.problems,
            "record_problem": self.reason,
        }


@dataclass(slots=True)
class _Recorded:
    """What the ledger recorded: per kind, row id -> (seq, hash); legacy ids and bulk counts."""

    hashes: dict[RecordKind, dict[int, tuple[int, str]]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    legacy_ids: dict[RecordKind, dict[int, int]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    legacy_counts: Counter[str] = field(default_factory=Counter)  # outcome source -> rows counted, no hashes
    problems: list[RecordProblem] = field(default_factory=list)

    def add(self, kind: RecordKind, row_id: int, seq: int, digest: str) -> None:
        earlier = self.hashes[kind].setdefault(row_id, (seq, digest))
        # The first entry stands: a later entry cannot re-vouch for an edited row.
        if earlier[1] != digest:
            self.problems.append(
                RecordProblem(
                    kind,
                    row_id,
                    seq,
                    f"{kind} {row_id}: audit entry seq {seq} records another hash than seq {earlier[0]}",
                )
            )


def crosscheck_records(session_factory: SessionFactory) -> RecordCheck:
    """Re-hash every prediction, explanation, feedback and outcome row and compare with its audit entry.

    One read transaction (a consistent snapshot); the ledger's recorded hashes are held as
    ``id -> (seq, hash)`` per kind, the rows are streamed.

    Returns
    -------
    RecordCheck
        Counts per kind and the first problem, naming the kind, the row id and the entry's ``seq``.
    """
    with session_factory() as session:
        record_hashes.snapshot(session)
        recorded = _read_ledger(session)
        problems = list(recorded.problems)
        checked: Counter[str] = Counter({str(k): 0 for k in _KINDS})
        unverifiable: Counter[str] = Counter({str(k): 0 for k in _KINDS})
        budget = Counter(recorded.legacy_counts)
        for kind in _KINDS:
            for fields in record_hashes.iter_records(session, kind):
                row_id = cast(int, fields["id"])
                entry = recorded.hashes[kind].pop(row_id, None)
                legacy = recorded.legacy_ids[kind].pop(row_id, None)
                if entry is not None:
                    checked[kind] += 1
                    if record_sha256(kind, fields) != entry[1]:
                        problems.append(_mismatch(session, kind, row_id, entry[0], fields))
                elif legacy is not None:
                    unverifiable[kind] += 1
                elif kind is RecordKind.OUTCOME and budget[str(fields["source"])] > 0:
                    budget[str(fields["source"])] -= 1
                    unverifiable[kind] += 1
                else:
                    problems.append(RecordProblem(kind, row_id, None, _unaudited(kind, row_id)))
        problems.extend(_gone(recorded))
    return RecordCheck(
        ok=not problems,
        checked=dict(checked),
        unverifiable=dict(unverifiable),
        problems=len(problems),
        first_problem=problems[0] if problems else None,
    )


def _read_ledger(session: Session) -> _Recorded:
    recorded = _Recorded()
    for seq, action, payload in record_hashes.iter_record_entries(session, RECORD_ACTIONS):
        spec = RECORD_ACTIONS[AuditAction(action)]  # the query selects only these actions
        if spec.id_key is not None:
            row_id, digest = payload.get(spec.id_key), payload.get(RECORD_HASH_KEY)
            if not isinstance(row_id, int):
                continue  # an entry that names no row records nothing to compare
            if isinstance(digest, str):
                recorded.add(spec.kind, row_id, seq, digest)
            else:
                recorded.legacy_ids[spec.kind].setdefault(row_id, seq)
            continue
        bulk = payload.get(BULK_HASH_KEY)
        if isinstance(bulk, dict):
            for key, digest in bulk.items():
                if key.isdigit() and isinstance(digest, str):
                    recorded.add(spec.kind, int(key), seq, digest)
        elif spec.source is not None and spec.count_key is not None:
            count = payload.get(spec.count_key)
            recorded.legacy_counts[spec.source] += count if isinstance(count, int) else 0
    return recorded


def _mismatch(session: Session, kind: RecordKind, row_id: int, seq: int, fields: Mapping[str, object]) -> RecordProblem:
    payload = record_hashes.entry_payload(session, seq) or {}
    changed = changed_fields(kind, fields, payload)
    what = f" ({', '.join(changed)} changed)" if changed else ""
    reason = f"{kind} {row_id}: its row no longer matches the hash audit entry seq {seq} recorded{what}"
    return RecordProblem(kind, row_id, seq, reason)


def _unaudited(kind: RecordKind, row_id: int) -> str:
    return f"{kind} {row_id}: no audit entry records this row's hash (written outside Vigil, or its entry is missing)"


def _gone(recorded: _Recorded) -> list[RecordProblem]:
    found = []
    for kind in _KINDS:
        named = {**recorded.legacy_ids[kind], **{i: s for i, (s, _) in recorded.hashes[kind].items()}}
        for row_id, seq in sorted(named.items()):
            found.append(
                RecordProblem(
                    kind, row_id, seq, f"{kind} {row_id}: audit entry seq {seq} recorded it, but the row is gone"
                )
            )
    return found
