"""RFC 6962 tree: reference vectors, proof properties, tamper refusal."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import ProofError
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    consistency_proof_keys,
    frontier_keys,
    inclusion_proof_keys,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

# Reference vectors of the certificate-transparency / transparency-dev test suites
# (proof/verify_test.go): 8 leaves, the roots of every prefix, and some proofs.
LEAVES = [
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
ROOTS = [
    bytes.fromhex(h)
    for h in (
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
# (leaf index 0-based, tree size, path)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


@pytest.fixture(scope="module")
def reference_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(leaf) for leaf in LEAVES)


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert tree_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert Frontier().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots(reference_tree: MemoryTree, size: int) -> None:
    assert tree_root(LEAVES[:size]) == ROOTS[size - 1]
    assert reference_tree.root(size) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_proofs(
    reference_tree: MemoryTree, index: int, size: int, path: list[str]
) -> None:
    proof = reference_tree.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == path
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_reference_consistency_proofs(
    reference_tree: MemoryTree, old: int, new: int, path: list[str]
) -> None:
    proof = reference_tree.consistency_proof(old, new)
    assert [p.hex() for p in proof] == path
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


def _flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_corrupted_inclusion_proofs_are_refused(index: int, size: int, path: list[str]) -> None:
    # Mutations taken from the transparency-dev suite: every one must be refused.
    proof = [bytes.fromhex(p) for p in path]
    root, leaf = ROOTS[size - 1], leaf_hash(LEAVES[index])
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, leaf_hash(b"WrongLeaf"), proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, some, leaf, proof),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [root, *proof]),
        (index, size, root, leaf, proof[:-1]),
        (index, size, root, leaf, [proof[0], some, *proof[1:]]),
    ]
    probes += [
        (index, size, root, leaf, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]])
        for i in range(len(proof))
    ]
    for i, s, r, lf, p in probes:
        with pytest.raises(ProofError):
            verify_inclusion(lf, i, s, p, r)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_are_refused(old: int, new: int, path: list[str]) -> None:
    proof = [bytes.fromhex(p) for p in path]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, EMPTY_ROOT, r2, proof),
        (old, new, r1, EMPTY_ROOT, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    probes += [
        (old, new, r1, r2, [*proof[:i], _flip(proof[i], 4), *proof[i + 1 :]])
        for i in range(len(proof))
    ]
    for o, n, a, b, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(o, n, a, b, p)


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(ProofError):
        verify_consistency(0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT])
    with pytest.raises(ProofError):
        verify_consistency(2, 1, ROOTS[1], ROOTS[0], [])


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@given(st.integers(1, 300), st.data())
def test_inclusion_proofs_verify_for_every_size_and_index(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    verify_inclusion(leaves[index], index, size, proof, root_from_leaf_hashes(leaves))
    # Any other leaf at that index, or the same leaf claimed elsewhere, must fail.
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"other"), index, size, proof, tree.root())
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], other, size, proof, tree.root())
    # The store asks for exactly O(log n) complete subtrees.
    assert len(inclusion_proof_keys(index, size)) <= 2 * size.bit_length()


@given(st.integers(0, 300), st.integers(0, 300), st.data())
def test_consistency_proofs_verify_and_detect_rewrites(a: int, b: int, data: st.DataObject) -> None:
    old, new = min(a, b), max(a, b)
    leaves = _leaves(new)
    tree = MemoryTree(leaves)
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    assert len(consistency_proof_keys(old, new)) <= 2 * max(new, 1).bit_length()
    if 0 < old < new:
        # Rewriting any leaf of the old tree changes the old root: the proof must fail.
        victim = data.draw(st.integers(0, old - 1))
        forged = MemoryTree([*leaves[:victim], leaf_hash(b"x"), *leaves[victim + 1 :]])
        with pytest.raises(ProofError):
            verify_consistency(old, new, forged.root(old), tree.root(new), proof)
        # And a log that rewrote history cannot prove its new tree extends the signed old one.
        with pytest.raises(ProofError):
            verify_consistency(
                old, new, tree.root(old), forged.root(new), forged.consistency_proof(old, new)
            )


@given(st.integers(0, 200))
def test_frontier_matches_full_tree(size: int) -> None:
    leaves = _leaves(size)
    frontier = Frontier()
    created: dict[tuple[int, int], bytes] = {}
    for h in leaves:
        for level, index, node in frontier.append(h):
            created[(level, index)] = node
    tree = MemoryTree(leaves)
    assert frontier.root() == tree.root()
    assert list(frontier.hashes) == [tree.subtree(*k) for k in frontier_keys(size)]
    assert all(tree.subtree(*k) == h for k, h in created.items())
    # Exactly the complete subtrees of the tree were created, each once.
    assert len(created) == sum(size >> level for level in range(size.bit_length() + 1))
    resumed = Frontier(size, frontier.hashes)
    resumed.push(leaf_hash(b"next"))
    assert resumed.root() == MemoryTree([*leaves, leaf_hash(b"next")]).root()


def test_node_hash_is_domain_separated_from_leaves() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_frontier_refuses_wrong_shape() -> None:
    with pytest.raises(ProofError):
        Frontier(3, [EMPTY_ROOT])


def test_the_c_helper_is_built_in_this_environment() -> None:
    # `make test` builds it (optional: pure Python otherwise). CI installs gcc and OpenSSL's
    # headers, so there a missing helper is a failure: the benchmark figures rely on it.
    from audit import merkle
    from tests.conftest import IN_CI

    if merkle._c_root is None:
        message = "audit._fastmerkle was not built (needs gcc and OpenSSL headers: libssl-dev)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=300))
def test_the_c_root_equals_the_python_reference(hashes: list[bytes]) -> None:
    from audit.merkle import python_root_from_leaf_hashes

    expected = MemoryTree(hashes).root() if hashes else EMPTY_ROOT
    assert root_from_leaf_hashes(hashes) == python_root_from_leaf_hashes(hashes) == expected


def test_the_c_helper_refuses_what_is_not_a_list_of_hashes() -> None:
    fastmerkle = pytest.importorskip("audit._fastmerkle")
    root_of_leaf_hashes = fastmerkle.root_of_leaf_hashes

    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(ValueError):
            root_of_leaf_hashes(bad)
    with pytest.raises(TypeError):
        root_of_leaf_hashes("not bytes")  # type: ignore[arg-type]
    assert root_of_leaf_hashes(b"\x07" * 32) == b"\x07" * 32  # one leaf: the root is the leaf
