"""Verification's fast path (hash the stored text, no JSON parsing) agrees with the slow one everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from core.audit.chain import canonical_json, compute_entry_hash, stored_entry_hash, to_recorded_at, verify_chain
from core.audit.events import AuditAction
from core.store import audit_log
from core.store.engine import SessionFactory
from core.store.tables import AuditEntryRow
from tests.core.audit.insider import drop_audit_guards

_TEXT = st.text(max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    recorded_at=_TEXT,
    actor=_TEXT,
    action=_TEXT,
    subject=_TEXT,
    payload=st.dictionaries(_TEXT, _JSON, max_size=4),
    prev_hash=_TEXT,
)
def test_the_stored_text_hashes_as_the_entry(
    seq: int, recorded_at: str, actor: str, action: str, subject: str, payload: dict[str, object], prev_hash: str
) -> None:
    # Prepare: text that UTF-8 cannot encode is refused by both ways alike
    fields = {"seq": seq, "recorded_at": recorded_at, "actor": actor, "action": action, "subject": subject}
    try:
        expected = compute_entry_hash(**fields, payload=payload, prev_hash=prev_hash)  # type: ignore[arg-type]
    except ValueError:
        return

    # Execute
    got = stored_entry_hash(**fields, payload_json=canonical_json(payload).decode(), prev_hash=prev_hash)  # type: ignore[arg-type]

    # Assert
    assert got == expected


def test_values_of_another_type_are_refused() -> None:
    # Execute / Assert: the caller then judges the row the slow way
    with pytest.raises(TypeError):
        stored_entry_hash(seq=True, recorded_at="", actor="", action="", subject="", payload_json="{}", prev_hash="")
    with pytest.raises(TypeError):
        stored_entry_hash(seq=0, recorded_at=b"", actor="", action="", subject="", payload_json="{}", prev_hash="")  # type: ignore[arg-type]


@pytest.fixture
def ledger(session_factory: SessionFactory, now: datetime) -> int:
    with session_factory.begin() as session:
        for i in range(6):
            audit_log.append(
                session,
                actor="system",
                action=AuditAction.PREDICTION_MADE,
                subject=f"1.2.3.{i}",
                payload={"i": i, "b": "é", "nested": {"z": [1.5, None], "a": True}},
                recorded_at=to_recorded_at(now + timedelta(seconds=i)),
            )
    return 6


def _rewrite_payload(session_factory: SessionFactory, seq: int, text: str) -> None:
    bind = session_factory.kw["bind"]
    assert isinstance(bind, Engine)
    drop_audit_guards(bind)
    with session_factory.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == seq).values(payload_json=text))


def test_equal_content_in_other_spacing_still_verifies_as_before(session_factory: SessionFactory, ledger: int) -> None:
    # Prepare: the same payload written with spaces and unsorted keys (the fast path cannot confirm it)
    _rewrite_payload(session_factory, 3, '{ "nested": {"a": true, "z": [1.5, null]}, "i": 3, "b": "\\u00e9" }')

    # Execute
    with session_factory() as session:
        check = audit_log.verify(session)
        slow = verify_chain(audit_log.iter_entries(session))

    # Assert: judged by content, as verify_chain judges it
    assert check == slow
    assert (check.ok, check.checked) == (True, ledger)


@pytest.mark.parametrize("text", ['{"i":-1}', "not json", "[1]", '{"i":NaN}'])
def test_a_changed_payload_gives_the_slow_paths_verdict_and_reason(
    session_factory: SessionFactory, ledger: int, text: str
) -> None:
    # Prepare
    _rewrite_payload(session_factory, 2, text)

    # Execute
    with session_factory() as session:
        check = audit_log.verify(session)
        stored = session.execute(select(AuditEntryRow.payload_json).where(AuditEntryRow.seq == 2)).scalar_one()

    # Assert
    assert stored == text
    assert (check.ok, check.first_bad_seq, check.checked) == (False, 2, 3)
    assert check.reason
