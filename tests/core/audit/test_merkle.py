"""RFC 6962 Merkle tree: the published test vectors, random trees, corrupted proofs rejected.

The vectors are copied (hex) from the Certificate Transparency reference implementation,
github.com/transparency-dev/merkle: ``testonly/constants.go`` (leaf inputs, roots for sizes 1..8)
and ``proof/verify_test.go`` (inclusion and consistency proofs, and the corruptions applied to them).
"""

from __future__ import annotations

import doctest
import random

import pytest

import core.audit.merkle as merkle_module
from core.audit.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
#: ROOTS[n] is MTH of the first n leaf inputs.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
#: (0-based leaf index, tree size, proof); verify_test.go numbers leaves from 1.
INCLUSION = [
    (0, 1, ()),
    (
        0,
        8,
        (
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        (
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",)),
    (
        1,
        5,
        (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
#: (old size, new size, proof).
CONSISTENCY = [
    (1, 1, ()),
    (
        1,
        8,
        (
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        (
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        (
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        (
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
LEAVES = [leaf_hash(d) for d in LEAF_INPUTS]


def _proof(hexes: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(h) for h in hexes)


def _flip(proof: tuple[bytes, ...], i: int, bit: int) -> tuple[bytes, ...]:
    changed = bytes([proof[i][0] ^ bit]) + proof[i][1:]
    return (*proof[:i], changed, *proof[i + 1 :])


def test_doctests_pass() -> None:
    assert doctest.testmod(merkle_module).failed == 0


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_the_rfc_vectors(size: int) -> None:
    assert root_hash(LEAVES[:size]) == ROOTS[size]
    builder = TreeBuilder()
    builder.extend(LEAVES[:size])
    assert builder.root() == ROOTS[size]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_hash([]) == EMPTY_ROOT == ROOTS[0]


@pytest.mark.parametrize(("index", "size", "hexes"), INCLUSION)
def test_inclusion_proofs_match_and_verify(index: int, size: int, hexes: tuple[str, ...]) -> None:
    proof = _proof(hexes)
    assert inclusion_proof(LEAVES[:size], index) == proof
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("index", "size", "hexes"), [v for v in INCLUSION if v[2]])
def test_corrupted_inclusion_proofs_are_rejected(index: int, size: int, hexes: tuple[str, ...]) -> None:
    proof, root, leaf = _proof(hexes), ROOTS[size], LEAVES[index]
    probes = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, leaf_hash(b"WrongLeaf"), proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root, leaf, (*proof, b"")),
        (index, size, root, leaf, (*proof, root)),
        (index, size, root, leaf, (b"", *proof)),
        (index, size, root, leaf, (root, *proof)),
        (index, size, root, leaf, proof[:-1]),
        *((index, size, root, leaf, _flip(proof, i, 8)) for i in range(len(proof))),
    ]
    if len(proof) > 1:
        probes.append((index, size, root, leaf, (proof[0], SOME_HASH, *proof[1:])))
    for i, s, r, lf, p in probes:
        assert not verify_inclusion(lf, i, s, p, r), (i, s)


@pytest.mark.parametrize(("old", "new", "hexes"), CONSISTENCY)
def test_consistency_proofs_match_and_verify(old: int, new: int, hexes: tuple[str, ...]) -> None:
    proof = _proof(hexes)
    assert consistency_proof(LEAVES[:new], old) == proof
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(("old", "new", "hexes"), [v for v in CONSISTENCY if v[2]])
def test_corrupted_consistency_proofs_are_rejected(old: int, new: int, hexes: tuple[str, ...]) -> None:
    proof, r1, r2 = _proof(hexes), ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, ()),
        (old, new, r1, r2, (*proof, b"")),
        (old, new, r1, r2, (*proof, r1)),
        (old, new, r1, r2, (*proof, r2)),
        (old, new, r1, r2, (b"", *proof)),
        (old, new, r1, r2, (r1, *proof)),
        (old, new, r1, r2, (r2, *proof)),
        (old, new, r1, r2, (proof[0], *proof)),
        (old, new, r1, r2, proof[:-1]),
        *((old, new, r1, r2, _flip(proof, i, 16)) for i in range(len(proof))),
    ]
    for o, n, a, b, p in probes:
        assert not verify_consistency(o, n, a, b, p), (o, n)


def test_trivial_consistency_cases() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_consistency(0, 0, a, a, ())
    assert verify_consistency(0, 5, a, b, ())
    assert verify_consistency(1, 1, b, b, ())
    assert not verify_consistency(1, 1, a, b, ())  # same size, different roots
    assert not verify_consistency(1, 0, a, b, ())  # time travel
    assert not verify_consistency(1, 2, a, b, ())  # a real step needs a proof
    assert not verify_consistency(0, 1, EMPTY_ROOT, EMPTY_ROOT, (EMPTY_ROOT,))


def test_out_of_range_requests_name_the_value() -> None:
    with pytest.raises(IndexError, match="leaf index 3 is outside a tree of 3 leaves"):
        inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValueError, match="old tree size 9 is outside 0..8"):
        consistency_proof(LEAVES, 9)


def test_node_hash_is_domain_separated_from_leaf_hash() -> None:
    assert node_hash(LEAVES[0], LEAVES[1]) == ROOTS[2]
    assert leaf_hash(LEAVES[0] + LEAVES[1]) != ROOTS[2]


def test_random_trees_every_proof_verifies_and_every_tamper_fails() -> None:
    rng = random.Random(6962)
    for n in [*range(1, 34), 100, 257]:
        leaves = [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(n)]
        roots = [root_hash(leaves[:m]) for m in range(n + 1)]
        builder = TreeBuilder()
        for m, leaf in enumerate(leaves, start=1):
            builder.append(leaf)
            assert builder.root() == roots[m]
        for index in _sample(rng, n):
            proof = inclusion_proof(leaves, index)
            assert verify_inclusion(leaves[index], index, n, proof, roots[n])
            wrong = (index + rng.randint(1, n)) % n if n > 1 else None
            if wrong is not None and leaves[wrong] != leaves[index]:
                assert not verify_inclusion(leaves[index], wrong, n, proof, roots[n])
            if proof:
                i = rng.randrange(len(proof))
                assert not verify_inclusion(leaves[index], index, n, _flip_byte(rng, proof, i), roots[n])
        for old in _sample(rng, n + 1):
            proof = consistency_proof(leaves, old)
            assert verify_consistency(old, n, roots[old], roots[n], proof)
            if proof:
                i = rng.randrange(len(proof))
                assert not verify_consistency(old, n, roots[old], roots[n], _flip_byte(rng, proof, i))
                assert not verify_consistency(old, n, roots[old], _flip_byte(rng, (roots[n],), 0)[0], proof)


def _sample(rng: random.Random, n: int) -> list[int]:
    return list(range(n)) if n <= 40 else rng.sample(range(n), 40)


def _flip_byte(rng: random.Random, proof: tuple[bytes, ...], i: int) -> tuple[bytes, ...]:
    at = rng.randrange(len(proof[i]))
    item = bytearray(proof[i])
    item[at] ^= rng.randint(1, 255)
    return (*proof[:i], bytes(item), *proof[i + 1 :])
