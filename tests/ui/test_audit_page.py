"""The Audit page, headless (AppTest): who reaches it, search, an entry with its proof, verification."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.audit.events import AuditAction
from core.services.audit_checkpoints import CheckpointPlaces, make_checkpoint
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from tests.ui.conftest import APP, USERS, count_elements, texts
from tests.ui.installation import Installation, clock

App = Callable[[Role | None], AppTest]
PAGE = "pages/audit.py"
ELEMENT_BUDGET = 200  # as every page (tests/ui/test_pages_apptest.py)


def _open(app: App, role: Role = Role.AUDITOR, seq: str | None = None) -> AppTest:
    at = app(role)
    if seq is not None:
        at.query_params["seq"] = seq
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _table(at: AppTest) -> dict[str, list[object]]:
    frame = at.dataframe[0].value
    return {str(c): list(frame[c]) for c in frame.columns}


def _checkpointed(inst: Installation) -> int:
    """Sign a checkpoint over the whole ledger; its size."""
    made = make_checkpoint(inst.session_factory(), CheckpointPlaces.from_settings(inst.settings), now=clock)
    return made.signed.checkpoint.tree_size


def _append_one(inst: Installation) -> int:
    """Append an entry after every checkpoint; its seq."""
    with inst.session_factory().begin() as session:
        entry = audit_log.append(
            session,
            actor="system",
            action=AuditAction.SITE_ADDED,
            subject="late-site",
            payload={"benchmark": False},
            recorded_at=clock().isoformat(),
        )
    return entry.seq


def test_an_auditor_sees_the_newest_entries_and_verifies_the_ledger(app: App, installation: Installation) -> None:
    # Prepare
    size = _checkpointed(installation)
    at = _open(app)
    assert [t.value for t in at.title] == ["Audit"]
    table = _table(at)
    assert list(table) == ["Seq", "Recorded (UTC)", "Actor", "Action", "Subject"]
    assert table["Seq"][0] == size - 1 and table["Seq"] == sorted(table["Seq"], reverse=True)
    assert count_elements(at) <= ELEMENT_BUDGET

    # Execute
    next(b for b in at.button if b.label == "Verify ledger").click().run()

    # Assert
    assert not at.exception, at.exception
    success = " ".join(s.value for s in at.success)
    assert "The ledger verifies" in success and f"{size} entries chain from seq 0" in success
    assert f"covering {size} entries" in success


def test_search_by_action_then_open_an_entry_with_its_verified_proof(app: App, installation: Installation) -> None:
    # Prepare
    _checkpointed(installation)
    at = _open(app)

    # Execute: search study ingestions, then open the newest
    next(s for s in at.selectbox if s.label == "Action").set_value("study_ingested")
    next(b for b in at.button if b.label == "Search").click().run()
    table = _table(at)
    assert table["Action"] and set(table["Action"]) == {"study_ingested"}
    seq = int(table["Seq"][0])
    at.selectbox(key="audit-pick").set_value(seq).run()

    # Assert: the entry's address is ?seq=N and it shows its payload, chain verdict and proof
    assert not at.exception, at.exception
    assert at.query_params["seq"] == [str(seq)] or at.query_params["seq"] == str(seq)
    assert [h.value for h in at.subheader] == [f"Entry {seq}"]
    success = " ".join(s.value for s in at.success)
    assert f"Chain verifies: every entry from seq 0 through {seq}" in success
    assert f"Proof verified: entry {seq} is included in signed checkpoint" in success
    shown = texts(at)
    assert "path verified: **yes**" in shown and "signature verified: **yes**" in shown
    assert "Sibling hash (nearest first)" in shown
    assert count_elements(at) <= ELEMENT_BUDGET

    # Back to the search
    next(b for b in at.button if b.label == "Back to the search").click().run()
    assert "seq" not in at.query_params and not at.subheader


def test_an_entry_newer_than_every_checkpoint_has_no_proof_yet(app: App, installation: Installation) -> None:
    _checkpointed(installation)
    seq = _append_one(installation)

    at = _open(app, seq=str(seq))

    assert [h.value for h in at.subheader] == [f"Entry {seq}"]
    assert any("not yet covered by a checkpoint" in i.value for i in at.info)
    assert not any("Proof verified" in s.value for s in at.success)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("abc", "seq must be a whole number from 0 to 2147483647, got 'abc'"),
        ("-3", "got '-3'"),
        ("999999", "no audit entry with seq 999999"),
    ],
)
def test_a_bad_address_says_what_is_wrong(app: App, typed: str, message: str) -> None:
    at = _open(app, seq=typed)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not at.subheader


def test_a_bad_time_range_is_refused_naming_it(app: App) -> None:
    import datetime as dt

    at = _open(app)
    dates = list(at.date_input)
    dates[0].set_value(dt.date(2024, 5, 2))
    dates[1].set_value(dt.date(2024, 5, 1))
    next(b for b in at.button if b.label == "Search").click().run()
    assert any("is after time_to" in e.value and "2024-05-02T00:00:00+00:00" in e.value for e in at.error)


def test_an_administrator_reaches_the_page(app: App) -> None:
    at = _open(app, Role.ADMIN)
    assert [t.value for t in at.title] == ["Audit"] and at.dataframe


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.CHAMPION, Role.ML_ENGINEER])
def test_other_roles_do_not_reach_the_page(app: App, installation: Installation, role: Role) -> None:
    # Through the router: the page is not registered for them
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)

    # By running the page file itself (as a URL typed by hand would): refused, no entries
    direct = AppTest.from_file(str(Path(APP).parent / PAGE), default_timeout=60)
    direct.session_state["vigil.user"] = SignedInUser(USERS[role], role)
    direct.query_params["seq"] = "0"
    direct.run()
    assert any("does not give access to this page" in e.value for e in direct.error)
    assert not direct.dataframe and not direct.subheader


def test_an_auditor_exports_the_evidence_package_and_the_export_is_audited(
    app: App, installation: Installation
) -> None:
    # Prepare
    at = _open(app)
    with installation.session_factory()() as session:
        before = audit_log.count_entries(session)

    # Execute
    next(b for b in at.button if b.label == "Export evidence package").click().run()

    # Assert: a zip to download, and the export's own entry in the ledger
    assert not at.exception, at.exception
    assert any("Evidence package ready" in s.value for s in at.success), [s.value for s in at.success]
    assert any("vigil-evidence-" in str(d.proto) and ".zip" in str(d.proto) for d in at.get("download_button"))
    with installation.session_factory()() as session:
        newest = audit_log.last_entry(session)
    assert newest is not None and (newest.action, newest.actor) == (AuditAction.AUDIT_EXPORTED, "auditor")
    assert newest.seq == before


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CMIO])
def test_roles_that_may_view_but_not_export_get_no_export_button(app: App, role: Role) -> None:
    at = _open(app, role)
    labels = [b.label for b in at.button]
    assert "Verify ledger" in labels and "Export evidence package" not in labels
