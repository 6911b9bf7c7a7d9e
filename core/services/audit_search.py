"""The Audit page's use cases: search the ledger, open one entry with its proof, verify everything.

Searching, opening and verifying read only and check :attr:`Permission.VIEW_AUDIT_LOG` first
(auditors, administrators and the CMIO hold it); looking at the ledger is not itself written to the
ledger. :func:`export_zip` needs :attr:`Permission.EXPORT_EVIDENCE` (auditors) and is recorded: the
export appends its own entry (``core.services.audit_export``).

An entry's detail answers two questions separately. *Does the hash chain verify up to it?* The
chain is recomputed from ``seq`` 0; it verifies up to ``seq`` when its first bad position, if any,
lies after ``seq``. *Is it in a signed checkpoint?* An RFC 6962 inclusion proof against the newest
checkpoint (:func:`core.services.audit_checkpoints.prove`); an entry newer than every checkpoint
has no proof yet, and the detail says so instead of showing one.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NoReturn

from core.audit.chain import ChainCheck, to_recorded_at
from core.audit.events import AuditAction
from core.errors import AuditEntryNotCheckpointedError, BadInputError, OutOfRangeError, UnknownAuditEntryError
from core.services import audit as audit_service
from core.services import audit_checkpoints, audit_export, audit_records
from core.services.audit_checkpoints import CheckpointCheck, CheckpointPlaces, InclusionProof
from core.services.audit_export import ExportSummary
from core.services.audit_records import RecordCheck
from core.services.permissions import Permission, SignedInUser, parse_role, require
from core.store import audit_log, audit_queries, users
from core.store.audit_queries import AuditFilter, StoredEntry
from core.store.engine import SessionFactory
from core.types import JSONValue

__all__ = [
    "ACTIONS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_SEQ",
    "AuditPage",
    "AuditQuery",
    "EntryDetail",
    "EvidenceZip",
    "LedgerCheck",
    "entry_detail",
    "export_zip",
    "StoredEntry",
    "parse_seq",
    "search_entries",
    "verify_all",
]

#: Every action the ledger records, for the action filter.
ACTIONS: Final = tuple(a.value for a in AuditAction)
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
MAX_OFFSET: Final = 2**31 - 1
#: The largest ``seq`` a typed address may ask for (the ledger's column is a 32-bit integer).
MAX_SEQ: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to look for in the ledger; every filter left None matches anything.

    Attributes
    ----------
    actor : str or None
        Username (or ``"system"``), exactly.
    action : str or None
        An :class:`~core.audit.events.AuditAction` value (see :data:`ACTIONS`).
    subject : str or None
        What the entry is about, exactly: a StudyInstanceUID, a model version, a site name, ...
    model_version : str or None
        Entries whose payload names this ``model_version``, or whose subject is this version.
    time_from, time_to : datetime or None
        Inclusive bounds on when the entry was recorded; timezone-aware (compared in UTC).
    limit, offset : int
        Paging: at most ``limit`` entries (1 to :data:`MAX_LIMIT`) after skipping ``offset``.
    """

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    model_version: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of search results, newest first, and how many entries match in all."""

    query: AuditQuery
    entries: tuple[StoredEntry, ...]
    total: int

    @property
    def has_previous(self) -> bool:
        """An earlier (newer entries) page exists."""
        return self.query.offset > 0

    @property
    def has_next(self) -> bool:
        """A later (older entries) page exists."""
        return self.query.offset + len(self.entries) < self.total


@dataclass(frozen=True, slots=True)
class EntryDetail:
    """One entry, its payload, whether the chain verifies up to it, and its inclusion proof.

    Attributes
    ----------
    payload : mapping or None
        The parsed payload; None when the stored text no longer parses (``payload_problem`` says why).
    chain_verified : bool
        The hash chain recomputed from ``seq`` 0 verifies through this entry.
    chain_problem : str or None
        When it does not: the first bad ``seq`` and what did not match.
    proof : InclusionProof or None
        The path to the newest signed checkpoint; None when no checkpoint covers the entry yet.
    not_covered : str or None
        Why there is no proof (the entry is newer than every checkpoint), as one sentence.
    """

    entry: StoredEntry
    payload: Mapping[str, JSONValue] | None
    payload_problem: str | None
    chain_verified: bool
    chain_problem: str | None
    proof: InclusionProof | None
    not_covered: str | None


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """The whole ledger verified: the hash chain, the signed checkpoints, the records beside it.

    ``records`` re-hashes the stored predictions, explanations, feedback and outcomes against the
    hashes their entries recorded (:func:`core.services.audit_records.crosscheck_records`).
    """

    chain: ChainCheck
    checkpoints: CheckpointCheck
    records: RecordCheck

    @property
    def ok(self) -> bool:
        """The chain, every checkpoint and every cross-checked record verify."""
        return self.chain.ok and self.checkpoints.ok and self.records.ok


@dataclass(frozen=True, slots=True)
class EvidenceZip:
    """An evidence package (``vigil audit export``) as one zip archive, and what the export reported."""

    summary: ExportSummary
    file_name: str
    data: bytes


def search_entries(session_factory: SessionFactory, user: SignedInUser, query: AuditQuery) -> AuditPage:
    """The page of ledger entries ``query`` asks for, newest first, with the total that match.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not view the audit log.
    BadInputError
        An unknown action, a naive time, ``time_from`` after ``time_to``, or ``limit`` /
        ``offset`` out of range (``OutOfRangeError``); the message names the value.
    """
    require(user, Permission.VIEW_AUDIT_LOG)
    flt = _filter(query)
    with session_factory() as session:
        rows, total = audit_queries.search(session, flt, limit=query.limit, offset=query.offset)
    return AuditPage(query, tuple(rows), total)


def entry_detail(
    session_factory: SessionFactory, places: CheckpointPlaces, user: SignedInUser, seq: int
) -> EntryDetail:
    """Entry ``seq`` with its payload, the chain's verdict up to it, and its inclusion proof.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not view the audit log.
    UnknownAuditEntryError
        No entry has this ``seq``.
    """
    require(user, Permission.VIEW_AUDIT_LOG)
    with session_factory() as session:
        stored = audit_queries.get_entry(session, seq) if seq >= 0 else None
        if stored is None:
            raise UnknownAuditEntryError(seq, audit_log.count_entries(session))
        chain = audit_log.verify(session, through=seq)  # the chain up to this entry, not the whole ledger
    payload, problem = _parse_payload(stored.payload_json)
    chain_ok = chain.ok
    chain_problem = None if chain_ok else f"the chain breaks at seq {chain.first_bad_seq}: {chain.reason}"
    proof: InclusionProof | None = None
    not_covered: str | None = None
    try:
        proof = audit_checkpoints.prove(session_factory, places, seq)
    except AuditEntryNotCheckpointedError as exc:
        not_covered = str(exc)
    return EntryDetail(stored, payload, problem, chain_ok, chain_problem, proof, not_covered)


def verify_all(session_factory: SessionFactory, places: CheckpointPlaces, user: SignedInUser) -> LedgerCheck:
    """Verify the chain and every signed checkpoint (as ``vigil audit verify`` does).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not view the audit log.
    """
    require(user, Permission.VIEW_AUDIT_LOG)
    chain = audit_service.verify_ledger(session_factory)
    checkpoints = audit_checkpoints.verify_checkpoints(session_factory, places)
    records = audit_records.crosscheck_records(session_factory)
    return LedgerCheck(chain, checkpoints, records)


def export_zip(
    session_factory: SessionFactory,
    places: CheckpointPlaces,
    user: SignedInUser,
    *,
    now: Callable[[], datetime],
    identified: audit_export.IdentifiedExport | None = None,
) -> EvidenceZip:
    """Export the evidence package (as ``vigil audit export`` does) and return it zipped, in memory.

    The export writes: its own ``audit_exported`` entry (actor ``user``) and a checkpoint over the
    ledger including it (:func:`core.services.audit_export.export_evidence`). The package is
    written to a temporary folder, read into one zip archive under a folder named after the
    export, and the temporary folder is removed. Its entries are de-identified unless
    ``identified`` opts out (:class:`core.services.audit_export.IdentifiedExport`).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not export evidence, checked again against the role stored now.
    AuditKeyError
        The signing key file is unusable.
    """
    require(user, Permission.EXPORT_EVIDENCE)
    with session_factory() as session:
        stored = users.get_user(session, user.username)
    # The role is re-read: a role withdrawn since sign-in takes effect now, before anything is written.
    require(SignedInUser(stored.username, parse_role(stored.role)), Permission.EXPORT_EVIDENCE)
    with tempfile.TemporaryDirectory(prefix="vigil-evidence-") as tmp:
        out_dir = Path(tmp) / "evidence"
        summary = audit_export.export_evidence(
            session_factory, places, out_dir, actor=stored.username, now=now, identified=identified
        )
        folder = f"vigil-evidence-{summary.export_id[:12]}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(summary.files):
                archive.write(out_dir / name, f"{folder}/{name}")
    return EvidenceZip(summary, f"{folder}.zip", buffer.getvalue())


def parse_seq(text: str) -> int:
    """The entry number typed in an address (``?seq=N``).

    Raises
    ------
    BadInputError
        ``text`` is not a whole number from 0 to :data:`MAX_SEQ`; the message names it.
    """
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise BadInputError(f"seq must be a whole number from 0 to {MAX_SEQ}, got {text!r}")
    number = int(value)
    if number > MAX_SEQ:
        raise OutOfRangeError("seq", text, 0, MAX_SEQ)
    return number


def _filter(query: AuditQuery) -> AuditFilter:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise OutOfRangeError("limit", query.limit, 1, MAX_LIMIT)
    if not 0 <= query.offset <= MAX_OFFSET:
        raise OutOfRangeError("offset", query.offset, 0, MAX_OFFSET)
    action = _text(query.action)
    if action is not None and action not in ACTIONS:
        raise BadInputError(f"unknown audit action {action!r}; choose one of: {', '.join(ACTIONS)}")
    time_from, time_to = _utc("time_from", query.time_from), _utc("time_to", query.time_to)
    if time_from is not None and time_to is not None and time_from > time_to:
        raise BadInputError(
            f"time_from {time_from.isoformat()} is after time_to {time_to.isoformat()}; nothing can match"
        )
    return AuditFilter(
        actor=_text(query.actor),
        action=action,
        subject=_text(query.subject),
        model_version=_text(query.model_version),
        recorded_from=None if time_from is None else to_recorded_at(time_from),
        recorded_to=None if time_to is None else to_recorded_at(time_to),
    )


def _text(value: str | None) -> str | None:
    # An empty or blank field in a form means "any", not "equal to the empty string".
    if value is None or not value.strip():
        return None
    return value.strip()


def _utc(name: str, moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise BadInputError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()!r}")
    return moment.astimezone(UTC)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not canonical JSON")


def _parse_payload(text: str) -> tuple[Mapping[str, JSONValue] | None, str | None]:
    # A row edited outside Vigil may hold text that no longer parses: show the text and say so.
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        return None, f"the stored payload is not valid canonical JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"the stored payload is a {type(value).__name__}, not a JSON object"
    return value, None
