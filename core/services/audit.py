"""Verify the audit ledger end to end."""

from __future__ import annotations

from core.audit.chain import ChainCheck
from core.store import audit_log
from core.store.engine import SessionFactory

__all__ = ["verify_ledger"]


def verify_ledger(session_factory: SessionFactory) -> ChainCheck:
    """Recompute every hash and link of the stored chain; the first bad ``seq`` when it fails."""
    with session_factory() as session:
        return audit_log.verify(session)
