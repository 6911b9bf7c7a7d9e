"""The ledger is append-only at the database (migration ``0010``): UPDATE and DELETE are refused.

Every test here acts as the application (its engine, its sessions) or as any other client of the
same file, never as an insider who drops the triggers first (``tests/core/audit/insider.py``).
Every behaviour runs live on SQLite and on PostgreSQL (the session's throwaway server,
``tests/postgres.py``); the PostgreSQL statements are also checked as the SQL Alembic emits.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, inspect, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.audit.chain import to_recorded_at
from core.audit.events import AuditAction, AuditEntry
from core.store import audit_log, sites
from core.store.engine import alembic_config, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow, SiteRow
from tests.conftest import DATABASES, NewDatabase
from tests.core.audit.insider import drop_audit_guards

N = 5
MESSAGE = "the audit ledger is append-only"


def _migration() -> ModuleType:
    script = ScriptDirectory.from_config(alembic_config(None)).get_revision("0010")
    assert script is not None
    return script.module


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, new_database: NewDatabase) -> Iterator[Engine]:
    """A migrated store holding a ledger of N entries, on each database."""
    engine_ = make_engine(new_database(request.param, migrated=True))
    migrate(engine_)
    factory = make_session_factory(engine_)
    for i in range(N):
        with factory.begin() as session:
            _append(session, i)
    yield engine_
    engine_.dispose()


def _append(session: Session, i: int) -> AuditEntry:
    return audit_log.append(
        session,
        actor="radiologist1",
        action=AuditAction.SITE_ADDED,
        subject=f"site{i}",
        payload={"site": f"site{i}", "benchmark": False},
        recorded_at=to_recorded_at(datetime(2024, 5, 1, 9, 30, tzinfo=UTC) + timedelta(seconds=i)),
    )


def _ledger(engine_: Engine) -> list[AuditEntry]:
    with make_session_factory(engine_)() as session:
        return list(audit_log.iter_entries(session))


# --- the application is refused ------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [{"actor": "admin"}, {"payload_json": '{"benchmark":true,"site":"site1"}'}, {"seq": 99}]
)
def test_update_as_the_application_is_refused(engine: Engine, values: dict[str, object]) -> None:
    # Prepare
    before = _ledger(engine)

    # Execute / Assert
    with pytest.raises(DBAPIError, match=MESSAGE), make_session_factory(engine).begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 1).values(**values))

    # Assert: nothing changed, and the chain still verifies to the end
    assert _ledger(engine) == before
    with make_session_factory(engine)() as session:
        assert (audit_log.verify(session).ok, audit_log.count_entries(session)) == (True, N)


@pytest.mark.parametrize("where", [AuditEntryRow.seq == N - 1, AuditEntryRow.seq >= 0])
def test_delete_as_the_application_is_refused(engine: Engine, where: object) -> None:
    # Execute / Assert: the last row (tail truncation) and every row
    with pytest.raises(DBAPIError, match=MESSAGE), make_session_factory(engine).begin() as session:
        session.execute(delete(AuditEntryRow).where(where))  # type: ignore[arg-type]

    # Assert
    with make_session_factory(engine)() as session:
        assert (audit_log.verify(session).ok, audit_log.count_entries(session)) == (True, N)


def test_a_refused_edit_takes_the_whole_user_action_with_it(engine: Engine) -> None:
    # Execute: one transaction that adds a site, then tries to rewrite the ledger
    factory = make_session_factory(engine)
    with pytest.raises(DBAPIError, match=MESSAGE), factory.begin() as session:
        sites.add_site(session, "north", is_benchmark=False, now=datetime(2024, 5, 1, tzinfo=UTC))
        session.execute(update(AuditEntryRow).values(actor="admin"))

    # Assert: the site is not stored either
    with factory() as session:
        assert session.scalars(select(SiteRow.name)).all() == []
        assert audit_log.count_entries(session) == N


def test_appending_still_works(engine: Engine) -> None:
    # Execute
    with make_session_factory(engine).begin() as session:
        new = _append(session, N)

    # Assert
    with make_session_factory(engine)() as session:
        check = audit_log.verify(session)
    assert (new.seq, check.ok, check.checked) == (N, True, N + 1)


def test_another_client_of_the_file_is_refused_too(tmp_path: Path) -> None:
    # Prepare: the guard lives in the database file, not in Vigil's engine
    engine_ = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine_)
    with make_session_factory(engine_).begin() as session:
        _append(session, 0)
    engine_.dispose()

    # Execute / Assert: a bare sqlite3 connection, as `sqlite3 vigil.db` would open
    with sqlite3.connect(tmp_path / "v.db") as con:
        for statement in ("UPDATE audit_entry SET actor = 'mallory'", "DELETE FROM audit_entry"):
            with pytest.raises(sqlite3.IntegrityError, match=MESSAGE):
                con.execute(statement)
        assert con.execute("SELECT count(*), min(actor) FROM audit_entry").fetchone() == (1, "radiologist1")
    con.close()


def test_an_insider_who_drops_the_guards_can_edit(engine: Engine) -> None:
    # Prepare: the control for the tests above; the refusal comes from the triggers alone
    drop_audit_guards(engine)

    # Execute
    with make_session_factory(engine).begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 1).values(actor="admin"))

    # Assert: now only verification stands in the way
    with make_session_factory(engine)() as session:
        check = audit_log.verify(session)
    assert (check.ok, check.first_bad_seq) == (False, 1)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_truncate_as_the_application_is_refused_on_postgresql(engine: Engine) -> None:
    # Execute / Assert: TRUNCATE fires no row trigger; the statement-level one refuses it
    with pytest.raises(DBAPIError, match=f"{MESSAGE}: TRUNCATE"), engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE audit_entry")

    # Assert
    assert len(_ledger(engine)) == N


# --- the migration ---------------------------------------------------------------------------


def _triggers(engine_: Engine) -> set[str]:
    if engine_.dialect.name == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = 'audit_entry'::regclass"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entry'"
    with engine_.connect() as connection:
        return set(connection.execute(text(sql)).scalars())


#: The guards each database ends up with: PostgreSQL also refuses TRUNCATE.
GUARDS = {
    "sqlite": {"audit_entry_no_update", "audit_entry_no_delete"},
    "postgresql": {"audit_entry_no_update", "audit_entry_no_delete", "audit_entry_no_truncate"},
}


def test_migration_creates_and_drops_the_triggers(backend: str, new_database: NewDatabase) -> None:
    # Prepare
    engine_ = make_engine(new_database(backend))
    migrate(engine_)
    created = _triggers(engine_)

    # Execute
    with engine_.begin() as connection:
        command.downgrade(alembic_config(connection), _migration().down_revision)
    dropped = _triggers(engine_)
    with make_session_factory(engine_).begin() as session:  # editable again without them
        _append(session, 0)
        session.execute(update(AuditEntryRow).values(actor="x"))
    migrate(engine_)
    again = _triggers(engine_)

    # Assert
    assert created == again == GUARDS[engine_.dialect.name]
    assert dropped == set()
    assert "audit_entry" in inspect(engine_).get_table_names()
    engine_.dispose()


def _offline_sql(direction: str) -> str:
    # Alembic's --sql mode renders the migration for PostgreSQL without a server or driver.
    module = _migration()
    config = alembic_config(None)
    config.set_main_option("sqlalchemy.url", "postgresql://")
    config.output_buffer = io.StringIO()
    if direction == "upgrade":
        command.upgrade(config, f"{module.down_revision}:0010", sql=True)
    else:
        command.downgrade(config, f"0010:{module.down_revision}", sql=True)
    out = config.output_buffer.getvalue()
    return " ".join(out.split())


def test_postgresql_upgrade_refuses_update_delete_and_truncate() -> None:
    # Execute
    sql = _offline_sql("upgrade")

    # Assert
    function = (
        "CREATE FUNCTION audit_entry_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION USING MESSAGE = 'the audit ledger is append-only: ' || TG_OP "
        "|| ' on audit_entry refused'; END $$;"
    )
    assert function in sql
    for name, when, level in [
        ("audit_entry_no_update", "BEFORE UPDATE", "ROW"),
        ("audit_entry_no_delete", "BEFORE DELETE", "ROW"),
        ("audit_entry_no_truncate", "BEFORE TRUNCATE", "STATEMENT"),
    ]:
        trigger = f"CREATE TRIGGER {name} {when} ON audit_entry FOR EACH {level} EXECUTE FUNCTION"
        assert f"{trigger} audit_entry_refuse_change();" in sql
    assert "REVOKE TRUNCATE ON audit_entry FROM PUBLIC;" in sql
    assert sql.index("CREATE FUNCTION") < sql.index("CREATE TRIGGER")
    assert "%" not in sql  # a pyformat driver would double it and break RAISE's format


def test_postgresql_downgrade_drops_everything_the_upgrade_created() -> None:
    # Execute
    sql = _offline_sql("downgrade")

    # Assert
    for name in ("audit_entry_no_update", "audit_entry_no_delete", "audit_entry_no_truncate"):
        assert f"DROP TRIGGER IF EXISTS {name} ON audit_entry;" in sql
    assert "DROP FUNCTION IF EXISTS audit_entry_refuse_change();" in sql
    assert sql.index("DROP TRIGGER") < sql.index("DROP FUNCTION")


def test_the_sqlite_migration_emits_nothing_for_postgresql_and_vice_versa() -> None:
    # Execute
    module = _migration()

    # Assert: each dialect gets only its own statements
    assert not any("RAISE(ABORT" in s for s in module.POSTGRESQL_UPGRADE)
    assert not any("plpgsql" in s for s in module.SQLITE_UPGRADE)
    assert "RAISE(ABORT" not in _offline_sql("upgrade")


# --- the serialized head ---------------------------------------------------------------------


def test_postgresql_appends_take_the_head_lock() -> None:
    # Execute
    statement = audit_log.head_lock_statement("postgresql")

    # Assert
    assert statement is not None
    compiled = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    assert str(compiled).startswith(f"SELECT pg_advisory_xact_lock({audit_log.HEAD_LOCK_KEY})")
    assert -(2**63) <= audit_log.HEAD_LOCK_KEY < 2**63  # a PostgreSQL bigint


def test_sqlite_needs_no_head_lock_because_writers_begin_immediate(tmp_path: Path) -> None:
    # Prepare
    engine_ = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine_)

    # Execute: while one append's transaction is open, a second writer cannot even begin
    with make_session_factory(engine_).begin() as session:
        _append(session, 0)
        con = sqlite3.connect(tmp_path / "v.db", timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            con.execute("BEGIN IMMEDIATE")
        con.close()

    # Assert
    assert audit_log.head_lock_statement("sqlite") is None
    engine_.dispose()
