"""Hash-chained audit entries: building and verifying the chain, with no storage.

Each entry's hash covers its own fields and the previous entry's hash, so editing any
field, deleting, inserting or reordering entries breaks verification at that point.
Truncating the tail is not detectable from the chain alone; signed checkpoints of the
head hash cover that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Final, Protocol, cast

from core.audit.events import AuditAction, AuditEntry

if TYPE_CHECKING:
    from core.types import JSONObject, JSONValue

__all__ = [
    "GENESIS_HASH",
    "ChainCheck",
    "ChainHead",
    "canonical_json",
    "compute_entry_hash",
    "entry_problem",
    "link",
    "link_as_stored",
    "json_string",
    "stored_body_hash",
    "stored_entry_hash",
    "to_recorded_at",
    "verify_chain",
]

#: ``prev_hash`` of the first entry.
GENESIS_HASH: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """Outcome of :func:`verify_chain`.

    Attributes
    ----------
    ok : bool
        True when every entry verified.
    checked : int
        Entries examined, including the first bad one.
    first_bad_seq : int or None
        The ``seq`` the first bad position should have held (entries are numbered 0, 1, ...),
        so a deleted entry is reported by its own, missing, number. None when ``ok``.
    reason : str or None
        One sentence naming what did not match. None when ``ok``.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


class ChainHead(Protocol):
    """What :func:`link` needs of the entry it follows: an :class:`AuditEntry`, or just these two fields."""

    @property
    def seq(self) -> int:
        """The entry's position."""
        ...

    @property
    def entry_hash(self) -> str:
        """The entry's hash."""
        ...


def canonical_json(obj: object) -> bytes:
    r"""Serialise deterministically: sorted keys, no whitespace, UTF-8, no NaN or infinity.

    Parameters
    ----------
    obj : object
        JSON-compatible data (dicts with ``str`` keys, lists, tuples, str, int, float, bool, None).

    Returns
    -------
    bytes
        The UTF-8 encoding; equal data always gives equal bytes.

    Raises
    ------
    ValueError
        If ``obj`` contains NaN or an infinity, which JSON cannot represent.
    TypeError
        If ``obj`` contains a value JSON cannot represent (a set, a datetime, ...).

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    b'{"a":[1.5,"\xc3\xa9"],"b":1}'
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"not canonical JSON (NaN and infinity are refused): {exc}") from exc
    return text.encode("utf-8")


def compute_entry_hash(
    *,
    seq: int,
    recorded_at: str,
    actor: str,
    action: AuditAction | str,
    subject: str,
    payload: Mapping[str, JSONValue],
    prev_hash: str,
) -> str:
    """Hex SHA-256 over the canonical JSON of every field of an entry but its own hash.

    Parameters
    ----------
    seq, recorded_at, actor, action, subject, payload, prev_hash
        The fields of :class:`~core.audit.events.AuditEntry`.

    Returns
    -------
    str
        64 lower-case hex digits.

    Raises
    ------
    ValueError
        If ``payload`` holds NaN or an infinity.
    """
    body = {
        "seq": seq,
        "recorded_at": recorded_at,
        "actor": actor,
        "action": str(action),
        "subject": subject,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def stored_entry_hash(
    *,
    seq: int,
    recorded_at: str,
    actor: str,
    action: str,
    subject: str,
    payload_json: str,
    prev_hash: str,
) -> str:
    """:func:`compute_entry_hash` of an entry whose payload is given as its canonical JSON text.

    The canonical body is assembled around ``payload_json`` instead of parsing and re-serializing
    it: the keys in sorted order, each other field encoded exactly as :func:`canonical_json`
    encodes it. When ``payload_json == canonical_json(payload).decode()`` (the text the ledger
    stores) the bytes hashed, and so the hash, are those of :func:`compute_entry_hash`.
    Verification uses it as a fast path and judges any entry it does not confirm the slow way.

    Raises
    ------
    TypeError
        If a field is not of its exact type (``seq`` an ``int``, the others ``str``).
    UnicodeEncodeError
        If a field holds a lone surrogate, which UTF-8 cannot encode.

    Examples
    --------
    >>> e = link(None, recorded_at="2024-05-01T09:30:00+00:00", actor="system",
    ...          action=AuditAction.SITE_ADDED, subject="north", payload={"b": [1.5, "é"], "a": None})
    >>> stored_entry_hash(seq=e.seq, recorded_at=e.recorded_at, actor=e.actor, action=str(e.action),
    ...                   subject=e.subject, payload_json=canonical_json(e.payload).decode(),
    ...                   prev_hash=e.prev_hash) == e.entry_hash
    True
    """
    if not (
        type(seq) is int
        and type(recorded_at) is str
        and type(actor) is str
        and type(action) is str
        and type(subject) is str
        and type(payload_json) is str
        and type(prev_hash) is str
    ):
        raise TypeError("seq must be an int and the other fields str")
    literal = encode_basestring
    return stored_body_hash(
        seq, recorded_at, literal(actor), literal(action), subject, payload_json, literal(prev_hash)
    )


def stored_body_hash(
    seq: int,
    recorded_at: str,
    actor_literal: str,
    action_literal: str,
    subject: str,
    payload_json: str,
    prev_hash_literal: str,
) -> str:
    """:func:`stored_entry_hash` with the actor, action and previous hash given as JSON string literals.

    Positional and unchecked, for the inner loop of verification (``core.store.audit_log.verify``),
    which encodes each distinct actor and action once (:func:`json_string`) and checks the rest.
    A value of the wrong type raises ``TypeError``.
    """
    # Sorted keys: action < actor < payload < prev_hash < recorded_at < seq < subject.
    body = (
        f'{{"action":{action_literal},"actor":{actor_literal},"payload":{payload_json},'
        f'"prev_hash":{prev_hash_literal},"recorded_at":{encode_basestring(recorded_at)},'
        f'"seq":{int.__repr__(seq)},"subject":{encode_basestring(subject)}}}'
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def json_string(value: str) -> str:
    """``value`` as a canonical JSON string literal (quoted, escaped as :func:`canonical_json` does)."""
    return encode_basestring(value)


def to_recorded_at(moment: datetime) -> str:
    """Format an aware datetime as the UTC ISO-8601 string an entry records.

    Raises
    ------
    ValueError
        If ``moment`` is naive: a wall-clock time without a zone is ambiguous evidence.

    Examples
    --------
    >>> from datetime import timezone, timedelta
    >>> to_recorded_at(datetime(2024, 5, 1, 11, 30, tzinfo=timezone(timedelta(hours=2))))
    '2024-05-01T09:30:00+00:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"recorded_at needs an aware datetime, got naive {moment.isoformat()!r}")
    return moment.astimezone(UTC).isoformat()


