"""Act as an insider with DDL rights: drop the append-only guards before tampering with the ledger.

Tests that edit, delete or reorder audit rows through SQL show what verification catches when
someone gets past the database's own refusal (migration ``0010``); an application connection
cannot do it, a database owner can.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Engine

__all__ = ["GUARD_TRIGGERS", "drop_audit_guards"]

#: Triggers migration ``0010`` puts on ``audit_entry`` (PostgreSQL also has the TRUNCATE one).
GUARD_TRIGGERS: Final = ("audit_entry_no_update", "audit_entry_no_delete")


def drop_audit_guards(engine: Engine) -> None:
    """Drop the triggers that refuse UPDATE and DELETE (and TRUNCATE) on ``audit_entry``; idempotent.

    Parameters
    ----------
    engine : Engine
        SQLite or PostgreSQL engine of a migrated store.
    """
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for name in (*GUARD_TRIGGERS, "audit_entry_no_truncate"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON audit_entry")
        else:
            for name in GUARD_TRIGGERS:
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
