"""Engine, session factory and migration contract: SQLite tuning, URL errors, Alembic."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.pool import StaticPool

from core.audit.chain import to_recorded_at
from core.audit.events import AuditAction
from core.errors import DatabaseURLError
from core.store import audit_log, sites
from core.store.engine import (
    SessionFactory,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    make_session_factory,
    migrate,
)
from core.store.tables import Base, SiteRow, StudyRow
from tests.conftest import NewDatabase

#: The single head every migration path ends at (the prior-study index, after the worklist score indexes).
HEAD = "0021"

TABLES = {"site", "study", "instance", "model_version", "prediction", "explanation", "app_user", "audit_entry"}


def _file_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    return engine


# --- SQLite tuning -------------------------------------------------------------------------


def test_file_database_uses_wal(tmp_path: Path) -> None:
    # Prepare
    engine = _file_engine(tmp_path)

    # Execute
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()

    # Assert
    assert mode == "wal"
    assert (tmp_path / "v.db-wal").exists()
    engine.dispose()


def test_foreign_keys_are_enforced(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory() as session:
        # SQLite checks foreign keys only when asked, per connection; PostgreSQL always does.
        sqlite = session.get_bind().dialect.name == "sqlite"
        enabled = session.execute(text("PRAGMA foreign_keys")).scalar() if sqlite else 1

    # Execute / Assert
    assert enabled == 1
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        session.add(
            StudyRow(
                study_uid="1.2.3",
                site_id=999,
                patient_id="",
                accession_number="",
                study_date=None,
                modality="DX",
                body_part="",
                view_position="",
                manufacturer_raw="",
                vendor="",
                vendor_mapped=False,
                manufacturer_model_name="",
                station_name="",
                institution_name="",
                software_versions="",
                protocol_name="",
                patient_age="",
                patient_sex="",
                kvp=None,
                created_at=now,
            )
        )


def test_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    # Prepare
    engine = _file_engine(tmp_path)
    factory = make_session_factory(engine)
    other = sqlite3.connect(tmp_path / "v.db", timeout=0, isolation_level=None)

    # Execute: a transaction that has only read so far
    with factory.begin() as session:
        session.execute(select(SiteRow)).all()
        # Assert: BEGIN IMMEDIATE already holds the write lock, so a second writer waits
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")

    other.execute("BEGIN IMMEDIATE")  # released at commit
    other.execute("ROLLBACK")
    other.close()
    engine.dispose()


def test_read_only_factory_does_not_block_writers(tmp_path: Path) -> None:
    # Prepare
    engine = _file_engine(tmp_path)
    reader = make_session_factory(engine, read_only=True)
    other = sqlite3.connect(tmp_path / "v.db", timeout=0, isolation_level=None)

    # Execute
    with reader.begin() as session:
        session.execute(select(SiteRow)).all()
        in_transaction = session.connection().connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")

    # Assert: a real (deferred) transaction, so reads are a consistent snapshot
    assert in_transaction

    other.close()
    engine.dispose()


def test_rollback_undoes_everything_in_the_transaction(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    class Boom(Exception):
        pass

    # Execute: an action and its audit entry, then a failure before commit
    with pytest.raises(Boom), session_factory.begin() as session:
        sites.add_site(session, "north", now=now)
        audit_log.append(
            session,
            actor="admin",
            action=AuditAction.SITE_ADDED,
            subject="north",
            payload={},
            recorded_at=to_recorded_at(now),
        )
        raise Boom

    # Assert: neither row exists
    with session_factory() as session:
        assert sites.list_sites(session) == []
        assert audit_log.count_entries(session) == 0


def test_action_and_audit_entry_commit_together(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        site = sites.add_site(session, "north", now=now)
        audit_log.append(
            session,
            actor="admin",
            action=AuditAction.SITE_ADDED,
            subject=site.name,
            payload={"site_id": site.id},
            recorded_at=to_recorded_at(now),
        )

    # Assert
    with session_factory() as session:
        assert [s.name for s in sites.list_sites(session)] == ["north"]
        assert [e.subject for e in audit_log.iter_entries(session)] == ["north"]


def test_records_stay_readable_after_commit(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        row = SiteRow(name="north", is_benchmark=True, created_at=now)
        session.add(row)

    # Execute: expire_on_commit=False keeps loaded attributes after the session closed
    name = row.name

    # Assert
    assert name == "north"
    assert session_factory.kw["expire_on_commit"] is False


def test_memory_database_is_shared_by_every_session() -> None:
    # Prepare
    engine = make_engine("sqlite://")
    migrate(engine)
    factory = make_session_factory(engine)

    # Execute
    with factory.begin() as session:
        session.add(SiteRow(name="north", is_benchmark=False, created_at=datetime.now(UTC)))
    with factory() as session:
        names = session.scalars(select(SiteRow.name)).all()

    # Assert
    assert isinstance(engine.pool, StaticPool)
    assert names == ["north"]


# --- timestamps ----------------------------------------------------------------------------


def test_timestamps_come_back_aware_utc(session_factory: SessionFactory) -> None:
    # Prepare: an aware time in another zone
    cest = datetime(2024, 5, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))

    # Execute
    with session_factory.begin() as session:
        sites.add_site(session, "north", now=cest)
    with session_factory() as session:
        stored = sites.get_site(session, "north").created_at

    # Assert
    assert stored == cest
    assert stored.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(session_factory: SessionFactory) -> None:
    # Execute / Assert
    with pytest.raises(StatementError, match="naive datetime"), session_factory.begin() as session:
        sites.add_site(session, "north", now=datetime(2024, 5, 1, 9, 30))


# --- bad URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("not-a-url", "not a SQLAlchemy URL"),
        ("postgresql://nohost.invalid/x", "cannot use database URL"),
        ("sqlite:////nonexistent/dir/x.db", "does not exist"),
        ("nosuchdialect://host/db", "driver not available"),
    ],
)
def test_unusable_urls_raise_database_url_error(url: str, detail: str) -> None:
    # Execute / Assert
    with pytest.raises(DatabaseURLError, match=detail) as caught:
        make_engine(url, connect_timeout_s=2)
    assert caught.value.url.split("://")[0] == url.split("://")[0]


def test_url_errors_hide_the_password() -> None:
    # Execute
    with pytest.raises(DatabaseURLError) as caught:
        make_engine("postgresql://vigil:s3cret@nohost.invalid/x", connect_timeout_s=2)

    # Assert
    assert "s3cret" not in str(caught.value)
    assert "nohost.invalid" in str(caught.value)


def test_unopenable_sqlite_file_raises_database_url_error(tmp_path: Path) -> None:
    # Prepare: a directory where the database file should be
    (tmp_path / "db").mkdir()

    # Execute / Assert
    with pytest.raises(DatabaseURLError, match="cannot connect"):
        make_engine(f"sqlite:///{tmp_path / 'db'}")


# --- migrations ----------------------------------------------------------------------------


def test_migrate_creates_every_table_and_is_idempotent(backend: str, new_database: NewDatabase) -> None:
    # Prepare
    engine = make_engine(new_database(backend))
    before = current_revision(engine)

    # Execute
    first = migrate(engine)
    second = migrate(engine)

    # Assert
    assert before is None
    assert first == second == HEAD == head_revision() == current_revision(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrated_schema_matches_the_models(store_engine: Engine) -> None:
    # Execute
    with store_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)

    # Assert
    assert diffs == []


def test_schema_comparison_would_see_a_difference(store_engine: Engine) -> None:
    # Prepare: a control, so an always-empty comparison cannot pass the test above
    metadata = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["site"].append_column(Column("extra", Integer, nullable=True))

    # Execute
    with store_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), metadata)

    # Assert
    assert [d[0] for d in diffs] == ["add_column"]


def test_migration_downgrades_and_upgrades_again(backend: str, new_database: NewDatabase) -> None:
    # Prepare
    engine = make_engine(new_database(backend))
    migrate(engine)

    # Execute
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    emptied = set(inspect(engine).get_table_names()) - {"alembic_version"}
    again = migrate(engine)

    # Assert
    assert emptied == set()
    assert again == HEAD
    engine.dispose()


def test_concurrent_migrations_do_not_conflict(backend: str, new_database: NewDatabase) -> None:
    # Prepare: two processes' worth of engines on one fresh database
    url = new_database(backend)
    engines = [make_engine(url), make_engine(url)]
    results: list[str] = []
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            results.append(migrate(engine))
        except BaseException as exc:  # noqa: BLE001 - reported through the assertion below
            errors.append(exc)

    # Execute
    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Assert
    assert errors == []
    assert results == [HEAD, HEAD]
    for engine in engines:
        engine.dispose()