def link(
    prev: ChainHead | None,
    *,
    recorded_at: str,
    actor: str,
    action: AuditAction,
    subject: str,
    payload: Mapping[str, JSONValue],
) -> AuditEntry:
    """Return the entry that follows ``prev`` (or the first entry when ``prev`` is None).

    Parameters
    ----------
    prev : AuditEntry, ChainHead or None
        The current last entry of the ledger (only its ``seq`` and ``entry_hash`` are read).
    recorded_at : str
        UTC ISO-8601 timestamp (see :func:`to_recorded_at`).
    actor, action, subject, payload
        As in :class:`~core.audit.events.AuditEntry`.

    Returns
    -------
    AuditEntry
        ``seq`` is ``prev.seq + 1`` (0 first) and ``prev_hash`` is ``prev.entry_hash``.

    Raises
    ------
    ValueError
        If ``recorded_at`` is not UTC ISO-8601, ``action`` is not an :class:`AuditAction`,
        or ``payload`` holds NaN or an infinity.

    Examples
    --------
    >>> first = link(None, recorded_at="2024-05-01T09:30:00+00:00", actor="system",
    ...              action=AuditAction.SITE_ADDED, subject="north", payload={"is_benchmark": False})
    >>> first.seq, first.prev_hash == GENESIS_HASH, len(first.entry_hash)
    (0, True, 64)
    """
    return link_as_stored(prev, recorded_at=recorded_at, actor=actor, action=action, subject=subject, payload=payload)[
        0
    ]


