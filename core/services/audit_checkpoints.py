"""Signed Merkle checkpoints of the audit ledger: make, prove, verify.

The tree's leaves are the stored entries' ``entry_hash`` values as 32 raw bytes, in ``seq``
order (leaf hash = SHA-256(0x00 || entry_hash)). An entry hash already covers every field of
its entry and the previous entry's hash, so a root over entry hashes commits to the whole
content of the first ``tree_size`` entries, and a proof needs only the 32-byte hashes.

A checkpoint is stored twice: in ``audit_checkpoint`` (same transaction) and as one JSON line
appended to an external file (``Settings.audit_checkpoint_file``) that should live where the
database admin cannot rewrite it. It is signed with an Ed25519 key kept in a file created 0600
on first use; the public key is exported so that a reviewer verifies with a key they hold.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json, to_recorded_at
from core.audit.checkpoint import (
    KEY_SIZE,
    Checkpoint,
    SignedCheckpoint,
    key_id,
    private_key_from_bytes,
    public_key_bytes,
    sign,
    verify_signature,
)
from core.audit.merkle import (
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from core.audit.schedule import CheckpointPolicy, is_due
from core.config import Settings
from core.errors import (
    AuditChainError,
    AuditEntryNotCheckpointedError,
    AuditKeyError,
    ConfigError,
    UnknownAuditEntryError,
)
from core.store import audit_log
from core.store import checkpoints as checkpoint_store
from core.store.engine import SessionFactory

__all__ = [
    "CheckpointCheck",
    "CheckpointPlaces",
    "InclusionProof",
    "MadeCheckpoint",
    "checkpoint_if_due",
    "checkpoint_policy",
    "load_or_create_signing_key",
    "make_checkpoint",
    "prove",
    "public_key",
    "read_external",
    "read_public_key_file",
    "verify_checkpoints",
]

_FIELDS: Final = frozenset({"tree_size", "root_hash", "timestamp", "key_id", "signature"})


@dataclass(frozen=True, slots=True)
class CheckpointPlaces:
    """Where the signing key and the external checkpoint file live (from :class:`Settings`)."""

    key_file: Path
    external_file: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointPlaces:
        """The configured places."""
        return cls(key_file=settings.audit_signing_key_file, external_file=settings.audit_checkpoint_file)


@dataclass(frozen=True, slots=True)
class MadeCheckpoint:
    """Result of :func:`make_checkpoint`: the newest checkpoint and whether this call made it."""

    signed: SignedCheckpoint
    created: bool


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 6962 audit path from one entry to a signed checkpoint's root.

    Attributes
    ----------
    seq, entry_hash : int, str
        The entry proved; its leaf is SHA-256(0x00 || bytes.fromhex(entry_hash)).
    checkpoint : SignedCheckpoint
        The checkpoint proved against (the newest, which covers ``seq``).
    path : tuple of str
        Hex sibling hashes, nearest first.
    verified : bool
        The path leads from the entry to the checkpoint's root.
    signature_problem : str or None
        None when the checkpoint's signature verifies with the installation's key.
    """

    seq: int
    entry_hash: str
    checkpoint: SignedCheckpoint
    path: tuple[str, ...]
    verified: bool
    signature_problem: str | None

    @property
    def ok(self) -> bool:
        """The path verifies and the checkpoint's signature too."""
        return self.verified and self.signature_problem is None

    def to_dict(self) -> dict[str, object]:
        """JSON form for ``vigil audit prove --json``."""
        return {
            "ok": self.ok,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "leaf_index": self.seq,
            "checkpoint": self.checkpoint.to_dict(),
            "inclusion_path": list(self.path),
            "verified": self.verified,
            "signature_problem": self.signature_problem,
        }


@dataclass(frozen=True, slots=True)
class CheckpointCheck:
    """Outcome of :func:`verify_checkpoints`.

    Attributes
    ----------
    ok : bool
        Every checkpoint verified and the database agrees with the external file.
    checkpoints : int
        Checkpoints examined (database rows; the external file is compared with them).
    covered : int
        Entries covered by the newest checkpoint that verified.
    uncovered : int
        Entries past the newest checkpoint: they chain, but no signature vouches for them yet.
    failed_tree_size : int or None
        Tree size of the first checkpoint that failed.
    reason : str or None
        One sentence naming the first failure.
    """

    ok: bool
    checkpoints: int
    covered: int
    uncovered: int
    failed_tree_size: int | None = None
    reason: str | None = None


