"""Signed checkpoints over the real ledger: what they catch that the hash chain alone cannot.

Tampering acts as an insider with DDL rights (the append-only triggers dropped first), on a real
SQLite file and a real PostgreSQL database, a real signing key and a real external checkpoint file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, select, update

from core.audit.chain import compute_entry_hash
from core.audit.events import AuditAction
from core.audit.merkle import leaf_hash, verify_inclusion
from core.audit.schedule import CheckpointPolicy
from core.errors import AuditChainError, AuditEntryNotCheckpointedError, AuditKeyError, UnknownAuditEntryError
from core.services.audit_checkpoints import (
    CheckpointPlaces,
    checkpoint_if_due,
    load_or_create_signing_key,
    make_checkpoint,
    prove,
    public_key,
    read_external,
    verify_checkpoints,
)
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditCheckpointRow, AuditEntryRow
from tests.conftest import NewDatabase
from tests.core.audit.insider import drop_audit_guards

N = 60
START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def _clock() -> datetime:
    return START + timedelta(days=1)


@pytest.fixture
def engine(backend: str, new_database: NewDatabase) -> Iterator[Engine]:
    eng = make_engine(new_database(backend, migrated=True))
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sf(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def places(tmp_path: Path) -> CheckpointPlaces:
    return CheckpointPlaces(
        key_file=tmp_path / "secrets" / "audit-signing.key", external_file=tmp_path / "worm" / "cp.jsonl"
    )


def _append(sf: SessionFactory, start: int, count: int) -> None:
    with sf.begin() as session:
        for i in range(start, start + count):
            audit_log.append(
                session,
                actor=f"user{i % 3}",
                action=AuditAction.SITE_ADDED,
                subject=f"site-{i}",
                payload={"i": i},
                recorded_at=(START + timedelta(minutes=i)).isoformat(),
            )


def _ledger(sf: SessionFactory, places: CheckpointPlaces, sizes: tuple[int, ...] = (N,)) -> None:
    done = 0
    for size in sizes:
        _append(sf, done, size - done)
        made = make_checkpoint(sf, places, now=_clock)
        assert made.created and made.signed.checkpoint.tree_size == size
        done = size


def _chain_ok(sf: SessionFactory) -> bool:
    with sf() as session:
        return audit_log.verify(session).ok


def _rehash_from(engine: Engine, sf: SessionFactory, seq: int, payload: dict[str, int]) -> None:
    """Edit entry ``seq`` and recompute every later hash, so the chain alone still verifies."""
    drop_audit_guards(engine)
    with sf() as session:
        entries = list(audit_log.iter_entries(session))
    prev = entries[seq].prev_hash
    with sf.begin() as session:
        for e in entries[seq:]:
            body = payload if e.seq == seq else dict(e.payload)
            new_hash = compute_entry_hash(
                seq=e.seq,
                recorded_at=e.recorded_at,
                actor=e.actor,
                action=e.action,
                subject=e.subject,
                payload=body,
                prev_hash=prev,
            )
            session.execute(
                update(AuditEntryRow)
                .where(AuditEntryRow.seq == e.seq)
                .values(
                    payload_json=json.dumps(body, separators=(",", ":"), sort_keys=True),
                    prev_hash=prev,
                    entry_hash=new_hash,
                )
            )
            prev = new_hash


def _delete_from(engine: Engine, sf: SessionFactory, first_seq: int) -> None:
    drop_audit_guards(engine)
    with sf.begin() as session:
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq >= first_seq))


# --- making and proving ---------------------------------------------------------------------------


def test_checkpoint_is_stored_in_both_places_signed_and_idempotent(
    sf: SessionFactory, places: CheckpointPlaces
) -> None:
    _ledger(sf, places)

    again = make_checkpoint(sf, places, now=_clock)
    external = read_external(places.external_file)
    with sf() as session:
        rows = session.scalars(select(AuditCheckpointRow)).all()
    check = verify_checkpoints(sf, places)

    assert not again.created and again.signed.checkpoint.tree_size == N
    assert external == [again.signed]
    assert [r.tree_size for r in rows] == [N]
    assert stat.S_IMODE(os.stat(places.key_file).st_mode) == 0o600
    assert len(places.key_file.read_bytes()) == 32
    assert (check.ok, check.checkpoints, check.covered, check.uncovered) == (True, 1, N, 0)


def test_every_entry_has_an_inclusion_proof_to_the_signed_root(sf: SessionFactory, places: CheckpointPlaces) -> None:
    _ledger(sf, places, (17, N))

    for seq in range(N):
        proof = prove(sf, places, seq)
        assert proof.ok, seq
        # Re-derive independently from the returned hex: what a reviewer would do.
        root = bytes.fromhex(proof.checkpoint.checkpoint.root_hash)
        path = [bytes.fromhex(p) for p in proof.path]
        assert verify_inclusion(leaf_hash(bytes.fromhex(proof.entry_hash)), seq, N, path, root)
        assert not verify_inclusion(leaf_hash(bytes.fromhex(proof.entry_hash)), (seq + 1) % N, N, path, root)


def test_prove_names_an_unknown_or_uncovered_seq(sf: SessionFactory, places: CheckpointPlaces) -> None:
    _ledger(sf, places, (10,))
    _append(sf, 10, 2)

    with pytest.raises(UnknownAuditEntryError, match="no audit entry with seq 12: the ledger holds seq 0 to 11"):
        prove(sf, places, 12)
    with pytest.raises(UnknownAuditEntryError, match="seq -1"):
        prove(sf, places, -1)
    with pytest.raises(AuditEntryNotCheckpointedError, match="seq 11 is not yet covered by a checkpoint"):
        prove(sf, places, 11)


def test_unusable_key_file_is_named(places: CheckpointPlaces) -> None:
    places.key_file.parent.mkdir(parents=True)
    places.key_file.write_bytes(b"x" * 5)
    with pytest.raises(AuditKeyError, match="holds 5 bytes"):
        load_or_create_signing_key(places.key_file)


def test_a_signing_key_others_can_read_or_a_link_is_refused(places: CheckpointPlaces, tmp_path: Path) -> None:
    # Prepare: a good key, then opened to the group; and a link to a key elsewhere
    load_or_create_signing_key(places.key_file)
    places.key_file.chmod(0o640)
    elsewhere = tmp_path / "other.key"
    elsewhere.write_bytes(os.urandom(32))
    elsewhere.chmod(0o600)
    link = places.key_file.with_name("linked.key")
    link.symlink_to(elsewhere)

    # Execute / Assert
    with pytest.raises(AuditKeyError, match="mode 0640"):
        load_or_create_signing_key(places.key_file)
    with pytest.raises(AuditKeyError, match="not a regular file"):
        load_or_create_signing_key(link)


# --- what the checkpoints catch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_deleted", "label"), [(N - 1, "last row"), (N - 50, "last 50 rows"), (1, "all but first")]
)
def test_tail_truncation_passes_the_chain_but_fails_the_checkpoint(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces, first_deleted: int, label: str
) -> None:
    _ledger(sf, places)

    _delete_from(engine, sf, first_deleted)
    check = verify_checkpoints(sf, places)

    assert _chain_ok(sf), label  # the chain alone cannot see a shorter tail
    assert not check.ok
    assert check.failed_tree_size == N
    assert check.reason == (
        f"checkpoint {N} signed {N} entries but the ledger holds {first_deleted}: entries were deleted (tail truncated)"
    )


def test_emptied_ledger_fails_the_checkpoint(engine: Engine, sf: SessionFactory, places: CheckpointPlaces) -> None:
    _ledger(sf, places)
    _delete_from(engine, sf, 0)
    check = verify_checkpoints(sf, places)
    assert _chain_ok(sf)
    assert not check.ok and "holds 0" in (check.reason or "")


def test_insider_rehash_passes_the_chain_but_fails_the_checkpoint(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    _ledger(sf, places, (30, N))

    _rehash_from(engine, sf, 40, {"i": 40, "role": "admin"})
    check = verify_checkpoints(sf, places)

    assert _chain_ok(sf)
    assert not check.ok
    assert check.failed_tree_size == N
    assert "an entry from seq 30 to 59 was changed or replaced" in (check.reason or "")
    with pytest.raises(AuditChainError, match="no longer hash to checkpoint 60's root"):
        make_checkpoint(sf, places, now=_clock)  # a tampered ledger is never re-signed


def test_insider_rehash_of_seq_0_is_caught_by_the_first_checkpoint(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    _ledger(sf, places, (30, N))
    _rehash_from(engine, sf, 0, {"i": 0, "role": "admin"})
    check = verify_checkpoints(sf, places)
    assert _chain_ok(sf)
    assert (check.ok, check.failed_tree_size) == (False, 30)
    assert "seq 0 to 29" in (check.reason or "")


def test_forged_append_past_the_last_checkpoint_is_only_reported_as_uncovered(
    sf: SessionFactory, places: CheckpointPlaces
) -> None:
    # What verify cannot know: a correctly hashed entry after the newest checkpoint looks like a
    # real one until a checkpoint covers it; verify says how many entries no signature vouches for.
    _ledger(sf, places)
    _append(sf, N, 1)

    check = verify_checkpoints(sf, places)

    assert (check.ok, check.covered, check.uncovered) == (True, N, 1)


def test_tampered_external_file_is_caught(sf: SessionFactory, places: CheckpointPlaces) -> None:
    _ledger(sf, places, (30, N))
    lines = places.external_file.read_text().splitlines()
    first = json.loads(lines[0])
    first["root_hash"] = "00" * 32
    places.external_file.write_text(json.dumps(first) + "\n" + lines[1] + "\n")

    check = verify_checkpoints(sf, places)

    assert (check.ok, check.failed_tree_size) == (False, 30)
    assert check.reason == f"checkpoint 30 in the database differs from the external file {places.external_file}"


def test_checkpoint_missing_from_either_place_is_caught(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    _ledger(sf, places, (30, N))
    lines = places.external_file.read_text().splitlines()
    places.external_file.write_text(lines[0] + "\n")
    assert verify_checkpoints(sf, places).reason == (
        f"checkpoint {N} is in the database but not in the external file {places.external_file}"
    )

    places.external_file.write_text("\n".join(lines) + "\n")
    with sf.begin() as session:
        session.execute(delete(AuditCheckpointRow).where(AuditCheckpointRow.tree_size == N))
    check = verify_checkpoints(sf, places)
    assert (
        check.reason
        == f"checkpoint {N} is in the external file {places.external_file} but not in the database (deleted?)"
    )


def test_unreadable_external_line_is_named(sf: SessionFactory, places: CheckpointPlaces) -> None:
    _ledger(sf, places, (5,))
    with places.external_file.open("a") as out:
        out.write('{"tree_size": 9}\n')
    check = verify_checkpoints(sf, places)
    assert not check.ok and f"{places.external_file} line 2 is not a checkpoint" in (check.reason or "")


def test_checkpoint_signed_by_another_key_is_caught(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    # An insider re-hashes, swaps in their own key and re-signs in both places; the reviewer's
    # exported public key still rejects every checkpoint.
    _ledger(sf, places)
    trusted = public_key(places)
    _rehash_from(engine, sf, 5, {"i": 5, "forged": 1})
    with sf.begin() as session:
        session.execute(delete(AuditCheckpointRow))
    places.external_file.unlink()
    places.key_file.write_bytes(Ed25519PrivateKey.generate().private_bytes_raw())
    assert make_checkpoint(sf, places, now=_clock).created

    assert verify_checkpoints(sf, places).ok  # against the swapped-in key, everything agrees
    check = verify_checkpoints(sf, places, trusted_key=trusted)
    assert (check.ok, check.failed_tree_size) == (False, N)
    assert "not the trusted key" in (check.reason or "")


# --- automatic checkpoints -------------------------------------------------------------------


def test_a_checkpoint_is_made_once_n_entries_are_unsigned(sf: SessionFactory, places: CheckpointPlaces) -> None:
    policy = CheckpointPolicy(every=5, minutes=24 * 60)
    early = lambda: START + timedelta(minutes=10)  # noqa: E731 - a fixed clock

    _append(sf, 0, 4)
    assert checkpoint_if_due(sf, places, policy, now=early) is None
    _append(sf, 4, 1)
    made = checkpoint_if_due(sf, places, policy, now=early)
    _append(sf, 5, 4)
    not_yet = checkpoint_if_due(sf, places, policy, now=early)

    assert made is not None and made.created and made.signed.checkpoint.tree_size == 5
    assert not_yet is None
    assert [c.checkpoint.tree_size for c in read_external(places.external_file)] == [5]
    assert verify_checkpoints(sf, places).ok


def test_a_checkpoint_is_made_once_the_oldest_unsigned_entry_is_t_minutes_old(
    sf: SessionFactory, places: CheckpointPlaces
) -> None:
    policy = CheckpointPolicy(every=1000, minutes=60)
    _append(sf, 0, 3)  # recorded at START, START+1 min, START+2 min

    before = checkpoint_if_due(sf, places, policy, now=lambda: START + timedelta(minutes=59, seconds=59))
    after = checkpoint_if_due(sf, places, policy, now=lambda: START + timedelta(minutes=60))

    assert before is None
    assert after is not None and after.signed.checkpoint.tree_size == 3
    assert after.signed.checkpoint.timestamp == (START + timedelta(minutes=60)).isoformat()


def test_a_due_checkpoint_over_a_tampered_ledger_is_refused_not_skipped(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    _append(sf, 0, 6)
    drop_audit_guards(engine)
    with sf.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 2).values(actor="mallory"))

    with pytest.raises(AuditChainError, match="refusing to sign"):
        checkpoint_if_due(sf, places, CheckpointPolicy(every=5), now=_clock)
    assert read_external(places.external_file) == []
