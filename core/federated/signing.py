"""Ed25519 signatures on site updates: each site signs what it sends, the server verifies before aggregating.

The signed digest binds the arrays (dtype, shape and bytes of each, in order) to the site, the run,
the round and the architecture hash, so an update cannot be replayed into another round or run or
passed off as another site's. Private keys are PEM files created with mode 0600 and never
overwritten; the public keys are what the coordinating centre registers per site.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.chain import canonical_json
from core.errors import BadInputError

__all__ = [
    "arrays_sha256",
    "generate_site_key",
    "load_private_key",
    "load_public_key",
    "public_key_pem",
    "sign_update",
    "update_digest",
    "verify_update",
]


def arrays_sha256(arrays: Sequence[np.ndarray]) -> str:
    """Hex SHA-256 over the dtype, shape and C-order bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        arr = np.ascontiguousarray(a)
        h.update(canonical_json({"dtype": arr.dtype.str, "shape": list(arr.shape)}))
        h.update(arr.tobytes())
    return h.hexdigest()


def update_digest(  # noqa: PLR0913 - keyword-only; one argument per fact the signature binds
    arrays: Sequence[np.ndarray],
    *,
    site: str,
    run: str,
    server_round: int,
    arch_sha256: str,
    node: Mapping[str, object] | None = None,
) -> bytes:
    """The 32 bytes a site signs: SHA-256 of the context and of the arrays.

    ``node`` is the profile the node reports (:meth:`core.federated.compatibility.NodeProfile.to_dict`):
    signed with the update, so what a node says about its versions is as trustworthy as its weights.
    """
    context: dict[str, object] = {"site": site, "run": run, "round": server_round, "arch_sha256": arch_sha256}
    if node is not None:
        context["node"] = dict(node)
    return hashlib.sha256(canonical_json(context) + bytes.fromhex(arrays_sha256(arrays))).digest()


def sign_update(key: Ed25519PrivateKey, digest: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``digest``."""
    return key.sign(digest)


def verify_update(public_pem: bytes, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_pem``'s key's signature of ``digest``."""
    try:
        load_public_key(public_pem).verify(signature, digest)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_site_key(private_path: Path) -> bytes:
    """Create a site's key pair: the private key at ``private_path`` (mode 0600), the public PEM returned.

    Raises
    ------
    BadInputError
        A file already exists there (a key is never silently replaced).
    """
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # others must not swap the key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BadInputError(f"a key already exists at {str(private_path)!r}; it is not replaced") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return public_key_pem(key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a site's private key, refusing one that others may read.

    Raises
    ------
    BadInputError
        Missing, readable by group or others, or not an Ed25519 PEM key.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"site key {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInputError(f"site key {str(path)!r} has mode {stat.S_IMODE(mode):o}; it must be 600")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise BadInputError(f"site key {str(path)!r} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInputError(f"site key {str(path)!r} is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ``ValueError`` otherwise."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of ``key``'s public half."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