# --- keys ---------------------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the raw 32-byte Ed25519 key at ``path``, creating it (0600, folder 0700) on first use.

    Raises
    ------
    AuditKeyError
        If ``path`` exists but is not a regular file of 32 bytes.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # O_EXCL: two first uses at once must not write two different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(Ed25519PrivateKey.generate().private_bytes_raw())
                out.flush()
                os.fsync(out.fileno())
    return private_key_from_bytes(_read_key(path))


def _read_key(path: Path) -> bytes:
    # lstat: a symbolic link could point the signer at a key someone else controls.
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise AuditKeyError(path, "is not a regular file")
    raw = path.read_bytes()
    if len(raw) != KEY_SIZE:
        raise AuditKeyError(path, f"holds {len(raw)} bytes, not a raw {KEY_SIZE}-byte Ed25519 key")
    if stat.S_IMODE(info.st_mode) & 0o077:
        # Anyone who can read the signing key can sign a forged checkpoint; as with every other key
        # Vigil keeps, an open key is refused rather than used.
        raise AuditKeyError(
            path, f"has mode {stat.S_IMODE(info.st_mode):04o}; the signing key must be private (chmod 600 {path})"
        )
    return raw


def public_key(places: CheckpointPlaces) -> bytes:
    """The raw public key of the installation's signing key (creating the key on first use)."""
    return public_key_bytes(load_or_create_signing_key(places.key_file))


