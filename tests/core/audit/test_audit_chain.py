"""Tests for the pure audit chain: any tampering is reported at exactly the right seq."""

from __future__ import annotations

import doctest
import hashlib
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType

import pytest

import core.audit.chain as chain_module
import core.audit.events as events_module
from core.audit.chain import (
    GENESIS_HASH,
    ChainCheck,
    canonical_json,
    compute_entry_hash,
    link,
    to_recorded_at,
    verify_chain,
)
from core.audit.events import AuditAction, AuditEntry

N_ENTRIES = 20
ACTIONS = list(AuditAction)
START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def _chain(n: int = N_ENTRIES) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = link(
            prev,
            recorded_at=to_recorded_at(START + timedelta(minutes=i)),
            actor=f"user{i % 3}",
            action=ACTIONS[i % len(ACTIONS)],
            subject=f"1.2.826.0.1.{i}",
            payload={"i": i, "score": i / 7, "tags": ["a", "b"], "nested": {"ok": i % 2 == 0}},
        )
        entries.append(prev)
    return entries


def _tampered(entry: AuditEntry, field: str) -> AuditEntry:
    other_action = ACTIONS[(ACTIONS.index(AuditAction(entry.action)) + 1) % len(ACTIONS)]
    changes: dict[str, object] = {
        "seq": entry.seq + 1000,
        "recorded_at": to_recorded_at(START - timedelta(days=1)),
        "actor": entry.actor + "-forged",
        "action": other_action,
        "subject": entry.subject + ".9",
        "payload": {**entry.payload, "i": -1},
        "prev_hash": "f" * 64,
        "entry_hash": "e" * 64,
    }
    return replace(entry, **{field: changes[field]})  # type: ignore[arg-type]


FIELDS = ["seq", "recorded_at", "actor", "action", "subject", "payload", "prev_hash", "entry_hash"]


def test_intact_chain_verifies() -> None:
    # Prepare
    entries = _chain()

    # Execute
    check = verify_chain(entries)

    # Assert
    assert check == ChainCheck(ok=True, checked=N_ENTRIES)
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.seq for e in entries] == list(range(N_ENTRIES))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))


def test_empty_chain_verifies() -> None:
    # Execute
    check = verify_chain([])

    # Assert
    assert check == ChainCheck(ok=True, checked=0)


def test_verify_consumes_a_generator_lazily() -> None:
    # Prepare: a bad entry at seq 3 followed by an iterator that must never be reached
    entries = _chain(5)
    entries[3] = _tampered(entries[3], "actor")

    def stream() -> object:
        yield from entries[:4]
        raise AssertionError("verify_chain read past the first bad entry")

    # Execute
    check = verify_chain(stream())  # type: ignore[arg-type]

    # Assert
    assert (check.ok, check.checked, check.first_bad_seq) == (False, 4, 3)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seq", range(N_ENTRIES))
def test_tampering_any_field_reports_that_seq(seq: int, field: str) -> None:
    # Prepare
    entries = _chain()
    entries[seq] = _tampered(entries[seq], field)

    # Execute
    check = verify_chain(entries)

    # Assert
    assert not check.ok
    assert check.first_bad_seq == seq
    assert check.checked == seq + 1
    assert check.reason


@pytest.mark.parametrize("seq", range(N_ENTRIES - 1))
def test_deleted_entry_reports_its_seq(seq: int) -> None:
    # Prepare
    entries = _chain()
    del entries[seq]

    # Execute
    check = verify_chain(entries)

    # Assert
    assert (check.ok, check.first_bad_seq) == (False, seq)
    assert "expected seq" in (check.reason or "")


def test_truncated_tail_is_not_detectable_by_the_chain_alone() -> None:
    # Prepare: dropping the newest entry leaves a valid, shorter chain (checkpoints cover this)
    entries = _chain()[:-1]

    # Execute
    check = verify_chain(entries)

    # Assert
    assert check == ChainCheck(ok=True, checked=N_ENTRIES - 1)