def link_as_stored(
    prev: ChainHead | None,
    *,
    recorded_at: str,
    actor: str,
    action: AuditAction,
    subject: str,
    payload: Mapping[str, JSONValue],
) -> tuple[AuditEntry, str]:
    """:func:`link`, also returning the payload's canonical JSON text, the form storage keeps.

    The payload is serialized once: the text is stored, parsed back into the entry, and hashed
    in place (:func:`stored_entry_hash`), which gives the hash of :func:`compute_entry_hash`
    because canonical JSON parsed and serialized again is the same text.

    Returns
    -------
    tuple of AuditEntry and str
        The entry and its payload as canonical JSON text.
    """
    _check_recorded_at(recorded_at)
    action = AuditAction(action)  # refuses strings outside the vocabulary; new entries only
    # Round-tripping both validates and copies: the entry holds exactly what storage gives back.
    payload_json = canonical_json(dict(payload)).decode("utf-8")
    stored_payload = cast("JSONObject", json.loads(payload_json))
    prev_hash = GENESIS_HASH if prev is None else prev.entry_hash
    seq = 0 if prev is None else prev.seq + 1
    entry_hash = stored_entry_hash(
        seq=seq,
        recorded_at=recorded_at,
        actor=actor,
        action=str(action),
        subject=subject,
        payload_json=payload_json,
        prev_hash=prev_hash,
    )
    entry = AuditEntry(seq, recorded_at, actor, action, subject, stored_payload, prev_hash, entry_hash)
    return entry, payload_json


def verify_chain(entries: Iterable[AuditEntry]) -> ChainCheck:
    """Recompute every hash and link in order; stop at the first broken entry.

    Parameters
    ----------
    entries : iterable of AuditEntry
        The whole ledger in ``seq`` order, starting at seq 0. Consumed lazily, so a
        streaming query can be passed in.

    Returns
    -------
    ChainCheck
        ``ok`` with the number of entries, or the first bad position and why.

    Examples
    --------
    >>> a = link(None, recorded_at="2024-05-01T09:30:00+00:00", actor="system",
    ...          action=AuditAction.SITE_ADDED, subject="north", payload={})
    >>> b = link(a, recorded_at="2024-05-01T09:31:00+00:00", actor="system",
    ...          action=AuditAction.SITE_ADDED, subject="south", payload={})
    >>> verify_chain([a, b]).ok, verify_chain([b, a]).first_bad_seq
    (True, 0)
    """
    expected_prev = GENESIS_HASH
    checked = 0
    for position, entry in enumerate(entries):
        checked = position + 1
        problem = entry_problem(entry, expected_seq=position, expected_prev=expected_prev)
        if problem is not None:
            return ChainCheck(ok=False, checked=checked, first_bad_seq=position, reason=problem)
        expected_prev = entry.entry_hash
    return ChainCheck(ok=True, checked=checked)


def entry_problem(entry: AuditEntry, *, expected_seq: int, expected_prev: str) -> str | None:
    """What is wrong with ``entry`` at its position in the chain, or None when it verifies.

    Parameters
    ----------
    entry : AuditEntry
        The entry found at position ``expected_seq``.
    expected_seq : int
        Its position (entries are numbered 0, 1, ...).
    expected_prev : str
        The previous entry's ``entry_hash`` (:data:`GENESIS_HASH` at position 0).
    """
    # The order of checks gives the most specific reason: a missing or extra entry shows
    # first as a seq gap, a swapped or inserted one as a broken link, an edit as a hash mismatch.
    if entry.seq != expected_seq:
        return f"expected seq {expected_seq} at this position, found seq {entry.seq}"
    if entry.prev_hash != expected_prev:
        return "prev_hash does not match the previous entry's hash"
    try:
        recomputed = compute_entry_hash(
            seq=entry.seq,
            recorded_at=entry.recorded_at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            payload=entry.payload,
            prev_hash=entry.prev_hash,
        )
    except (TypeError, ValueError) as exc:
        return f"content is not canonical JSON: {exc}"
    if recomputed != entry.entry_hash:
        return "entry_hash does not match the entry's content"
    return None


def _check_recorded_at(recorded_at: str) -> None:
    try:
        moment = datetime.fromisoformat(recorded_at)
    except ValueError as exc:
        raise ValueError(f"recorded_at is not ISO-8601: {recorded_at!r}") from exc
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"recorded_at must be UTC with an explicit offset, got {recorded_at!r}")