def read_public_key_file(path: Path) -> bytes:
    """Read a public key exported by ``vigil audit public-key`` (64 hex digits) or 32 raw bytes.

    Raises
    ------
    AuditKeyError
        If the file holds neither.
    """
    if not path.is_file():
        raise AuditKeyError(path, "is not a regular file")
    raw = path.read_bytes()
    if len(raw) == KEY_SIZE:
        return raw
    text = raw.decode("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_SIZE:
        raise AuditKeyError(path, f"is not a public key ({KEY_SIZE} raw bytes or {2 * KEY_SIZE} hex digits)")
    return key


# --- make ---------------------------------------------------------------------------------------


def make_checkpoint(
    session_factory: SessionFactory, places: CheckpointPlaces, *, now: Callable[[], datetime]
) -> MadeCheckpoint:
    """Sign the ledger's current tree head; store it and append it to the external file.

    Refuses to sign a ledger that no longer matches its own chain or its newest checkpoint, so
    a tampered ledger is never laundered by a fresh signature. Idempotent: when the newest
    checkpoint already covers every entry it is returned with ``created=False``.

    The row and the file line are written in one transaction: the line is appended (and
    fsynced) before the commit, so a failed write leaves no row; a failed commit after it
    leaves a line the database lacks, which :func:`verify_checkpoints` reports.

    Raises
    ------
    AuditChainError
        If the chain is broken or the ledger disagrees with the newest checkpoint.
    AuditKeyError
        If the signing key file is unusable.
    """
    key = load_or_create_signing_key(places.key_file)
    with session_factory.begin() as session:
        chain = audit_log.verify(session)
        if not chain.ok:
            raise AuditChainError(chain.first_bad_seq, f"{chain.reason}; refusing to sign a checkpoint")
        newest = checkpoint_store.latest(session)
        builder = TreeBuilder()
        for _, entry_hash in checkpoint_store.iter_entry_hashes(session):
            builder.append(leaf_hash(bytes.fromhex(entry_hash)))
            if newest is not None and builder.size == newest.checkpoint.tree_size:
                _check_root(newest, builder)
        if newest is not None and builder.size < newest.checkpoint.tree_size:
            raise AuditChainError(
                builder.size,
                f"the ledger has {builder.size} entries but checkpoint {newest.checkpoint.tree_size} signed more; "
                "refusing to sign a checkpoint",
            )
        if newest is not None and newest.checkpoint.tree_size == builder.size:
            return MadeCheckpoint(newest, created=False)
        checkpoint = Checkpoint(
            tree_size=builder.size,
            root_hash=builder.root().hex(),
            timestamp=to_recorded_at(now()),
            key_id=key_id(public_key_bytes(key)),
        )
        signed = sign(checkpoint, key)
        checkpoint_store.add(session, signed)
        _append_external(places.external_file, signed)
    return MadeCheckpoint(signed, created=True)


def checkpoint_policy(settings: Settings) -> CheckpointPolicy:
    """The configured automatic-checkpoint policy."""
    return CheckpointPolicy(every=settings.audit_checkpoint_every, minutes=float(settings.audit_checkpoint_minutes))


def checkpoint_if_due(
    session_factory: SessionFactory,
    places: CheckpointPlaces,
    policy: CheckpointPolicy,
    *,
    now: Callable[[], datetime],
) -> MadeCheckpoint | None:
    """Make a checkpoint when ``policy`` says one is due; otherwise return None.

    The check is three indexed reads, cheap enough to run after every command that writes and
    on every page load; the signing itself (:func:`make_checkpoint`) re-verifies the chain.
    Two processes that find it due at once both call :func:`make_checkpoint`; the second
    either finds the tree already covered or signs the few entries the first did not.

    Raises
    ------
    AuditChainError, AuditKeyError
        As :func:`make_checkpoint`: a due checkpoint is never skipped silently.
    """
    moment = now()
    with session_factory() as session:
        entries = audit_log.ledger_size(session)
        covered = checkpoint_store.latest_size(session)
        stamp = checkpoint_store.recorded_at_of(session, covered) if entries > covered else None
    oldest = None if stamp is None else datetime.fromisoformat(stamp)
    if not is_due(policy, entries=entries, covered=covered, oldest_uncovered_at=oldest, now=moment):
        return None
    return make_checkpoint(session_factory, places, now=lambda: moment)


def _check_root(newest: SignedCheckpoint, builder: TreeBuilder) -> None:
    if builder.root().hex() != newest.checkpoint.root_hash:
        raise AuditChainError(
            None,
            f"the first {builder.size} entries no longer hash to checkpoint {builder.size}'s root; "
            "refusing to sign a checkpoint",
        )


def _check_external_file(path: Path) -> None:
    # A FIFO or a device configured as the checkpoint file would block every read or write.
    if path.exists() and not path.is_file():
        raise ConfigError(f"audit checkpoint file {path} is not a regular file")


def _append_external(path: Path, signed: SignedCheckpoint) -> None:
    _check_external_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = canonical_json(signed.to_dict()) + b"\n"
    # O_APPEND: every write lands at the end even with another writer; never truncate.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


# --- prove --------------------------------------------------------------------------------------


def prove(session_factory: SessionFactory, places: CheckpointPlaces, seq: int) -> InclusionProof:
    """Inclusion proof of entry ``seq`` against the newest checkpoint.

    Raises
    ------
    UnknownAuditEntryError
        If no entry has this ``seq``.
    AuditEntryNotCheckpointedError
        If the entry is newer than every checkpoint.
    """
    with session_factory() as session:
        size = audit_log.count_entries(session)
        entry_hash = checkpoint_store.entry_hash_of(session, seq) if seq >= 0 else None
        if entry_hash is None:
            raise UnknownAuditEntryError(seq, size)
        newest = checkpoint_store.latest(session)
        if newest is None or newest.checkpoint.tree_size <= seq:
            raise AuditEntryNotCheckpointedError(seq, 0 if newest is None else newest.checkpoint.tree_size)
        leaves = _leaves(session, newest.checkpoint.tree_size)
    if len(leaves) < newest.checkpoint.tree_size:  # rows deleted: no proof can reach the signed root
        return InclusionProof(seq, entry_hash, newest, (), False, _signature_problem(newest, places))
    path = inclusion_proof(leaves, seq)
    verified = verify_inclusion(
        leaf_hash(bytes.fromhex(entry_hash)), seq, len(leaves), path, bytes.fromhex(newest.checkpoint.root_hash)
    )
    problem = _signature_problem(newest, places)
    return InclusionProof(seq, entry_hash, newest, tuple(p.hex() for p in path), verified, problem)


def _leaves(session: Session, limit: int | None = None) -> list[bytes]:
    leaves: list[bytes] = []
    for _, entry_hash in checkpoint_store.iter_entry_hashes(session):
        if limit is not None and len(leaves) == limit:
            break
        leaves.append(leaf_hash(_hash_bytes(entry_hash)))
    return leaves


def _hash_bytes(entry_hash: str) -> bytes:
    # A tampered entry_hash that is not hex still becomes a (wrong) leaf rather than a crash.
    try:
        return bytes.fromhex(entry_hash)
    except ValueError:
        return entry_hash.encode("utf-8")


def _signature_problem(signed: SignedCheckpoint, places: CheckpointPlaces) -> str | None:
    if not places.key_file.exists():
        return "no signing key on this installation to check the signature with"
    return verify_signature(signed, public_key(places))


# --- verify -------------------------------------------------------------------------------------


def read_external(path: Path) -> list[SignedCheckpoint]:
    """Parse the external checkpoint file (empty when it does not exist).

    Raises
    ------
    ValueError
        If a line is not a well-formed checkpoint (it names the line number).
    ConfigError
        If the path is a FIFO, a device or a folder rather than a regular file.
    """
    if not path.exists():
        return []
    _check_external_file(path)
    found: list[SignedCheckpoint] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or set(data) != _FIELDS:
                raise ValueError(f"expected the fields {sorted(_FIELDS)}")
            checkpoint = Checkpoint(
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]),
                timestamp=str(data["timestamp"]),
                key_id=str(data["key_id"]),
            )
        except ValueError as exc:
            raise ValueError(f"{path} line {number} is not a checkpoint: {exc}") from exc
        found.append(SignedCheckpoint(checkpoint, str(data["signature"])))
    return found


