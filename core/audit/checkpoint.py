"""Signed checkpoints of the audit ledger's Merkle tree: the text that is signed, Ed25519 sign/verify.

Pure: keys and signatures are bytes in and out; reading the key file and storing checkpoints
belong to the services. The signed text follows the shape of a transparency-log checkpoint
(C2SP tlog-checkpoint, as Certificate Transparency's successors use): an origin line, the tree
size, the base64 root hash, then one extension line carrying the time, each ending in a newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.merkle import HASH_SIZE

__all__ = [
    "ORIGIN",
    "Checkpoint",
    "SignedCheckpoint",
    "checkpoint_text",
    "key_id",
    "private_key_from_bytes",
    "public_key_bytes",
    "sign",
    "verify_signature",
]

#: First line of every signed checkpoint: names the log, so a signature over another log's
#: checkpoint (same key, same size and root) can never pass for this one.
ORIGIN: Final = "vigil.audit-ledger/v1"
#: Bytes of a raw Ed25519 private key (seed) and public key.
KEY_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A claim that the first ``tree_size`` ledger entries hash to ``root_hash``.

    Attributes
    ----------
    tree_size : int
        Entries covered: seq 0 to ``tree_size - 1``.
    root_hash : str
        64 lower-case hex digits: RFC 6962 MTH over those entries' leaves.
    timestamp : str
        UTC ISO-8601 time the checkpoint was made.
    key_id : str
        :func:`key_id` of the public key that signs it.
    """

    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str

    def __post_init__(self) -> None:
        if self.tree_size < 0:
            raise ValueError(f"tree_size must be >= 0, got {self.tree_size}")
        try:
            raw = bytes.fromhex(self.root_hash)
        except ValueError:
            raw = b""
        if len(raw) != HASH_SIZE or self.root_hash != raw.hex():
            raise ValueError(f"root_hash must be 64 lower-case hex digits, got {self.root_hash!r}")


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its Ed25519 signature (base64 of 64 bytes) over :func:`checkpoint_text`."""

    checkpoint: Checkpoint
    signature: str

    def to_dict(self) -> dict[str, int | str]:
        """The flat JSON form stored in the external file and printed by the CLI."""
        c = self.checkpoint
        return {
            "tree_size": c.tree_size,
            "root_hash": c.root_hash,
            "timestamp": c.timestamp,
            "key_id": c.key_id,
            "signature": self.signature,
        }


def checkpoint_text(checkpoint: Checkpoint) -> bytes:
    """The exact UTF-8 bytes that are signed.

    Examples
    --------
    >>> cp = Checkpoint(2, "ab" * 32, "2024-05-01T09:30:00+00:00", "k1")
    >>> print(checkpoint_text(cp).decode(), end="")
    vigil.audit-ledger/v1
    2
    q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=
    timestamp 2024-05-01T09:30:00+00:00
    key k1
    """
    root_b64 = base64.b64encode(bytes.fromhex(checkpoint.root_hash)).decode("ascii")
    lines = [
        ORIGIN,
        str(checkpoint.tree_size),
        root_b64,
        f"timestamp {checkpoint.timestamp}",
        f"key {checkpoint.key_id}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    """Load a raw 32-byte Ed25519 private key.

    Raises
    ------
    ValueError
        If ``raw`` is not 32 bytes (it names the length).
    """
    if len(raw) != KEY_SIZE:
        raise ValueError(f"an Ed25519 private key is {KEY_SIZE} raw bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``private_key``."""
    return private_key.public_key().public_bytes_raw()


def key_id(public_key: bytes) -> str:
    """First 16 hex digits of SHA-256 of the raw public key: names the key in every checkpoint."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def sign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    """Sign :func:`checkpoint_text`.

    Raises
    ------
    ValueError
        If ``checkpoint.key_id`` does not name this key (a checkpoint would claim another signer).
    """
    own = key_id(public_key_bytes(private_key))
    if checkpoint.key_id != own:
        raise ValueError(f"checkpoint names key {checkpoint.key_id!r} but the signing key is {own!r}")
    signature = private_key.sign(checkpoint_text(checkpoint))
    return SignedCheckpoint(checkpoint, base64.b64encode(signature).decode("ascii"))


def verify_signature(signed: SignedCheckpoint, public_key: bytes) -> str | None:
    """Check a checkpoint's signature against a raw public key.

    Returns
    -------
    str or None
        None when the signature is valid; otherwise one sentence saying what failed.
    """
    if len(public_key) != KEY_SIZE:
        return f"the public key is {len(public_key)} bytes, not {KEY_SIZE}"
    expected_id = key_id(public_key)
    if signed.checkpoint.key_id != expected_id:
        return f"signed by key {signed.checkpoint.key_id!r}, not the trusted key {expected_id!r}"
    try:
        signature = base64.b64decode(signed.signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, checkpoint_text(signed.checkpoint))
    except (binascii.Error, ValueError):
        return "the signature is not base64"
    except InvalidSignature:
        return "the Ed25519 signature does not match the checkpoint"
    return None
