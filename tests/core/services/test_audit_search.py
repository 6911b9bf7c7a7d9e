"""The Audit page's service on a real SQLite ledger: filters, paging, who may look, bad input, proofs, export."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from core.audit.events import AuditAction
from core.audit.merkle import leaf_hash, verify_inclusion
from core.errors import BadInputError, OutOfRangeError, PermissionDeniedError, UnknownAuditEntryError
from core.services.audit_checkpoints import CheckpointPlaces, make_checkpoint
from core.services.audit_search import (
    MAX_LIMIT,
    AuditQuery,
    entry_detail,
    export_zip,
    parse_seq,
    search_entries,
    verify_all,
)
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, users
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow
from tests.core.audit.insider import drop_audit_guards

START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
AUDITOR = SignedInUser("auditor", Role.AUDITOR)
ADMIN = SignedInUser("admin", Role.ADMIN)
RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
STUDY_A = "1.2.826.0.1.3680043.8.498.1"
STUDY_B = "1.2.826.0.1.3680043.8.498.2"

#: (actor, action, subject, payload); entry i is recorded at START + i hours.
LEDGER: tuple[tuple[str, AuditAction, str, dict[str, object]], ...] = (
    ("system", AuditAction.SITE_ADDED, "riverside", {"benchmark": False}),
    ("system", AuditAction.MODEL_REGISTERED, "v1", {"serving": True}),
    ("system", AuditAction.STUDY_INGESTED, STUDY_A, {"site": "riverside"}),
    ("system", AuditAction.PREDICTION_MADE, STUDY_A, {"model_version": "v1", "score": 0.8}),
    ("dr.lee", AuditAction.FEEDBACK_RECORDED, STUDY_A, {"model_version": "v1", "agrees": True}),
    ("system", AuditAction.MODEL_REGISTERED, "v1.2", {"serving": False}),
    ("system", AuditAction.STUDY_INGESTED, STUDY_B, {"site": "riverside"}),
    ("system", AuditAction.PREDICTION_MADE, STUDY_B, {"model_version": "v1.2", "score": 0.1}),
    ("dr.lee", AuditAction.EXPLANATION_VIEWED, STUDY_B, {"detail": {"model_version": "v1.2"}}),
    ("champion", AuditAction.ADJUDICATION_RECORDED, STUDY_B, {"note": '"model_version":"v1"'}),
)
CHECKPOINTED = 8  # a checkpoint signs the first 8 entries; the last 2 are not yet covered


def _clock() -> datetime:
    return START + timedelta(days=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def places(tmp_path: Path) -> CheckpointPlaces:
    return CheckpointPlaces(key_file=tmp_path / "secrets" / "audit.key", external_file=tmp_path / "worm" / "cp.jsonl")


@pytest.fixture
def sf(engine: Engine, places: CheckpointPlaces) -> SessionFactory:
    factory = make_session_factory(engine)
    _append(factory, LEDGER[:CHECKPOINTED], start=0)
    make_checkpoint(factory, places, now=_clock)
    _append(factory, LEDGER[CHECKPOINTED:], start=CHECKPOINTED)
    return factory


def _append(sf: SessionFactory, rows: tuple[tuple[str, AuditAction, str, dict[str, object]], ...], start: int) -> None:
    with sf.begin() as session:
        for i, (actor, action, subject, payload) in enumerate(rows, start):
            audit_log.append(
                session,
                actor=actor,
                action=action,
                subject=subject,
                payload=payload,  # type: ignore[arg-type]
                recorded_at=(START + timedelta(hours=i)).isoformat(),
            )


def _seqs(sf: SessionFactory, **query: object) -> list[int]:
    return [e.seq for e in search_entries(sf, AUDITOR, AuditQuery(**query)).entries]  # type: ignore[arg-type]


# --- filters and paging ---------------------------------------------------------------------------


def test_no_filter_lists_every_entry_newest_first(sf: SessionFactory) -> None:
    page = search_entries(sf, AUDITOR, AuditQuery())
    assert [e.seq for e in page.entries] == list(range(len(LEDGER) - 1, -1, -1))
    assert page.total == len(LEDGER) and not page.has_next and not page.has_previous
    newest = page.entries[0]
    assert (newest.actor, newest.action, newest.subject) == ("champion", "adjudication_recorded", STUDY_B)
    assert newest.recorded_at == (START + timedelta(hours=9)).isoformat()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "dr.lee"}, [8, 4]),
        ({"actor": "  dr.lee "}, [8, 4]),  # surrounding spaces from a form are not part of the name
        ({"action": "study_ingested"}, [6, 2]),
        ({"action": AuditAction.MODEL_REGISTERED}, [5, 1]),
        ({"subject": STUDY_A}, [4, 3, 2]),
        ({"subject": STUDY_B, "actor": "system"}, [7, 6]),
        # the payload's model_version (at any depth) or the version itself as subject; "v1" is not "v1.2",
        # and text inside a string value that merely looks like the key does not count
        ({"model_version": "v1"}, [4, 3, 1]),
        ({"model_version": "v1.2"}, [8, 7, 5]),
        ({"model_version": "v_"}, []),  # LIKE wildcards are matched literally
        ({"model_version": "%"}, []),
        ({"actor": "", "action": None, "subject": "   "}, list(range(9, -1, -1))),  # blank means any
        ({"actor": "nobody"}, []),
    ],
)
def test_each_filter_matches_exactly(sf: SessionFactory, query: dict[str, object], expected: list[int]) -> None:
    assert _seqs(sf, **query) == expected


def test_time_bounds_are_inclusive_and_compared_in_utc(sf: SessionFactory) -> None:
    # Prepare: entry i was recorded at START + i h; bounds given in another zone mean the same instants
    plus2 = timezone(timedelta(hours=2))
    t3, t5 = START + timedelta(hours=3), START + timedelta(hours=5)

    # Execute / Assert
    assert _seqs(sf, time_from=t3, time_to=t5) == [5, 4, 3]
    assert _seqs(sf, time_from=t3.astimezone(plus2), time_to=t5.astimezone(plus2)) == [5, 4, 3]
    assert _seqs(sf, time_from=t3 + timedelta(microseconds=1), time_to=t5 - timedelta(microseconds=1)) == [4]
    assert _seqs(sf, time_from=START + timedelta(hours=8)) == [9, 8]
    assert _seqs(sf, time_to=START) == [0]
    assert _seqs(sf, time_from=t3, time_to=t3) == [3]
    assert _seqs(sf, time_from=t5, action="prediction_made") == [7]


def test_paging_walks_the_matches_newest_first(sf: SessionFactory) -> None:
    first = search_entries(sf, AUDITOR, AuditQuery(limit=4))
    second = search_entries(sf, AUDITOR, AuditQuery(limit=4, offset=4))
    last = search_entries(sf, AUDITOR, AuditQuery(limit=4, offset=8))
    beyond = search_entries(sf, AUDITOR, AuditQuery(limit=4, offset=50))

    assert [[e.seq for e in p.entries] for p in (first, second, last, beyond)] == [
        [9, 8, 7, 6],
        [5, 4, 3, 2],
        [1, 0],
        [],
    ]
    assert {p.total for p in (first, second, last, beyond)} == {len(LEDGER)}
    assert (first.has_previous, first.has_next) == (False, True)
    assert (second.has_previous, second.has_next) == (True, True)
    assert (last.has_previous, last.has_next) == (True, False)
    filtered = search_entries(sf, AUDITOR, AuditQuery(subject=STUDY_A, limit=2, offset=2))
    assert [e.seq for e in filtered.entries] == [2] and filtered.total == 3


# --- who may look ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.ADMIN, Role.CMIO])
def test_roles_with_the_audit_permission_may_search_open_and_verify(
    sf: SessionFactory, places: CheckpointPlaces, role: Role
) -> None:
    user = SignedInUser(role.value, role)
    assert search_entries(sf, user, AuditQuery()).total == len(LEDGER)
    assert entry_detail(sf, places, user, 0).entry.seq == 0
    assert verify_all(sf, places, user).ok


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.CHAMPION, Role.ML_ENGINEER])
def test_other_roles_are_refused_everything(sf: SessionFactory, places: CheckpointPlaces, role: Role) -> None:
    user = SignedInUser(role.value, role)
    with pytest.raises(PermissionDeniedError, match="may not view audit log"):
        search_entries(sf, user, AuditQuery())
    with pytest.raises(PermissionDeniedError):
        entry_detail(sf, places, user, 0)
    with pytest.raises(PermissionDeniedError):
        verify_all(sf, places, user)
    with pytest.raises(PermissionDeniedError):
        search_entries(sf, None, AuditQuery())  # type: ignore[arg-type]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error", "named"),
    [
        (AuditQuery(time_from=START + timedelta(hours=2), time_to=START), BadInputError, "2024-05-01T11:00:00+00:00"),
        (AuditQuery(action="study_deleted"), BadInputError, "'study_deleted'"),
        (AuditQuery(limit=0), OutOfRangeError, f"limit must be from 1 to {MAX_LIMIT}, got 0"),
        (AuditQuery(limit=MAX_LIMIT + 1), OutOfRangeError, str(MAX_LIMIT + 1)),
        (AuditQuery(offset=-1), OutOfRangeError, "offset must be from 0"),
        (AuditQuery(time_from=datetime(2024, 5, 1, 9, 0)), BadInputError, "naive '2024-05-01T09:00:00'"),
    ],
)
def test_bad_queries_are_refused_naming_the_value(
    sf: SessionFactory, query: AuditQuery, error: type[Exception], named: str
) -> None:
    with pytest.raises(error) as caught:
        search_entries(sf, AUDITOR, query)
    assert named in str(caught.value)


def test_time_from_after_time_to_names_both(sf: SessionFactory) -> None:
    with pytest.raises(BadInputError, match=r"time_from 2024-05-01T11:00:00\+00:00 is after time_to 2024-05-01T09"):
        search_entries(sf, AUDITOR, AuditQuery(time_from=START + timedelta(hours=2), time_to=START))


@pytest.mark.parametrize(("text", "seq"), [("0", 0), ("12", 12), (" 7 ", 7), ("2147483647", 2**31 - 1)])
def test_a_typed_seq_is_read_as_a_whole_number(text: str, seq: int) -> None:
    assert parse_seq(text) == seq


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5", "1e3", "٣", "0x10", "2147483648"])
def test_a_bad_typed_seq_is_refused_naming_it(text: str) -> None:
    with pytest.raises(BadInputError) as caught:
        parse_seq(text)
    assert repr(text) in str(caught.value)


def test_an_unknown_seq_is_refused_naming_the_ledger_range(sf: SessionFactory, places: CheckpointPlaces) -> None:
    with pytest.raises(UnknownAuditEntryError, match="no audit entry with seq 10: the ledger holds seq 0 to 9"):
        entry_detail(sf, places, AUDITOR, 10)


# --- one entry, its proof -------------------------------------------------------------------------


def test_a_checkpointed_entry_comes_with_a_proof_that_verifies(sf: SessionFactory, places: CheckpointPlaces) -> None:
    detail = entry_detail(sf, places, ADMIN, 3)

    assert (detail.entry.seq, detail.entry.action, detail.entry.subject) == (3, "prediction_made", STUDY_A)
    assert detail.payload == {"model_version": "v1", "score": 0.8}
    assert detail.payload_problem is None
    assert detail.chain_verified and detail.chain_problem is None
    assert detail.proof is not None and detail.not_covered is None
    assert detail.proof.ok and detail.proof.checkpoint.checkpoint.tree_size == CHECKPOINTED
    # The path re-checks on its own, with SHA-256 and the signed root only
    root = bytes.fromhex(detail.proof.checkpoint.checkpoint.root_hash)
    leaf = leaf_hash(bytes.fromhex(detail.entry.entry_hash))
    assert verify_inclusion(leaf, 3, CHECKPOINTED, [bytes.fromhex(h) for h in detail.proof.path], root)


def test_an_entry_newer_than_every_checkpoint_says_so_and_has_no_proof(
    sf: SessionFactory, places: CheckpointPlaces
) -> None:
    detail = entry_detail(sf, places, AUDITOR, CHECKPOINTED)

    assert detail.proof is None
    assert detail.not_covered is not None and "not yet covered by a checkpoint" in detail.not_covered
    assert detail.chain_verified


def test_an_edited_entry_breaks_the_chain_from_there_on_only(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    # Prepare: an insider edits entry 5's payload without re-hashing
    drop_audit_guards(engine)
    with sf.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 5).values(payload_json='{"serving":true}'))

    # Execute
    before, at, after = (entry_detail(sf, places, AUDITOR, seq) for seq in (4, 5, 6))
    check = verify_all(sf, places, AUDITOR)

    # Assert
    assert before.chain_verified
    assert not at.chain_verified and at.chain_problem is not None and "seq 5" in at.chain_problem
    assert not after.chain_verified
    assert at.payload == {"serving": True}  # shown as stored, edited or not
    assert not check.ok and not check.chain.ok and check.chain.first_bad_seq == 5


def test_an_unreadable_payload_is_shown_as_stored_text(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces
) -> None:
    drop_audit_guards(engine)
    with sf.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 2).values(payload_json="[not json"))

    detail = entry_detail(sf, places, AUDITOR, 2)

    assert detail.payload is None and detail.payload_problem is not None
    assert "not valid canonical JSON" in detail.payload_problem
    assert detail.entry.payload_json == "[not json" and not detail.chain_verified
    assert [e.seq for e in search_entries(sf, AUDITOR, AuditQuery(subject=STUDY_A)).entries] == [4, 3, 2]


def test_verify_all_reports_the_chain_and_the_checkpoints(sf: SessionFactory, places: CheckpointPlaces) -> None:
    check = verify_all(sf, places, AUDITOR)

    assert check.ok and check.chain.ok and check.chain.checked == len(LEDGER)
    assert check.checkpoints.ok and check.checkpoints.checkpoints == 1
    assert (check.checkpoints.covered, check.checkpoints.uncovered) == (CHECKPOINTED, len(LEDGER) - CHECKPOINTED)


# --- evidence export ------------------------------------------------------------------------------


def _add_user(sf: SessionFactory, username: str, role: Role) -> None:
    with sf.begin() as session:
        users.add_user(session, username=username, role=role.value, password_hash="not-a-real-hash", now=_clock())


@pytest.fixture
def sites_only(tmp_path: Path) -> Iterator[SessionFactory]:
    """A ledger of site registrations only: nothing an evidence package must carry a record for."""
    eng = make_engine(f"sqlite:///{tmp_path / 'sites.db'}")
    migrate(eng)
    factory = make_session_factory(eng)
    _append(factory, tuple(("system", AuditAction.SITE_ADDED, f"site-{i}", {"benchmark": i == 0}) for i in range(5)), 0)
    yield factory
    eng.dispose()


def test_an_auditor_exports_the_evidence_package_as_a_zip_and_the_export_is_audited(
    sites_only: SessionFactory, places: CheckpointPlaces
) -> None:
    # Prepare
    sf = sites_only
    _add_user(sf, "auditor", Role.AUDITOR)

    # Execute
    package = export_zip(sf, places, AUDITOR, now=_clock)

    # Assert: the ledger and the package verify; one folder in the zip holds every file of the package
    summary = package.summary
    assert summary.ok, (summary.reason, summary.package_report)
    assert summary.entries == 6  # five sites and the export's own entry
    folder = package.file_name.removesuffix(".zip")
    assert folder.startswith("vigil-evidence-")
    with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
        names = archive.namelist()
        entries = archive.read(f"{folder}/entries.jsonl").decode().splitlines()
    assert sorted(names) == sorted(f"{folder}/{name}" for name in summary.files)
    assert {"entries.jsonl", "checkpoints.jsonl", "MANIFEST.sha256", "verify_evidence.py"} <= set(summary.files)
    assert len(entries) == 6
    newest = search_entries(sf, AUDITOR, AuditQuery(limit=1)).entries[0]
    assert (newest.seq, newest.action, newest.actor) == (summary.export_seq, "audit_exported", "auditor")


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CMIO, Role.RADIOLOGIST])
def test_roles_without_the_export_permission_are_refused_and_nothing_is_written(
    sf: SessionFactory, places: CheckpointPlaces, role: Role
) -> None:
    _add_user(sf, role.value, role)
    with pytest.raises(PermissionDeniedError, match="may not export evidence"):
        export_zip(sf, places, SignedInUser(role.value, role), now=_clock)
    assert search_entries(sf, ADMIN, AuditQuery()).total == len(LEDGER)


def test_an_export_rechecks_the_role_stored_now(sf: SessionFactory, places: CheckpointPlaces) -> None:
    # The session still says auditor; the database says the role was withdrawn.
    _add_user(sf, "auditor", Role.RADIOLOGIST)
    with pytest.raises(PermissionDeniedError, match="'radiologist'"):
        export_zip(sf, places, AUDITOR, now=_clock)
    assert search_entries(sf, ADMIN, AuditQuery()).total == len(LEDGER)
