"""RFC 6962 Merkle tree: hashes, roots, inclusion and consistency proofs.

Hashing follows RFC 6962 §2.1 (SHA-256, leaf prefix 0x00, node prefix 0x01). Proof generation
follows RFC 6962 §2.1.1 (PATH) and §2.1.2 (PROOF/SUBPROOF); verification follows the
algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, which need no tree, only the proof.

Generation works over any :data:`SubtreeSource`: a function giving the hash of the complete
subtree ``(level, index)``, i.e. of leaves ``[index * 2**level, (index + 1) * 2**level)``.
Every hash a proof needs is a fold of O(log n) such complete subtrees, so a store that keeps
one row per complete subtree can answer a proof at any size with O(log n) lookups: it asks
:func:`inclusion_proof_keys` / :func:`consistency_proof_keys` / :func:`frontier_keys` which rows
it needs, fetches them in one query, then calls the generator with a dictionary lookup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from audit.errors import ProofError

_c_root: Callable[[bytes], bytes] | None
_c_leaves: Callable[[bytes], bytes] | None
try:
    from audit._fastmerkle import root_of_leaf_hashes as _c_root
except ImportError:  # the optional C helper was not built: pure Python throughout
    _c_root = None
try:
    from audit._fastmerkle import leaf_hashes_of_lines as _c_leaves
except ImportError:  # not built, or built from an older helper without it
    _c_leaves = None

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeSource = Callable[[int, int], bytes]
"""``source(level, index)`` → hash of the complete subtree of ``2**level`` leaves at ``index``."""

Key = tuple[int, int]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def leaf_hashes_of_lines(block: bytes) -> bytes:
    """The leaf hashes of every line of ``block`` (each ending in ``\\n``, which is not hashed),
    concatenated: 32 bytes per line, in order.

    The offline verifier's hot path: hashed in C when the optional helper was built (a Python
    call and a concatenation per line cost more than the hash).
    """
    if not block.endswith(b"\n"):
        raise ValueError("expected one or more lines, each ending in \\n")
    if _c_leaves is not None:
        return _c_leaves(block)
    return python_leaf_hashes_of_lines(block)


def python_leaf_hashes_of_lines(block: bytes) -> bytes:
    """:func:`leaf_hashes_of_lines` in pure Python (the reference the C helper is tested on)."""
    if not block.endswith(b"\n"):
        raise ValueError("expected one or more lines, each ending in \\n")
    sha = _sha256
    return b"".join([sha(b"\x00" + line).digest() for line in block[:-1].split(b"\n")])


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of a list of leaf hashes.

    Hashes level by level, promoting a lone last node unchanged: for RFC 6962's left-complete
    trees this equals the recursive definition. The interior levels are hashed in C when the
    optional helper was built (n - 1 node hashes cost more than the leaves in Python).
    """
    if not hashes:
        return EMPTY_ROOT
    if _c_root is not None and all(len(h) == HASH_SIZE for h in hashes):
        return _c_root(b"".join(hashes))
    return python_root_from_leaf_hashes(hashes)


