"""RFC 6962 / RFC 9162 (section 2) Merkle tree hashes, inclusion and consistency proofs.

Pure: bytes in, bytes out, no storage. Hashes are SHA-256 with the domain separation of the
RFC (``0x00`` before a leaf, ``0x01`` before two children) so a leaf can never pass for an
inner node. Every function here takes *leaf hashes* (see :func:`leaf_hash`), not leaf data,
so a caller hashes each entry once however many proofs it builds.

The generating functions follow RFC 6962 section 2.1 (MTH, PATH, PROOF/SUBPROOF, splitting
at the largest power of two below ``n``); the verifying functions follow RFC 9162 sections
2.1.3.2 and 2.1.4.2, which need only the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

#: Bytes in every hash of the tree (SHA-256).
HASH_SIZE: Final = 32
#: MTH({}) = SHA-256 of the empty string (RFC 6962 section 2.1).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf.

    Examples
    --------
    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    """
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an inner node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    # The largest power of two strictly below n (n >= 2): the RFC's k.
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes, ``EMPTY_ROOT`` for no leaves.

    Parameters
    ----------
    leaves : sequence of bytes
        Leaf hashes (each :data:`HASH_SIZE` bytes), in order.

    Returns
    -------
    bytes
        The 32-byte root.
    """
    builder = TreeBuilder()
    builder.extend(leaves)
    return builder.root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree over ``leaves``.

    Raises
    ------
    IndexError
        If ``index`` is not a leaf of the tree (it names the index and the size).
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    return tuple(_path(leaves, index))


def _path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*_path(leaves[:k], index), root_hash(leaves[k:])]
    return [*_path(leaves[k:], index - k), root_hash(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> tuple[bytes, ...]:
    """PROOF(m, D[n]): proves the tree of the first ``old_size`` leaves is a prefix of ``leaves``.

    Raises
    ------
    ValueError
        If ``old_size`` is negative or larger than ``len(leaves)``.
    """
    if not 0 <= old_size <= len(leaves):
        raise ValueError(f"old tree size {old_size} is outside 0..{len(leaves)}")
    if old_size in (0, len(leaves)):
        return ()  # always consistent: nothing to prove
    return tuple(_subproof(old_size, leaves, complete=True))


def _subproof(m: int, leaves: Sequence[bytes], *, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_hash(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete=complete), root_hash(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], complete=False), root_hash(leaves[:k])]


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check that ``proof`` puts ``leaf`` at ``index`` under ``root`` (RFC 9162 section 2.1.3.2).

    Parameters
    ----------
    leaf : bytes
        The leaf hash (:func:`leaf_hash` of the entry's data).
    index, tree_size : int
        0-based position of the leaf and the number of leaves of the tree.
    proof : sequence of bytes
        The audit path, nearest sibling first.
    root : bytes
        The trusted root of the tree of ``tree_size`` leaves.

    Returns
    -------
    bool
        False for any wrong index, size, leaf, root or proof element, never an exception.
    """
    if not 0 <= index < tree_size or not _all_hashes([leaf, root, *proof]):
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False  # a longer proof than the tree is tall
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Check that the tree of ``old_size`` leaves is a prefix of that of ``new_size`` (RFC 9162 2.1.4.2).

    Returns
    -------
    bool
        False for any wrong size, root or proof element, never an exception. An empty old tree
        is consistent with every tree; equal sizes need equal roots and an empty proof.
    """
    if not 0 <= old_size <= new_size or not _all_hashes([old_root, new_root, *proof]):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a complete subtree: the old root is the proof's start
        path.insert(0, old_root)
    return _fold_consistency(old_size, new_size, path) == (old_root, new_root)


def _fold_consistency(old_size: int, new_size: int, path: Sequence[bytes]) -> tuple[bytes, bytes] | None:
    # RFC 9162 2.1.4.2 steps 3 to 7: the two roots the path leads to, None if it is too long.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return (fr, sr) if sn == 0 else None


def _all_hashes(values: Iterable[bytes]) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


@dataclass(slots=True)
class TreeBuilder:
    """Streams leaves in and gives the root of the tree so far at any size, in O(log n) memory.

    Keeps the roots of the perfect subtrees that the leaves so far decompose into (largest
    first); folding them right to left is exactly MTH of the RFC's largest-power-of-two split.
    Mutable by design: it is an accumulator, used while streaming the ledger once to check
    every checkpoint's root.

    Examples
    --------
    >>> b = TreeBuilder()
    >>> b.append(leaf_hash(b"")); b.size, b.root() == leaf_hash(b"")
    (1, True)
    """

    size: int = 0
    _peaks: list[tuple[int, bytes]] = field(default_factory=list)  # (height, hash)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        height, node = 0, leaf
        while self._peaks and self._peaks[-1][0] == height:
            _, left = self._peaks.pop()
            height, node = height + 1, node_hash(left, node)
        self._peaks.append((height, node))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the leaves added so far."""
        if not self._peaks:
            return EMPTY_ROOT
        acc = self._peaks[-1][1]
        for _, peak in reversed(self._peaks[:-1]):
            acc = node_hash(peak, acc)
        return acc