@pytest.mark.parametrize("seq", range(N_ENTRIES))
def test_inserted_duplicate_reports_the_position_after_it(seq: int) -> None:
    # Prepare: a replayed copy of entry `seq` placed right before itself
    entries = _chain()
    entries.insert(seq, entries[seq])

    # Execute
    check = verify_chain(entries)

    # Assert
    assert (check.ok, check.first_bad_seq) == (False, seq + 1)


@pytest.mark.parametrize("seq", range(1, N_ENTRIES))
def test_forged_insert_with_renumbered_tail_reports_the_displaced_entry(seq: int) -> None:
    # Prepare: a correctly hashed forgery linked to entry seq-1, the old tail renumbered
    entries = _chain()
    forged = link(
        entries[seq - 1],
        recorded_at=entries[seq].recorded_at,
        actor="mallory",
        action=AuditAction.PREDICTION_MADE,
        subject="forged",
        payload={},
    )
    tail = [replace(e, seq=e.seq + 1) for e in entries[seq:]]
    tampered = [*entries[:seq], forged, *tail]

    # Execute
    check = verify_chain(tampered)

    # Assert: the forgery itself verifies; the entry it displaced does not link to it
    assert (check.ok, check.first_bad_seq) == (False, seq + 1)
    assert "prev_hash" in (check.reason or "")


@pytest.mark.parametrize(("i", "j"), [(0, 1), (3, 4), (2, 17), (18, 19), (0, 19), (11, 5)])
def test_swapped_entries_report_the_earlier_seq(i: int, j: int) -> None:
    # Prepare
    entries = _chain()
    entries[i], entries[j] = entries[j], entries[i]

    # Execute
    check = verify_chain(entries)

    # Assert
    assert (check.ok, check.first_bad_seq) == (False, min(i, j))


@pytest.mark.parametrize(("i", "j"), [(0, 1), (4, 9), (18, 19)])
def test_swapped_content_keeping_seq_reports_the_earlier_seq(i: int, j: int) -> None:
    # Prepare: what a swap of two rows' columns (all but seq) looks like in a database
    entries = _chain()
    a, b = entries[i], entries[j]
    entries[i], entries[j] = replace(b, seq=a.seq), replace(a, seq=b.seq)

    # Execute
    check = verify_chain(entries)

    # Assert
    assert (check.ok, check.first_bad_seq) == (False, i)


def test_reversed_chain_reports_seq_zero() -> None:
    # Execute
    check = verify_chain(list(reversed(_chain())))

    # Assert
    assert (check.ok, check.checked, check.first_bad_seq) == (False, 1, 0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_link_refuses_non_finite_payload(bad: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="NaN"):
        link(
            None,
            recorded_at="2024-05-01T09:30:00+00:00",
            actor="system",
            action=AuditAction.PREDICTION_MADE,
            subject="1.2.3",
            payload={"scores": [0.5, bad]},
        )


def test_canonical_json_refuses_nan() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="NaN"):
        canonical_json({"x": math.nan})


def test_verify_reports_a_nan_smuggled_into_a_stored_payload() -> None:
    # Prepare
    entries = _chain(3)
    entries[1] = replace(entries[1], payload={"x": math.nan})

    # Execute
    check = verify_chain(entries)

    # Assert
    assert (check.ok, check.first_bad_seq) == (False, 1)
    assert "canonical JSON" in (check.reason or "")


def test_canonical_json_is_independent_of_key_order_and_compact() -> None:
    # Prepare
    a = {"b": [1, 2.5, None], "a": {"y": True, "x": "é"}}
    b = {"a": {"x": "é", "y": True}, "b": [1, 2.5, None]}

    # Execute
    ja, jb = canonical_json(a), canonical_json(b)

    # Assert
    assert ja == jb == '{"a":{"x":"é","y":true},"b":[1,2.5,null]}'.encode()