def python_root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """:func:`root_from_leaf_hashes` in pure Python (the reference the C helper is tested on)."""
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    while len(level) > 1:
        pairs = iter(level)
        upper = [sha(b"\x01" + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


def tree_root(entries: Iterable[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of a list of entries (leaf data, not yet hashed)."""
    return root_from_leaf_hashes([_sha256(b"\x00" + e).digest() for e in entries])


# --- complete-subtree decomposition -------------------------------------------------------


def range_keys(start: int, end: int) -> list[Key]:
    """Complete subtrees, left to right, whose fold is MTH(D[start:end]).

    The range must be one that RFC 6962's recursion produces: ``start`` aligned to the size of
    the smallest power of two holding the range. Ranges ``[0, n)`` always qualify.
    """
    n = end - start
    if n <= 0:
        raise ProofError("empty range")
    keys: list[Key] = []
    while True:
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            if start % n:
                raise ProofError("range is not aligned to the tree")
            keys.append((level, start >> level))
            return keys
        k = _split(n)
        if start % k:
            raise ProofError("range is not aligned to the tree")
        level = k.bit_length() - 1
        keys.append((level, start >> level))
        start += k
        n -= k


def frontier_keys(size: int) -> list[Key]:
    """The complete subtrees (largest first) that make up a tree of ``size`` leaves."""
    return range_keys(0, size) if size else []


def range_hash(start: int, end: int, source: SubtreeSource) -> bytes:
    """MTH(D[start:end]) folded from complete subtrees (right fold, as RFC 6962 splits)."""
    keys = range_keys(start, end)
    h = source(*keys[-1])
    for key in reversed(keys[:-1]):
        h = node_hash(source(*key), h)
    return h


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form PATH(index, D[size]), leaf side first (RFC 6962 §2.1.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form PROOF(old, D[new]) (RFC 6962 §2.1.2)."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def _keys(ranges: Iterable[tuple[int, int]]) -> set[Key]:
    return {key for start, end in ranges for key in range_keys(start, end)}


def inclusion_proof_keys(index: int, size: int) -> set[Key]:
    """The complete subtrees :func:`inclusion_proof` will ask its source for."""
    return _keys(_inclusion_ranges(index, size))


def consistency_proof_keys(old: int, new: int) -> set[Key]:
    """The complete subtrees :func:`consistency_proof` will ask its source for."""
    return _keys(_consistency_ranges(old, new))


def inclusion_proof(index: int, size: int, source: SubtreeSource) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    return [range_hash(s, e, source) for s, e in _inclusion_ranges(index, size)]


def consistency_proof(old: int, new: int, source: SubtreeSource) -> list[bytes]:
    """The proof that the tree of size ``old`` is a prefix of the tree of size ``new``."""
    return [range_hash(s, e, source) for s, e in _consistency_ranges(old, new)]


def tree_root_at(size: int, source: SubtreeSource) -> bytes:
    """MTH of the first ``size`` leaves, from the source's complete subtrees."""
    return range_hash(0, size, source) if size else EMPTY_ROOT


RangeSource = Callable[[int, int], bytes | None]
"""``source(start, end)`` → MTH(D[start:end]) when it is known, else ``None``."""


def first_difference(size: int, ours: RangeSource, theirs: RangeSource) -> tuple[int, int]:
    """The range ``[start, end)`` holding the first leaf where two trees of ``size`` leaves
    differ, as narrow as the hashes both sides know allow (one leaf: ``end - start == 1``).

    The trees' roots must differ. The search descends RFC 6962's split from the root: when
    both sides know the left child's hash and it differs, the first difference is there; when
    it is equal, the difference is in the right child (the parent differs, hashes do not
    collide); when either side does not know it, the search stops at the node it is in. So
    it never claims more than the known hashes prove: with every leaf hash on both sides it
    names the leaf; with a frontier only (the complete subtrees of a kept tree) it names the
    first complete subtree that differs.
    """
    if size <= 0:
        raise ProofError("an empty tree has no leaf to differ")
    a, b = ours(0, size), theirs(0, size)
    if a is not None and a == b:
        raise ProofError("the trees do not differ")
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        a, b = ours(start, middle), theirs(start, middle)
        if a is None or b is None:
            break
        if a != b:
            end = middle
        else:
            start = middle
    return start, end


# --- verification (RFC 9162) ----------------------------------------------------------------


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError("hashes must be 32 bytes")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4)."""
    _check_hashes(leaf, *proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` under ``root``."""
    _check_hashes(root)
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless the old tree is a prefix of the new (RFC 9162 §2.1.4.2)."""
    _check_hashes(old_root, new_root, *proof)
    if not 0 <= old_size <= new_size:
        raise ProofError("a tree cannot shrink")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    if old_size == 0:
        # Every tree extends the empty tree; RFC 9162 defines no proof for it.
        if proof:
            raise ProofError("the empty tree needs an empty proof")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ProofError("consistency proof does not verify")


# --- incremental trees ----------------------------------------------------------------------


class Frontier:
    """The right edge of a growing tree: one complete-subtree hash per set bit of its size.

    Appending a leaf costs one hash plus, amortised, one node hash; the root at the current size
    is a fold of at most log2(n) hashes. Both the store (to know which complete subtrees a new
    leaf completes) and the offline verifier (to recompute roots in one streaming pass) use it.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ProofError("a frontier needs one hash per set bit of its size")
        _check_hashes(*hashes)
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The complete-subtree hashes, largest subtree first (see :func:`frontier_keys`)."""
        return tuple(self._hashes)

    def copy(self) -> Frontier:
        """An independent copy (no re-validation: this frontier is valid by construction)."""
        clone = Frontier.__new__(Frontier)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def push(self, leaf: bytes) -> None:
        """Append one leaf hash (no bookkeeping: the verifier's hot loop)."""
        stack = self._hashes
        n = self._size
        h = leaf
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, leaves: bytes) -> None:
        """Append concatenated 32-byte leaf hashes, as many :meth:`push` calls would.

        Each run of leaves that fills a complete subtree aligned on the current size is folded
        at once (:func:`root_from_leaf_hashes`, in C when built), then merged like one pushed
        node: the verifier appends a million leaves, and a Python call per leaf costs more than
        the hashing.
        """
        if len(leaves) % HASH_SIZE:
            raise ProofError("leaf hashes must be a whole number of 32-byte hashes")
        count = len(leaves) // HASH_SIZE
        offset = 0
        stack = self._hashes
        while offset < count:
            size = self._size
            # The largest complete subtree that starts here: aligned on the size, and no
            # larger than what is left.
            width = 1 << ((count - offset).bit_length() - 1)
            if size:
                width = min(width, size & -size)
            chunk = leaves[offset * HASH_SIZE : (offset + width) * HASH_SIZE]
            if width == 1:
                h = chunk
            elif _c_root is not None:
                h = _c_root(chunk)
            else:
                h = python_root_from_leaf_hashes(
                    [chunk[i : i + HASH_SIZE] for i in range(0, len(chunk), HASH_SIZE)]
                )
            n = size // width
            while n & 1:
                h = _sha256(b"\x01" + stack.pop() + h).digest()
                n >>= 1
            stack.append(h)
            self._size = size + width
            offset += width

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return every complete subtree it completes, leaf included."""
        index = self._size
        stack = self._hashes
        created = [(0, index, leaf)]
        n, h, level = index, leaf, 0
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
            level += 1
            created.append((level, index >> level, h))
        stack.append(h)
        self._size += 1
        return created

    def root(self) -> bytes:
        """MTH of the leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        stack = self._hashes
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


class MemoryTree:
    """A whole tree in memory, every level kept: a reference :data:`SubtreeSource` for tests
    and small logs (e.g. a key directory snapshot)."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash, completing the subtrees it closes."""
        _check_hashes(leaf)
        self._levels[0].append(leaf)
        level, index = 0, len(self._levels[0]) - 1
        while index & 1:
            row = self._levels[level]
            h = node_hash(row[index - 1], row[index])
            level += 1
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(h)
            index >>= 1

    def subtree(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree ``(level, index)``."""
        try:
            return self._levels[level][index]
        except IndexError:
            raise ProofError(f"no complete subtree ({level}, {index})") from None

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ProofError(f"no tree of size {n}")
        return tree_root_at(n, self.subtree)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of ``size`` leaves (all by default)."""
        n = self.size if size is None else size
        if n > self.size:
            raise ProofError(f"no tree of size {n}")
        return inclusion_proof(index, n, self.subtree)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """Consistency proof from size ``old`` to size ``new`` (all by default)."""
        n = self.size if new is None else new
        if n > self.size:
            raise ProofError(f"no tree of size {n}")
        return consistency_proof(old, n, self.subtree)