def verify_checkpoints(
    session_factory: SessionFactory, places: CheckpointPlaces, *, trusted_key: bytes | None = None
) -> CheckpointCheck:
    """Check every checkpoint against the ledger, the signing key and the external file.

    In order, naming the first failure: the database's checkpoints equal the external file's,
    line for line; each checkpoint's Ed25519 signature verifies with ``trusted_key`` (by default
    the installation's own key); the root recomputed from the ledger's first ``tree_size``
    entries equals the signed root (so a truncated tail or a re-hashed ledger fails); each
    checkpoint is consistent with the one before it (RFC 6962 consistency proof).

    Parameters
    ----------
    trusted_key : bytes, optional
        Raw public key to trust; pass the exported key a reviewer holds, since whoever can edit
        the installation's key file can sign anything.
    """
    with session_factory() as session:
        try:
            stored = checkpoint_store.list_all(session)
        except ValueError as exc:
            return CheckpointCheck(False, 0, 0, 0, reason=str(exc))
        leaves = _leaves(session)
    try:
        external = read_external(places.external_file)
    except ValueError as exc:
        return CheckpointCheck(False, len(stored), 0, 0, reason=str(exc))
    failure = _disagreement(stored, external, places.external_file)
    if failure is None:
        failure = _first_bad(stored, leaves, trusted_key, places)
    covered = stored[-1].checkpoint.tree_size if stored else 0
    uncovered = max(len(leaves) - covered, 0)
    if failure is not None:
        tree_size, reason = failure
        return CheckpointCheck(False, len(stored), 0, uncovered, failed_tree_size=tree_size, reason=reason)
    return CheckpointCheck(True, len(stored), covered, uncovered)


def _disagreement(
    stored: Sequence[SignedCheckpoint], external: Sequence[SignedCheckpoint], path: Path
) -> tuple[int | None, str] | None:
    for db_cp, file_cp in zip(stored, external, strict=False):
        if db_cp != file_cp:
            size = db_cp.checkpoint.tree_size
            return size, f"checkpoint {size} in the database differs from the external file {path}"
    if len(stored) > len(external):
        size = stored[len(external)].checkpoint.tree_size
        return size, f"checkpoint {size} is in the database but not in the external file {path}"
    if len(external) > len(stored):
        size = external[len(stored)].checkpoint.tree_size
        return size, f"checkpoint {size} is in the external file {path} but not in the database (deleted?)"
    return None


def _first_bad(
    stored: Sequence[SignedCheckpoint], leaves: Sequence[bytes], trusted_key: bytes | None, places: CheckpointPlaces
) -> tuple[int, str] | None:
    if not stored:
        return None
    key = trusted_key
    if key is None:
        if not places.key_file.exists():
            return stored[0].checkpoint.tree_size, "no public key to check signatures with (give the exported key)"
        key = public_key(places)
    builder = TreeBuilder()
    previous: SignedCheckpoint | None = None
    for signed in stored:
        size = signed.checkpoint.tree_size
        if (problem := verify_signature(signed, key)) is not None:
            return size, f"checkpoint {size}: {problem}"
        if size > len(leaves):
            return size, (
                f"checkpoint {size} signed {size} entries but the ledger holds {len(leaves)}: "
                "entries were deleted (tail truncated)"
            )
        first_changed = builder.size
        builder.extend(leaves[builder.size : size])
        if builder.root().hex() != signed.checkpoint.root_hash:
            # Every earlier checkpoint verified, so the change lies after the previous one.
            return size, (
                f"checkpoint {size}: the ledger's first {size} entries no longer hash to the signed root "
                f"(an entry from seq {first_changed} to {size - 1} was changed or replaced)"
            )
        if previous is not None and not _consistent(previous, signed, leaves):
            return size, f"checkpoint {size} is not consistent with checkpoint {previous.checkpoint.tree_size}"
        previous = signed
    return None


def _consistent(old: SignedCheckpoint, new: SignedCheckpoint, leaves: Sequence[bytes]) -> bool:
    old_size, new_size = old.checkpoint.tree_size, new.checkpoint.tree_size
    proof = consistency_proof(leaves[:new_size], old_size)
    return verify_consistency(
        old_size, new_size, bytes.fromhex(old.checkpoint.root_hash), bytes.fromhex(new.checkpoint.root_hash), proof
    )
