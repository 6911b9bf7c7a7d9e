"""Signed audit checkpoints in the database, and the ledger's leaf hashes they are built over.

Signing and Merkle hashing live in ``core.audit``; this module only stores checkpoints and
reads them (and the entries' hashes) back exactly as signed.
"""

from __future__ import annotations

from collections.abc import Generator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit.checkpoint import Checkpoint, SignedCheckpoint
from core.store.audit_log import STREAM_BATCH
from core.store.tables import AuditCheckpointRow, AuditEntryRow

__all__ = ["add", "entry_hash_of", "iter_entry_hashes", "latest", "latest_size", "list_all", "recorded_at_of"]


def add(session: Session, signed: SignedCheckpoint) -> None:
    """Stage a signed checkpoint in the caller's transaction.

    Raises
    ------
    sqlalchemy.exc.IntegrityError
        If a checkpoint of the same tree size exists.
    """
    c = signed.checkpoint
    session.add(
        AuditCheckpointRow(
            tree_size=c.tree_size,
            root_hash=c.root_hash,
            timestamp=c.timestamp,
            key_id=c.key_id,
            signature=signed.signature,
        )
    )
    session.flush()


def list_all(session: Session) -> list[SignedCheckpoint]:
    """Every stored checkpoint, smallest tree first.

    Raises
    ------
    ValueError
        If a stored row no longer holds a well-formed checkpoint (it names the tree size).
    """
    rows = session.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.tree_size)).all()
    return [_to_signed(row) for row in rows]


def latest(session: Session) -> SignedCheckpoint | None:
    """The checkpoint of the largest tree, or None when none was made."""
    row = session.scalars(
        select(AuditCheckpointRow).order_by(AuditCheckpointRow.tree_size.desc()).limit(1)
    ).one_or_none()
    return None if row is None else _to_signed(row)


def latest_size(session: Session) -> int:
    """Entries covered by the newest checkpoint (0 when none was made); one indexed read."""
    size = session.scalars(select(func.max(AuditCheckpointRow.tree_size))).one()
    return 0 if size is None else int(size)


def recorded_at_of(session: Session, seq: int) -> str | None:
    """The stored ``recorded_at`` of entry ``seq``, or None when there is no such entry."""
    return session.scalars(select(AuditEntryRow.recorded_at).where(AuditEntryRow.seq == seq)).one_or_none()


def iter_entry_hashes(session: Session) -> Generator[tuple[int, str]]:
    """Stream ``(seq, entry_hash)`` of every ledger entry in ``seq`` order."""
    query = (
        select(AuditEntryRow.seq, AuditEntryRow.entry_hash)
        .order_by(AuditEntryRow.seq)
        .execution_options(yield_per=STREAM_BATCH)
    )
    result = session.execute(query)
    try:
        for row in result:
            yield row.seq, row.entry_hash
    finally:
        result.close()


def entry_hash_of(session: Session, seq: int) -> str | None:
    """The stored ``entry_hash`` of entry ``seq``, or None when there is no such entry."""
    return session.scalars(select(AuditEntryRow.entry_hash).where(AuditEntryRow.seq == seq)).one_or_none()


def _to_signed(row: AuditCheckpointRow) -> SignedCheckpoint:
    # A row edited outside Vigil may no longer make a Checkpoint; say which one.
    try:
        checkpoint = Checkpoint(
            tree_size=row.tree_size, root_hash=row.root_hash, timestamp=row.timestamp, key_id=row.key_id
        )
    except ValueError as exc:
        raise ValueError(f"stored checkpoint of tree size {row.tree_size} is unreadable: {exc}") from exc
    return SignedCheckpoint(checkpoint, row.signature)
