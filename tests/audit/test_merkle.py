"""RFC 6962 / 9162 Merkle tree: the Certificate Transparency reference vectors, then every shape."""

from __future__ import annotations

import hashlib

import pytest

from dutyguard.audit import merkle

# Reference leaves and tree heads published with RFC 6962 implementations (CT / transparency-dev).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


LEAF_HASHES = [leaf(d) for d in CT_LEAVES]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written as the recursion the RFC states, independent of Frontier."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def test_roots_match_the_reference_vectors() -> None:
    for n in range(len(CT_LEAVES) + 1):
        assert merkle.root(LEAF_HASHES[:n]).hex() == CT_ROOTS[n], n


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = LEAF_HASHES[1], LEAF_HASHES[2]
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # A two-leaf tree's root is not the leaf hash of the concatenation (the second-preimage trick).
    assert merkle.root([a, b]) != leaf(a + b)


@pytest.mark.parametrize(("index", "size"), sorted(INCLUSION))
def test_inclusion_proofs_match_the_reference_vectors(index: int, size: int) -> None:
    proof = merkle.inclusion_proof(LEAF_HASHES, index, size)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    assert merkle.verify_inclusion(LEAF_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new"), sorted(CONSISTENCY))
def test_consistency_proofs_match_the_reference_vectors(old: int, new: int) -> None:
    proof = merkle.consistency_proof(LEAF_HASHES, old, new)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    assert merkle.verify_consistency(
        old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), proof
    )


MANY = [leaf(i.to_bytes(2, "big")) for i in range(70)]


def test_frontier_agrees_with_the_rfc_recursion_at_every_size() -> None:
    f = merkle.Frontier()
    for n, h in enumerate(MANY, start=1):
        f.append(h)
        assert f.root() == reference_root(MANY[:n]), n
        restored = merkle.Frontier(f.size, f.stack)
        assert restored.root() == f.root()


def test_frontier_refuses_a_stack_that_does_not_fit_its_size() -> None:
    with pytest.raises(ValueError, match="frontier"):
        merkle.Frontier(3, [MANY[0]])


def test_every_inclusion_proof_verifies_and_every_mutation_fails() -> None:
    for size in range(1, 34):
        r = merkle.root(MANY[:size])
        for i in range(size):
            proof = merkle.inclusion_proof(MANY, i, size)
            assert merkle.verify_inclusion(MANY[i], i, size, proof, r)
            assert not merkle.verify_inclusion(MANY[i + 1], i, size, proof, r)  # another leaf
            if size > 1:
                assert not merkle.verify_inclusion(MANY[i], (i + 1) % size, size, proof, r)  # another index
            if proof:
                flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not merkle.verify_inclusion(MANY[i], i, size, flipped, r)
                assert not merkle.verify_inclusion(MANY[i], i, size, proof[:-1], r)
            assert not merkle.verify_inclusion(MANY[i], i, size, [*proof, MANY[0]], r)


def test_every_consistency_proof_verifies_and_every_mutation_fails() -> None:
    roots = [merkle.root(MANY[:n]) for n in range(34)]
    for new in range(1, 34):
        for old in range(new + 1):
            proof = merkle.consistency_proof(MANY, old, new)
            assert merkle.verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
            if 0 < old < new:
                assert not merkle.verify_consistency(
                    old, new, roots[old], roots[new - 1] if new - 1 != old else MANY[0], proof
                )
                assert not merkle.verify_consistency(old, new, roots[old], roots[new], proof[:-1])
                assert not merkle.verify_consistency(old, new, roots[old], roots[new], [*proof, MANY[0]])
                flipped = (
                    [bytes([proof[-1][0] ^ 0x80]) + proof[-1][1:]]
                    if len(proof) == 1
                    else [proof[0], bytes([proof[1][0] ^ 1]) + proof[1][1:], *proof[2:]]
                )
                assert not merkle.verify_consistency(old, new, roots[old], roots[new], flipped)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof(MANY, 5, 5)
    with pytest.raises(ValueError):
        merkle.consistency_proof(MANY, 6, 5)
    assert not merkle.verify_inclusion(MANY[0], 0, 1, [], b"short")
    assert not merkle.verify_consistency(3, 3, b"x" * 32, b"x" * 32, [MANY[0]])