def test_entry_hash_is_pinned() -> None:
    # Prepare: the hashing format is part of every stored ledger; a change must be deliberate
    fields = {
        "seq": 0,
        "recorded_at": "2024-05-01T09:30:00+00:00",
        "actor": "system",
        "action": AuditAction.SITE_ADDED,
        "subject": "north",
        "payload": {"is_benchmark": True},
        "prev_hash": GENESIS_HASH,
    }

    # Execute
    digest = compute_entry_hash(**fields)  # type: ignore[arg-type]

    # Assert: sha256 of exactly this text, keys sorted, no whitespace
    expected_text = (
        '{"action":"site_added","actor":"system","payload":{"is_benchmark":true},'
        f'"prev_hash":"{GENESIS_HASH}","recorded_at":"2024-05-01T09:30:00+00:00","seq":0,"subject":"north"}}'
    )
    assert hashlib.sha256(expected_text.encode()).hexdigest() == digest
    assert digest == "1da5f01a62b149630f0bce8eb0b0974b8116c24fa02ea2c6742d555229cb8d63"


def test_entry_hash_treats_action_enum_and_its_string_alike() -> None:
    # Prepare: entries read back from storage carry the action as text
    entry = _chain(1)[0]
    as_text = replace(entry, action=str(entry.action))

    # Execute
    check = verify_chain([as_text])

    # Assert
    assert check.ok


def test_link_copies_and_normalises_the_payload() -> None:
    # Prepare
    payload: dict[str, object] = {"views": ("PA", "AP"), "n": 1}

    # Execute
    entry = link(
        None,
        recorded_at="2024-05-01T09:30:00Z",
        actor="system",
        action=AuditAction.MODEL_REGISTERED,
        subject="v1",
        payload=payload,  # type: ignore[arg-type]
    )
    payload["n"] = 2

    # Assert
    assert entry.payload == {"views": ["PA", "AP"], "n": 1}
    assert verify_chain([entry]).ok


@pytest.mark.parametrize("recorded_at", ["2024-05-01T09:30:00", "2024-05-01T11:30:00+02:00", "yesterday"])
def test_link_refuses_recorded_at_that_is_not_utc_iso(recorded_at: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="recorded_at"):
        link(None, recorded_at=recorded_at, actor="a", action=AuditAction.SITE_ADDED, subject="s", payload={})


def test_link_refuses_an_action_outside_the_vocabulary() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="not_an_action"):
        link(
            None,
            recorded_at="2024-05-01T09:30:00+00:00",
            actor="a",
            action="not_an_action",  # type: ignore[arg-type]
            subject="s",
            payload={},
        )


def test_to_recorded_at_converts_to_utc_and_refuses_naive() -> None:
    # Prepare
    cest = timezone(timedelta(hours=2))

    # Execute
    text = to_recorded_at(datetime(2024, 5, 1, 11, 30, tzinfo=cest))

    # Assert
    assert text == "2024-05-01T09:30:00+00:00"
    with pytest.raises(ValueError, match="naive"):
        to_recorded_at(datetime(2024, 5, 1, 11, 30))


@pytest.mark.parametrize(
    "member",
    [
        "SITE_ADDED",
        "STUDY_INGESTED",
        "INGEST_REJECTED",
        "PREDICTION_MADE",
        "PREDICTION_SKIPPED",
        "EXPLANATION_CREATED",
        "MODEL_REGISTERED",
        "USER_CREATED",
        "DATABASE_INITIALIZED",
    ],
)
def test_required_actions_exist_with_stable_values(member: str) -> None:
    # Execute
    action = AuditAction[member]

    # Assert: stored values are the lower-case member names and must never change
    assert action.value == member.lower()


@pytest.mark.parametrize("module", [chain_module, events_module], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module: ModuleType) -> None:
    # Execute
    result = doctest.testmod(module)

    # Assert
    assert result.failed == 0
