"""The audit ledger becomes append-only at the database: UPDATE, DELETE (and TRUNCATE) refused.

Revision ID: 0010
Revises: 0009
Create Date: 2027-03-01

SQLite: two ``BEFORE`` triggers, ``audit_entry_no_update`` and ``audit_entry_no_delete``, abort
the statement with "the audit ledger is append-only". PostgreSQL: one plpgsql function raising
the same message, row-level ``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers of those names, a
statement-level ``BEFORE TRUNCATE`` trigger ``audit_entry_no_truncate`` (TRUNCATE fires no row
triggers, and the table's owner keeps the TRUNCATE privilege whatever is revoked) and
``REVOKE TRUNCATE ... FROM PUBLIC``. Other databases are left as they are.

This guards against the application and anyone using its credentials by mistake, not against a
database owner, who can drop the triggers: the signed checkpoints kept outside the database
catch what such an insider does. ``DROP TABLE`` drops the triggers with the table (SQLite fires
none while dropping), so ``0001``'s downgrade still works. A later migration that rebuilds
``audit_entry`` (SQLite batch mode copies the table) must create these triggers again.

Frozen like ``0001``: the statements are written out here rather than derived from
``core.store.tables``.
"""

from __future__ import annotations

from typing import Final

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

TABLE: Final = "audit_entry"
MESSAGE: Final = "the audit ledger is append-only"
PG_FUNCTION: Final = "audit_entry_refuse_change"

SQLITE_UPGRADE: Final = tuple(
    f"CREATE TRIGGER audit_entry_no_{verb.lower()} BEFORE {verb} ON {TABLE} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
    for verb in ("UPDATE", "DELETE")
)
SQLITE_DOWNGRADE: Final = (
    "DROP TRIGGER IF EXISTS audit_entry_no_delete",
    "DROP TRIGGER IF EXISTS audit_entry_no_update",
)

POSTGRESQL_UPGRADE: Final = (
    # TG_OP names the refused operation (UPDATE, DELETE or TRUNCATE). Concatenated rather than
    # RAISE's "%" placeholder: drivers with the pyformat paramstyle double a "%" in the text.
    f"CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION USING MESSAGE = '{MESSAGE}: ' || TG_OP || ' on {TABLE} refused'; END $$",
    f"CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()",
    f"CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()",
    f"CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()",
    f"REVOKE TRUNCATE ON {TABLE} FROM PUBLIC",
)
# PUBLIC holds no TRUNCATE by default, so the REVOKE needs no GRANT to undo it.
POSTGRESQL_DOWNGRADE: Final = (
    f"DROP TRIGGER IF EXISTS audit_entry_no_truncate ON {TABLE}",
    f"DROP TRIGGER IF EXISTS audit_entry_no_delete ON {TABLE}",
    f"DROP TRIGGER IF EXISTS audit_entry_no_update ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()",
)


def upgrade() -> None:
    """Create the guards for the connected database's dialect."""
    _run({"sqlite": SQLITE_UPGRADE, "postgresql": POSTGRESQL_UPGRADE})


def downgrade() -> None:
    """Drop the guards again."""
    _run({"sqlite": SQLITE_DOWNGRADE, "postgresql": POSTGRESQL_DOWNGRADE})


def _run(statements: dict[str, tuple[str, ...]]) -> None:
    # get_context().dialect, not get_bind(): offline ``--sql`` mode has a dialect but no connection.
    for statement in statements.get(op.get_context().dialect.name, ()):
        op.execute(statement)
