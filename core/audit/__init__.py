"""Tamper-evident audit ledger, pure: canonical JSON, hash chain, verification.

Imports only the standard library (``hashlib``, ``json``); ``core.store.audit_log`` persists it.
"""

from __future__ import annotations

from core.audit.chain import GENESIS_HASH, ChainCheck, canonical_json, compute_entry_hash, link, verify_chain
from core.audit.events import AuditAction, AuditEntry

__all__ = [
    "GENESIS_HASH",
    "AuditAction",
    "AuditEntry",
    "ChainCheck",
    "canonical_json",
    "compute_entry_hash",
    "link",
    "verify_chain",
]
