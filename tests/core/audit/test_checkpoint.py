"""Signed checkpoints: the signed text is canonical, a signature binds every field and one key."""

from __future__ import annotations

import base64
import doctest
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import core.audit.checkpoint as checkpoint_module
from core.audit.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    checkpoint_text,
    key_id,
    private_key_from_bytes,
    public_key_bytes,
    sign,
    verify_signature,
)

SEED = bytes(range(32))


def _key() -> Ed25519PrivateKey:
    return private_key_from_bytes(SEED)


def _checkpoint(key: Ed25519PrivateKey | None = None) -> Checkpoint:
    kid = key_id(public_key_bytes(key or _key()))
    return Checkpoint(tree_size=7, root_hash="0f" * 32, timestamp="2024-05-01T09:30:00+00:00", key_id=kid)


def test_doctests_pass() -> None:
    assert doctest.testmod(checkpoint_module).failed == 0


def test_signature_verifies_with_the_signing_key() -> None:
    signed = sign(_checkpoint(), _key())
    assert verify_signature(signed, public_key_bytes(_key())) is None
    assert len(base64.b64decode(signed.signature)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 8},
        {"tree_size": 6},
        {"root_hash": "1f" + "0f" * 31},
        {"timestamp": "2024-05-01T09:31:00+00:00"},
    ],
)
def test_any_changed_field_breaks_the_signature(change: dict[str, object]) -> None:
    signed = sign(_checkpoint(), _key())
    forged = SignedCheckpoint(replace(signed.checkpoint, **change), signed.signature)  # type: ignore[arg-type]
    assert verify_signature(forged, public_key_bytes(_key())) == "the Ed25519 signature does not match the checkpoint"


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    signed = sign(_checkpoint(other), other)
    problem = verify_signature(signed, public_key_bytes(_key()))
    assert problem is not None and "not the trusted key" in problem
    # Even claiming the trusted key's id does not help: the signature is checked with that key.
    claimed = SignedCheckpoint(replace(signed.checkpoint, key_id=key_id(public_key_bytes(_key()))), signed.signature)
    assert verify_signature(claimed, public_key_bytes(_key())) == "the Ed25519 signature does not match the checkpoint"


def test_garbage_signature_and_bad_key_are_reported_not_raised() -> None:
    signed = sign(_checkpoint(), _key())
    assert verify_signature(SignedCheckpoint(signed.checkpoint, "not base64!"), public_key_bytes(_key())) == (
        "the signature is not base64"
    )
    assert verify_signature(signed, b"short") == "the public key is 5 bytes, not 32"


def test_sign_refuses_a_checkpoint_naming_another_key() -> None:
    cp = replace(_checkpoint(), key_id="someoneelse")
    with pytest.raises(ValueError, match="names key 'someoneelse'"):
        sign(cp, _key())


@pytest.mark.parametrize("root", ["0F" * 32, "0f" * 31, "zz" * 32, ""])
def test_checkpoint_refuses_a_malformed_root(root: str) -> None:
    with pytest.raises(ValueError, match="root_hash must be 64 lower-case hex digits"):
        Checkpoint(tree_size=1, root_hash=root, timestamp="t", key_id="k")


def test_checkpoint_refuses_a_negative_size_and_a_wrong_key_length() -> None:
    with pytest.raises(ValueError, match="tree_size must be >= 0, got -1"):
        Checkpoint(tree_size=-1, root_hash="00" * 32, timestamp="t", key_id="k")
    with pytest.raises(ValueError, match="got 31"):
        private_key_from_bytes(SEED[:31])


def test_signed_text_is_stable() -> None:
    text = checkpoint_text(_checkpoint()).decode()
    assert text.splitlines()[:2] == ["vigil.audit-ledger/v1", "7"]
    assert text.endswith("\n")
