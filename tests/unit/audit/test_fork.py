"""Fork detection among checkpoints of one key, and locating where two trees first differ."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.checkpoint import Checkpoint
from audit.errors import ProofError
from audit.fork import Fork, Sighting, find_fork
from audit.merkle import (
    MemoryTree,
    RangeSource,
    first_difference,
    frontier_keys,
    leaf_hash,
    range_hash,
)

T = datetime(2025, 3, 3, tzinfo=UTC)


def cp(size: int, root: bytes, origin: str = "maillon.test/audit") -> Checkpoint:
    return Checkpoint(origin, size, root, T)


def test_two_roots_at_one_size_are_a_fork_naming_both() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    fork = find_fork(
        [
            Sighting("checkpoints.jsonl line 1", cp(10, b"\x00" * 32)),
            Sighting("checkpoints.jsonl line 2", cp(25, a)),
            Sighting("checkpoints.jsonl line 3", cp(40, b"\x03" * 32)),
            Sighting("--checkpoint #1", cp(25, b)),
        ]
    )
    assert fork is not None and fork.origin == "maillon.test/audit"
    assert (fork.first.where, fork.second.where) == ("checkpoints.jsonl line 2", "--checkpoint #1")
    text = fork.describe()
    assert "size 25" in text
    assert base64.b64encode(a).decode() in text and base64.b64encode(b).decode() in text
    assert "checkpoints.jsonl line 2" in text and "--checkpoint #1" in text


def test_the_same_checkpoint_seen_twice_or_other_origins_are_no_fork() -> None:
    root = b"\x01" * 32
    assert find_fork([Sighting("a", cp(5, root)), Sighting("b", cp(5, root))]) is None
    assert (
        find_fork(
            [Sighting("a", cp(5, root)), Sighting("b", cp(5, b"\x02" * 32, "other.test/audit"))]
        )
        is None
    )
    assert find_fork([]) is None


def test_a_fork_of_two_sizes_says_which_is_not_a_prefix() -> None:
    fork = Fork(Sighting("kept", cp(25, b"\x01" * 32)), Sighting("export", cp(40, b"\x02" * 32)))
    assert "size 25" in fork.describe() and "not a prefix" in fork.describe()
    assert "size 40" in fork.describe()


# -- first_difference -------------------------------------------------------------------------


def _trees(size: int, changed: set[int]) -> tuple[MemoryTree, MemoryTree]:
    honest = MemoryTree(leaf_hash(bytes([i % 256, i // 256])) for i in range(size))
    other = MemoryTree(
        leaf_hash(bytes([i % 256, i // 256]) + (b"!" if i in changed else b"")) for i in range(size)
    )
    return honest, other


def _every_leaf(tree: MemoryTree) -> RangeSource:
    """Any range's hash, folded from the tree's leaves (what kept leaf hashes give)."""

    def hash_of(start: int, end: int) -> bytes:
        return MemoryTree(tree.subtree(0, i) for i in range(start, end)).root()

    return hash_of


@given(
    size=st.integers(min_value=1, max_value=300),
    data=st.data(),
)
def test_with_every_leaf_known_the_first_differing_leaf_is_named(
    size: int, data: st.DataObject
) -> None:
    changed = data.draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=4))
    honest, other = _trees(size, changed)
    first = min(changed)
    assert first_difference(size, _every_leaf(honest), _every_leaf(other)) == (first, first + 1)


def test_with_a_frontier_only_the_first_differing_subtree_is_named() -> None:
    # Given a kept frontier of 13 leaves (subtrees of 8, 4 and 1 leaves) and a tree whose
    # leaf 9 changed
    honest, other = _trees(13, {9})
    kept = {
        (idx << level, (idx + 1) << level): honest.subtree(level, idx)
        for level, idx in frontier_keys(13)
    }
    kept[(8, 13)] = range_hash(8, 13, honest.subtree)
    kept[(0, 13)] = honest.root()

    def theirs(start: int, end: int) -> bytes:
        return range_hash(start, end, other.subtree)

    # Then the search stops at the first complete subtree that differs: [8, 12)
    assert first_difference(13, lambda s, e: kept.get((s, e)), theirs) == (8, 12)


def test_first_difference_refuses_equal_or_empty_trees() -> None:
    honest, _ = _trees(7, {0})
    with pytest.raises(ProofError):
        first_difference(7, _every_leaf(honest), _every_leaf(honest))
    with pytest.raises(ProofError):
        first_difference(0, _every_leaf(honest), _every_leaf(honest))
