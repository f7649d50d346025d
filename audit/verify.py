"""Offline verification of an audit export: ``python -m audit.verify DIR``.

Needs only the export directory (see :mod:`audit.export`) and, ideally, the log's verifier key
obtained out of band (``--key``): no database, no hub. It

1. checks the signature of every checkpoint (and of the retention segment, if any), and of
   every cosignature by a witness key given with ``--witness-key``;
2. looks for a fork among every checkpoint seen (the export's, those kept with
   ``--checkpoint``, those of kept trees): two of one size with different roots;
3. streams the events in one pass, recomputing each leaf hash and the tree, checking that
   every event sits at its sequence number and matches the leaf hash the store recorded, and
   the leaf hash a kept tree (``--kept-export``) holds for it;
4. compares the recomputed root with every signed checkpoint at its size — a kept checkpoint
   that disagrees is a fork (the key signed two histories);
5. detects truncation: a signed checkpoint larger than the events present, or fewer events
   than the export announced.

It stops at the first problem and names the first bad index. Edits, deletions, insertions and
reorderings that leave the recorded leaf hashes alone are pinned to the exact index. An
attacker who also rewrote the leaf hashes (and, holding the key, re-signed the checkpoints) is
pinned to the exact index only by leaf hashes kept from before (``--keep`` writes them,
``--kept-export`` reads them): a root alone cannot say which of its leaves changed, so
without them the verifier says between which kept (or signed) sizes the change lies.

The events are read a block of lines at a time: a block whose lines are all canonical (checked
by :data:`audit.events.CANONICAL_LINES`, without decoding), at their sequence numbers and equal
to their recorded leaf hashes (hashed in C when the optional helper is built) is checked in
bulk; any other block goes line by line, which names the first bad event. ``--progress`` shows
how far it got on stderr (shown anyway for a large export when stderr is a terminal).

Exit status: 0 verified, 1 tampering (or a fork, or a cosignature that does not verify) found,
2 unreadable input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, NoReturn

from audit.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    NoteVerifier,
    Segment,
    SignedNote,
)
from audit.errors import (
    AuditError,
    CheckpointError,
    ForkDetected,
    InvalidEvent,
    ProofError,
    TamperingDetected,
    UnreadableExport,
)
from audit.events import CANONICAL_LINES, Action, Event, format_time
from audit.export_format import (
    CHECKPOINTS,
    EVENTS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    LEAVES,
    LOG_KEY,
    MANIFEST,
    PRUNE_OBJECT_TYPE,
    SEGMENT,
)
from audit.fork import Fork, Sighting, find_fork
from audit.merkle import (
    HASH_SIZE,
    Frontier,
    first_difference,
    frontier_keys,
    leaf_hashes_of_lines,
    range_hash,
    root_from_leaf_hashes,
)

EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2
# What --keep copies of a verified export: everything but the events themselves. Leaf hashes
# (of events carrying random request ids) say nothing about the events, so what the DPO keeps
# may outlive the log's retention period.
KEPT_FILES = (MANIFEST, LEAVES, CHECKPOINTS, LOG_KEY, SEGMENT)


@dataclass(frozen=True, slots=True)
class CheckpointCosignatures:
    """Which of the witness keys given cosigned one checkpoint (their signatures verified)."""

    where: str
    size: int
    time: datetime
    witnesses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a successful verification."""

    origin: str
    vkey: str
    first_seq: int
    size: int
    root: bytes
    checkpoints_verified: int
    latest_checkpoint: int | None
    skipped_before_cut: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    witnesses: tuple[str, ...] = ()
    cosignatures: tuple[CheckpointCosignatures, ...] = ()
    kept: tuple[tuple[str, int], ...] = ()

    @property
    def unsigned_tail(self) -> int:
        """Events after the largest verified checkpoint (not yet covered by a signature)."""
        return self.size - (self.latest_checkpoint or self.first_seq)


@dataclass(frozen=True, slots=True)
class _Seen:
    """A checkpoint whose log signature verified, where it was found, and whether it was kept
    outside the export (so it speaks for the log as it was, not as the export says)."""

    where: str
    note: SignedNote
    checkpoint: Checkpoint
    kept: bool

    def sighting(self) -> Sighting:
        return Sighting(self.where, self.checkpoint)


@dataclass(frozen=True, slots=True)
class KeptTree:
    """Leaf hashes kept from an earlier export, authenticated by one of its signed checkpoints.

    ``leaves`` holds 32 bytes per event from ``first_seq`` up to ``size``: the largest of its
    checkpoints, whose root they fold to. ``seed`` is the retention frontier at ``first_seq``
    when the kept export started after a prune.
    """

    where: str
    first_seq: int
    size: int
    leaves: bytes
    seed: tuple[bytes, ...]
    seen: tuple[_Seen, ...]

    @property
    def latest(self) -> _Seen:
        """The checkpoint that authenticates the leaves (the first of its size)."""
        return next(s for s in self.seen if s.checkpoint.size == self.size)

    def root_of(self, start: int, end: int) -> bytes | None:
        """MTH of leaves ``[start, end)`` when they are all kept."""
        if start < self.first_seq or end > self.size:
            return None
        chunk = self.leaves[(start - self.first_seq) * 32 : (end - self.first_seq) * 32]
        return root_from_leaf_hashes([chunk[i : i + 32] for i in range(0, len(chunk), 32)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableExport(f"cannot read {path.name}: {exc}") from None


def _read_notes(path: Path, label: str) -> list[tuple[str, str]]:
    """The notes of a checkpoints.jsonl, each with where it was read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableExport(f"cannot read {path.name}: {exc}") from None
    notes: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        try:
            note = json.loads(line)
        except json.JSONDecodeError:
            note = None
        if not isinstance(note, str):
            raise TamperingDetected(f"{label} line {number} is not a checkpoint note")
        notes.append((f"{label} line {number}", note))
    return notes


def _verify_note(verifier: NoteVerifier, where: str, note: str, *, kept: bool) -> _Seen:
    try:
        parsed = SignedNote.parse(note)
        return _Seen(where, parsed, verifier.verify_checkpoint(parsed), kept)
    except CheckpointError as exc:
        raise TamperingDetected(f"checkpoint at {where} does not verify: {exc}") from None


def _manifest(directory: Path) -> tuple[int, int]:
    """``(first_seq, announced size)`` of an export's manifest."""
    manifest = _read_json(directory / MANIFEST)
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != EXPORT_FORMAT
        or manifest.get("version") != EXPORT_VERSION
    ):
        raise UnreadableExport(f"not a {EXPORT_FORMAT} version {EXPORT_VERSION} export")
    first_seq, announced = manifest.get("first_seq"), manifest.get("size")
    if (
        not isinstance(first_seq, int)
        or not isinstance(announced, int)
        or isinstance(first_seq, bool)
        or isinstance(announced, bool)
        or not 0 <= first_seq <= announced
    ):
        raise UnreadableExport("manifest lacks first_seq/size")
    return first_seq, announced


def _segment(directory: Path, verifier: NoteVerifier) -> Segment:
    try:
        segment = Segment.from_json(_read_json(directory / SEGMENT))
        segment.verify(verifier)
    except CheckpointError as exc:
        raise TamperingDetected(f"retention segment does not verify: {exc}") from None
    return segment


# -- kept trees (point: name the exact event that a re-signed history changed) ---------------


def keep_export(directory: Path, out: Path) -> None:
    """Copy what a later verification needs to name a rewritten event — the leaf hashes, the
    signed (and cosigned) checkpoints, the manifest, the key, the retention segment — from a
    verified export to ``out``; not the events."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UnreadableExport(f"{out} exists and is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        if (directory / name).exists():
            shutil.copyfile(directory / name, out / name)
            with (out / name).open("rb") as handle:
                os.fsync(handle.fileno())


def load_kept(directory: Path, verifier: NoteVerifier) -> KeptTree:
    """Read leaf hashes kept from an earlier export and check them against its own signed
    checkpoints; :class:`UnreadableExport` if they cannot serve as a reference.

    The leaves are trusted up to the largest checkpoint whose root they fold to: a kept tree
    speaks for the log as it was when it was kept (that is why it is kept apart).
    """
    where = f"kept {directory}"
    try:
        first_seq, _announced = _manifest(directory)
        leaves = (directory / LEAVES).read_bytes()
        seen = tuple(
            _verify_note(verifier, f"{where} {w}", note, kept=True)
            for w, note in _read_notes(directory / CHECKPOINTS, CHECKPOINTS)
        )
        seed = _segment(directory, verifier).frontier if first_seq else ()
    except OSError as exc:
        raise UnreadableExport(f"{where}: {exc}") from None
    except TamperingDetected as exc:
        raise UnreadableExport(f"{where} cannot serve as a reference: {exc}") from None
    if len(leaves) % HASH_SIZE:
        raise UnreadableExport(f"{where}: leaves.bin is not a whole number of hashes")
    end = first_seq + len(leaves) // HASH_SIZE
    usable = [s for s in seen if first_seq < s.checkpoint.size <= end]
    if not usable:
        raise UnreadableExport(f"{where}: no signed checkpoint covers its leaf hashes")
    size = max(s.checkpoint.size for s in usable)
    roots = {s.checkpoint.root for s in usable if s.checkpoint.size == size}
    kept = KeptTree(where, first_seq, size, leaves[: (size - first_seq) * 32], seed, seen)
    frontier = Frontier(first_seq, seed)
    frontier.extend(kept.leaves)
    if roots != {frontier.root()}:
        raise UnreadableExport(
            f"{where}: its leaf hashes do not fold to its own signed checkpoint at size {size}"
        )
    return kept


def _first_differing_hash(ours: bytes, theirs: bytes) -> int | None:
    """Index of the first 32-byte hash that differs between two equally long runs."""
    block = 32 * 4096
    for start in range(0, len(ours), block):
        if ours[start : start + block] != theirs[start : start + block]:
            for offset in range(start, min(start + block, len(ours)), 32):
                if ours[offset : offset + 32] != theirs[offset : offset + 32]:
                    return offset // 32
    return None


def _segment_source(segment: Segment) -> dict[tuple[int, int], bytes]:
    """The ranges a retention segment's frontier knows: each complete subtree, and each fold
    of the subtrees from one of them to the cut (the right spine RFC 6962's split walks)."""
    keys = frontier_keys(segment.cut)
    hashes = dict(zip(keys, segment.frontier, strict=True))
    known: dict[tuple[int, int], bytes] = {}
    for i, (level, idx) in enumerate(keys):
        start = idx << level
        known[(start, start + (1 << level))] = hashes[(level, idx)]
        suffix = keys[i:]
        known[(start, segment.cut)] = (
            range_hash(start, segment.cut, lambda lv, ix: hashes[(lv, ix)])
            if len(suffix) > 1
            else hashes[(level, idx)]
        )
    return known


# -- verification ---------------------------------------------------------------------------


def _witness_report(
    seen: Sequence[_Seen], witnesses: Sequence[CosignatureVerifier], log: NoteVerifier
) -> tuple[list[CheckpointCosignatures], list[str]]:
    """Who of ``witnesses`` cosigned each checkpoint; and the signature lines by other keys.

    A cosignature by a given witness key that does not verify is tampering: the export (or a
    kept note) carries a line that key never made.
    """
    report = []
    unchecked: set[str] = set()
    for s in seen:
        names = []
        for witness in witnesses:
            try:
                when = witness.check(s.note)
            except CheckpointError as exc:
                raise TamperingDetected(
                    f"the checkpoint of size {s.checkpoint.size} at {s.where} carries a "
                    f"cosignature by {witness.name} ({witness.key_id.hex()}) that does not "
                    f"verify with the witness key given: {exc}"
                ) from None
            if when is not None:
                names.append(witness.name)
        report.append(
            CheckpointCosignatures(s.where, s.checkpoint.size, s.checkpoint.time, tuple(names))
        )
        for line in s.note.signatures:
            if (line.name, line.key_id) != (log.name, log.key_id) and not any(
                w.signed(line) for w in witnesses
            ):
                unchecked.add(f"{line.name} ({line.key_id.hex()})")
    return report, sorted(unchecked)


@dataclass(slots=True)
class _Difference:
    """The earliest place where the export is not the history that was kept."""

    message: str
    index: int | None
    kept: _Seen  # the kept checkpoint that vouches for the other history
    size: int  # an export checkpoint of at least this size makes it a proven fork


def _fork_between(a: _Seen, b: _Seen) -> Fork:
    """The two checkpoints as a fork, the smaller tree first."""
    first, second = sorted((a, b), key=lambda s: s.checkpoint.size)
    return Fork(first.sighting(), second.sighting())


def verify_export(
    directory: Path,
    *,
    trusted_key: str | None = None,
    extra_checkpoints: list[str] | None = None,
    witness_keys: Sequence[str] = (),
    kept_exports: Sequence[Path] = (),
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify an export; raise :class:`TamperingDetected` (:class:`ForkDetected` when the key
    signed two histories) or :class:`UnreadableExport`.

    ``extra_checkpoints``: checkpoint notes kept outside the export (a witness's last
    cosigned one…); ``witness_keys``: witness vkeys whose cosignatures are checked and
    reported; ``kept_exports``: directories written by :func:`keep_export` from earlier
    exports, whose leaf hashes let a rewritten event be named exactly; ``progress``: called
    after each block of events with how many were checked and how many the export announced.
    """
    first_seq, announced = _manifest(directory)
    warnings: list[str] = []
    try:
        exported_key = (directory / LOG_KEY).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        exported_key = ""
    vkey = trusted_key.strip() if trusted_key else exported_key
    if not vkey:
        raise UnreadableExport("no verifier key: pass --key or include log.vkey")
    try:
        verifier = NoteVerifier.from_vkey(vkey)
        witnesses = [CosignatureVerifier.from_vkey(w) for w in witness_keys]
    except CheckpointError as exc:
        raise UnreadableExport(f"bad verifier key: {exc}") from None
    if trusted_key is None:
        warnings.append("verifier key read from the export itself: pin it with --key")
    elif exported_key and exported_key != vkey:
        warnings.append("the export names another key than the pinned one")

    # 1. Signatures: the export's checkpoints, the kept notes, the kept trees, cosignatures.
    exported = [
        _verify_note(verifier, where, note, kept=False)
        for where, note in _read_notes(directory / CHECKPOINTS, CHECKPOINTS)
    ]
    extra = [
        _verify_note(verifier, f"--checkpoint #{i}", note, kept=True)
        for i, note in enumerate(extra_checkpoints or [], 1)
    ]
    kept_trees = [load_kept(path, verifier) for path in kept_exports]
    segment: Segment | None = None
    frontier = Frontier()
    segment_seen: list[_Seen] = []
    if first_seq:
        segment = _segment(directory, verifier)
        if segment.cut != first_seq:
            raise TamperingDetected("the export does not start at the retention cut", first_seq)
        frontier = Frontier(segment.cut, segment.frontier)
        segment_seen.append(_verify_note(verifier, SEGMENT, segment.note, kept=False))
    seen = [*exported, *extra]
    everything = [*seen, *segment_seen, *(s for kept in kept_trees for s in kept.seen)]
    cosignatures, unchecked = _witness_report(everything, witnesses, verifier)
    if unchecked:
        warnings.append(
            "cosignatures by keys not given with --witness-key were not checked: "
            + ", ".join(unchecked)
        )

    # 2. Two checkpoints of one size with different roots: a fork whatever the events say.
    fork = find_fork(s.sighting() for s in everything)
    # The earliest difference from what was kept, settled once the export's own checkpoints
    # are checked: if one covering it matches the events, the key signed both histories.
    difference: _Difference | None = None

    def fail(message: str, index: int | None) -> NoReturn:
        if difference is not None:  # the earliest problem is the one to name
            message, index = difference.message, difference.index
        if fork is not None:
            raise ForkDetected(f"{fork.describe()}; {message}", index)
        raise TamperingDetected(message, index)

    expected: dict[int, list[_Seen]] = defaultdict(list)
    for s in everything:
        if s.checkpoint.size >= first_seq:  # below: pruned, nothing left to compare it with
            expected[s.checkpoint.size].append(s)
    skipped = sum(1 for s in seen if s.checkpoint.size < first_seq)
    sizes = sorted(expected)

    # 3. Leaves kept trees hold: the first that differs from the export's recorded ones. The
    # stream checks every event against its recorded leaf first, so at that index the event
    # itself differs from the one that was kept.
    try:
        leaves = (directory / LEAVES).read_bytes()
    except OSError as exc:
        raise UnreadableExport(f"cannot read the events: {exc}") from None
    stop_at, stop_tree = -1, None
    for kept in kept_trees:
        low = max(first_seq, kept.first_seq)
        high = min(kept.size, first_seq + len(leaves) // 32)
        if low < high:
            differs = _first_differing_hash(
                leaves[(low - first_seq) * 32 : (high - first_seq) * 32],
                kept.leaves[(low - kept.first_seq) * 32 : (high - kept.first_seq) * 32],
            )
            if differs is not None and (stop_tree is None or low + differs < stop_at):
                stop_at, stop_tree = low + differs, kept
        if segment is not None and kept.first_seq < first_seq <= kept.size:
            pruned = _compare_segment(segment, kept)
            if pruned is not None:
                found = fork or _fork_between(segment_seen[0], kept.latest)
                raise ForkDetected(f"{found.describe()}; {pruned[0]}", pruned[1])

    cursor = 0  # next checkpoint size to check, as an index into sizes
    last_good = first_seq  # largest size whose signed roots all match the events
    last_kept = first_seq  # largest size whose kept root matched the events

    def check_checkpoints(size: int) -> None:
        nonlocal cursor, last_good, last_kept, difference
        while cursor < len(sizes) and sizes[cursor] == size:
            computed = frontier.root()
            here = expected[size]
            wrong = [s for s in here if s.checkpoint.root != computed]
            kept_wrong = [s for s in wrong if s.kept]
            export_wrong = [s for s in wrong if not s.kept]
            events_give = f"the export's events give root {_b64(computed)} at size {size}"
            if kept_wrong and difference is None:
                kept = kept_wrong[0]
                difference = _Difference(
                    f"{events_give}, not the root {_b64(kept.checkpoint.root)} kept at "
                    f"{kept.where}. {_locate_hint(last_kept, size)}",
                    None,
                    kept,
                    size,
                )
            if export_wrong:
                # The export's own checkpoint disagrees with its events. If a kept root or kept
                # leaves say the events are those of the log as it was, the signed root is the
                # lie: the key signed another tree.
                liar = export_wrong[0]
                reference = next((s for s in here if s.kept and s not in wrong), None)
                covering = [t for t in kept_trees if t.first_seq <= last_good < size <= t.size]
                if reference is None and covering:
                    reference = covering[0].latest
                if difference is None and reference is not None:
                    raise ForkDetected(
                        f"{_fork_between(liar, reference).describe()}; {events_give}, which "
                        f"what was kept at {reference.where} confirms: the checkpoint at "
                        f"{liar.where} signs another tree",
                        None,
                    )
                if fork is not None and fork.first.checkpoint.size == size:
                    fail(f"{events_give}: the checkpoint at {liar.where} is the other", None)
                fail(
                    f"signed checkpoint at size {size} does not match the events: an event in "
                    f"[{last_good}, {size}) was altered, inserted, deleted or reordered",
                    last_good,
                )
            if not wrong:
                last_good = size
                if any(s.kept for s in here):
                    last_kept = size
            cursor += 1

    # 4. One streaming pass over the events, a block of whole lines at a time. A block whose
    # every line is canonical, at its sequence number and equal to its recorded leaf hash is
    # checked in bulk (fast path); any other block goes through the reference loop, line by
    # line, which names the first bad event exactly as the one-line-at-a-time pass always did.
    prune_seq: int | None = None
    prune_id = str(first_seq)
    prune_action = Action.AUDIT_PRUNE.value
    while cursor < len(sizes) and sizes[cursor] < first_seq:
        cursor += 1
    check_checkpoints(first_seq)
    sha256 = hashlib.sha256
    loads = json.loads
    seq = first_seq

    def kept_difference(index: int) -> None:
        """Event ``index`` is the first whose leaf a kept tree holds otherwise."""
        nonlocal difference
        assert stop_tree is not None  # set together with stop_at
        difference = _Difference(
            f"event {index} differs from the one whose leaf hash {stop_tree.where} holds "
            f"(kept as signed at size {stop_tree.size})",
            index,
            stop_tree.latest,
            index + 1,
        )

    def is_prune(obj: object) -> bool:
        return (
            isinstance(obj, dict)
            and obj.get("action") == prune_action
            and obj.get("object_id") == prune_id
            and obj.get("object_type") == PRUNE_OBJECT_TYPE
        )

    def line_by_line(block: bytes) -> None:
        """The reference pass over one block; raises at the first bad event."""
        nonlocal seq, prune_seq
        lines = block.split(b"\n")
        tail = lines.pop()  # empty when the block ends with an end of line
        for data in lines:
            leaf = sha256(b"\x00" + data).digest()
            try:
                obj = loads(data)
                found = obj["seq"]
            except (ValueError, TypeError, KeyError):
                fail(f"event {seq} is not a valid event record", seq)
            if found != seq:
                fail(
                    f"event at position {seq} carries seq {found!r}: events were deleted, "
                    "inserted or reordered here",
                    seq,
                )
            offset = seq - first_seq
            recorded = leaves[offset * 32 : offset * 32 + 32]
            if recorded != leaf:
                if len(recorded) < 32:
                    fail(f"event {seq} has no recorded leaf hash", seq)
                fail(f"event {seq} differs from its recorded leaf hash", seq)
            if CANONICAL_LINES.fullmatch(data) is None:
                # The pattern is a fast filter; the decoder is the authority on canonical form.
                try:
                    Event.from_canonical(data)
                except InvalidEvent as exc:
                    fail(f"event {seq} is not in canonical form: {exc}", seq)
            if seq == stop_at and difference is None:
                kept_difference(seq)
            if first_seq and is_prune(obj):
                prune_seq = seq
            frontier.push(leaf)
            seq += 1
            check_checkpoints(seq)
        if tail:
            fail(f"event {seq} is cut short (no end of line)", seq)

    def in_bulk(block: bytes) -> bool:
        """The fast path over one block; False (nothing done) when it is not all good."""
        nonlocal seq, prune_seq
        if not block.endswith(b"\n"):
            return False
        hashes = leaf_hashes_of_lines(block)  # one per line: they count the lines too
        count = len(hashes) // 32
        offset = (seq - first_seq) * 32
        if leaves[offset : offset + len(hashes)] != hashes:
            return False
        # One match per line, and none elsewhere: a line that is not canonical is skipped by
        # findall, so fewer matches than lines sends the block to the reference pass.
        found = CANONICAL_LINES.findall(block)
        if found != [b"%d" % i for i in range(seq, seq + count)]:
            return False
        marker = b'{"action":"' + prune_action.encode() + b'",'
        if first_seq and marker in block:
            # Lines are canonical, so a prune event's line starts with its action.
            for number, data in enumerate(block[:-1].split(b"\n")):
                if data.startswith(marker) and is_prune(loads(data)):
                    prune_seq = seq + number
        # Grow the tree up to each checkpoint size (and the kept-tree difference) in the block,
        # in order, so that each check sees the same state as after that many single pushes.
        stops = []
        upcoming = cursor
        while upcoming < len(sizes) and sizes[upcoming] <= seq + count:
            stops.append(sizes[upcoming])
            upcoming += 1
        if seq <= stop_at < seq + count:
            stops = sorted({*stops, stop_at + 1})
        done = seq
        for stop in stops:
            frontier.extend(hashes[(done - seq) * 32 : (stop - seq) * 32])
            done = stop
            if stop == stop_at + 1 and difference is None:
                kept_difference(stop_at)
            check_checkpoints(stop)
        frontier.extend(hashes[(done - seq) * 32 :])
        seq += count
        return True

    try:
        # Opened only now: every earlier check may raise, and must not leak the handle.
        events_file = (directory / EVENTS).open("rb")
    except OSError as exc:
        raise UnreadableExport(f"cannot read the events: {exc}") from None
    with events_file:
        for block in _blocks(events_file):
            if not in_bulk(block):
                line_by_line(block)
            if progress is not None:
                progress(seq - first_seq, announced - first_seq)

    # 5. Truncation, and what the pass could not settle.
    count = seq - first_seq
    if cursor < len(sizes):
        fail(
            f"log truncated: a checkpoint signs {sizes[cursor]} events but the export ends "
            f"at {seq}",
            seq,
        )
    if len(leaves) != 32 * count or announced != seq:
        fail(
            f"log truncated or extended: the export announced {announced} events and "
            f"{len(leaves) // 32} leaf hashes but holds {count} events from {first_seq}",
            min(seq, announced),
        )
    if difference is not None:
        # Every export checkpoint matched its events: one covering the difference, signed by
        # the same key as the kept one, is the other history.
        covering = [s for s in exported if s.checkpoint.size >= difference.size]
        other = min(covering, key=lambda s: s.checkpoint.size, default=None)
        if fork is None and other is not None:
            fork = _fork_between(difference.kept, other)
        fail(difference.message, difference.index)
    if fork is not None:  # among pruned sizes: nothing left to compare it with
        raise ForkDetected(fork.describe(), None)
    if count and not any(size > first_seq for size in sizes):
        raise TamperingDetected("no signed checkpoint covers any event", first_seq)
    if segment is not None and (prune_seq is None or prune_seq >= last_good):
        raise TamperingDetected(
            f"no signed audit.prune event records the retention cut at {first_seq}", first_seq
        )
    latest = sizes[-1] if sizes else None
    if latest is not None and latest < seq:
        warnings.append(f"{seq - latest} events after the last checkpoint are not yet signed")
    for witness in witnesses:
        if not any(witness.name in c.witnesses for c in cosignatures):
            warnings.append(f"no checkpoint carries a cosignature by {witness.name}")
    return VerifyReport(
        origin=verifier.name,
        vkey=vkey,
        first_seq=first_seq,
        size=seq,
        root=frontier.root(),
        checkpoints_verified=len(seen) - skipped,
        latest_checkpoint=latest,
        skipped_before_cut=skipped,
        warnings=tuple(warnings),
        witnesses=tuple(w.name for w in witnesses),
        cosignatures=tuple(cosignatures),
        kept=tuple((t.where, t.size) for t in kept_trees),
    )


# Bytes read at a time: about ten thousand events, few enough to stay in the CPU's caches
# while the block is matched, hashed and compared, many enough that per-block costs vanish.
BLOCK_BYTES = 1 << 22


def _blocks(handle: BinaryIO) -> Iterator[bytes]:
    """Whole lines of ``handle``, about :data:`BLOCK_BYTES` at a time; a last line without its
    end of line comes alone, last."""
    size = BLOCK_BYTES  # read at each call: the tests shrink it to cross block boundaries
    rest = b""
    while chunk := handle.read(size):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


def _locate_hint(last_kept: int, size: int) -> str:
    return (
        f"A root alone cannot name the event that differs: it is one of [{last_kept}, {size}) "
        "(a kept root matched below). Keep an earlier export's leaf hashes (--keep) and pass "
        "them with --kept-export to have it named."
    )


def _compare_segment(segment: Segment, kept: KeptTree) -> tuple[str, int | None] | None:
    """A retention cut the kept tree covers: its frontier must be the kept tree's at the cut;
    otherwise what differs (a message, and the event when it can be named).

    Only the segment's complete subtrees remain of the pruned events, so a difference is
    located to the first complete subtree that differs (to the event if it is a single leaf).
    """
    cut = segment.cut
    seeded = Frontier(kept.first_seq, kept.seed)
    seeded.extend(kept.leaves[: (cut - kept.first_seq) * 32])
    if seeded.hashes == segment.frontier:
        return None
    known = _segment_source(segment)
    try:
        start, end = first_difference(cut, kept.root_of, lambda s, e: known.get((s, e)))
    except ProofError:  # the folds agree though the subtrees do not: cannot happen
        start, end = kept.first_seq, cut
    where = f"event {start}" if end - start == 1 else f"one of the events [{start}, {end})"
    return (
        f"the retention segment (cut {cut}) does not extend the tree kept in {kept.where}: "
        f"{where} differs from what was kept (only the segment's complete subtrees remain of "
        "the pruned events)",
        start if end - start == 1 else None,
    )


def _print_cosignatures(report: VerifyReport) -> None:
    if not report.witnesses:
        return
    cosigned = [c for c in report.cosignatures if c.witnesses]
    print(
        f"cosignatures: {len(cosigned)} of {len(report.cosignatures)} checkpoints carry a valid "
        f"cosignature by the witness keys given"
    )
    for c in report.cosignatures:
        names = ", ".join(c.witnesses) if c.witnesses else "none"
        print(f"  size {c.size} ({format_time(c.time)}, {c.where}): {names}")
    for name in report.witnesses:
        mine = [c.size for c in report.cosignatures if name in c.witnesses]
        largest = f", the largest at size {max(mine)}" if mine else ""
        print(f"witness {name}: {len(mine)} checkpoints cosigned{largest}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify",
        description="Verify a Maillon audit export offline. "
        "Exit 0: verified; 1: tampering, a fork or a bad cosignature found; 2: unreadable input.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--key", help="the log's verifier key (name+keyid+base64) or @FILE")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        type=Path,
        help="a signed checkpoint note kept outside the export (repeatable)",
    )
    parser.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a witness's verifier key (or @FILE): report which checkpoints it cosigned "
        "(repeatable)",
    )
    parser.add_argument(
        "--kept-export",
        action="append",
        default=[],
        type=Path,
        help="leaf hashes kept from an earlier export with --keep: a rewritten event is then "
        "named exactly (repeatable)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="once verified, copy the export's leaf hashes and checkpoints (not its events) "
        "to this new directory, for a later --kept-export",
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show progress on stderr (shown anyway for a large export when stderr is a terminal)",
    )
    args = parser.parse_args(argv)
    try:
        key = _at_file(args.key) if args.key else args.key
        witness_keys = [_at_file(w) for w in args.witness_key]
        extra = [p.read_text(encoding="utf-8") for p in args.checkpoint]
    except OSError as exc:
        print(f"UNREADABLE: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        report = verify_export(
            args.directory,
            trusted_key=key,
            extra_checkpoints=extra,
            witness_keys=witness_keys,
            kept_exports=args.kept_export,
            progress=_progress(args.progress),
        )
        if args.keep:
            keep_export(args.directory, args.keep)
    except ForkDetected as exc:
        print(f"FORK: {exc}")
        _print_index(exc)
        return EXIT_TAMPERED
    except TamperingDetected as exc:
        print(f"TAMPERING: {exc}")
        _print_index(exc)
        return EXIT_TAMPERED
    except (UnreadableExport, OSError) as exc:
        print(f"UNREADABLE: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except AuditError as exc:  # any other failure is unreadable input, never a pass
        print(f"UNREADABLE: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(
        f"OK: {report.origin}: events {report.first_seq}..{report.size - 1} "
        f"({report.size - report.first_seq} events), root {report.root.hex()}, "
        f"{report.checkpoints_verified} checkpoints verified, "
        f"latest signed size {report.latest_checkpoint}"
    )
    for where, size in report.kept:
        print(f"{where}: the export extends the tree kept at size {size}")
    _print_cosignatures(report)
    if args.keep:
        print(f"kept in {args.keep}: pass it later with --kept-export {args.keep}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


# Below this many events a verification takes well under a second: no progress unasked.
PROGRESS_FROM = 200_000


def _progress(asked: bool) -> Callable[[int, int], None] | None:
    """A progress reporter on stderr: when asked (``--progress``), or for a large export when
    stderr is a terminal. On a terminal one line is rewritten in place; otherwise (a log file)
    a line is written every tenth of the way, so that the output stays short."""
    terminal = sys.stderr.isatty()
    if not asked and not terminal:
        return None
    shown = {"tenth": -1}

    def report(done: int, total: int) -> None:
        if total <= 0 or (not asked and total < PROGRESS_FROM):
            return
        share = min(done, total) / total
        text = f"verifying events: {done:,} of {total:,} ({share:.0%})"
        if terminal:
            end = "\n" if done >= total else ""
            print(f"\r{text}", end=end, file=sys.stderr, flush=True)
        elif int(share * 10) > shown["tenth"]:
            shown["tenth"] = int(share * 10)
            print(text, file=sys.stderr, flush=True)

    return report


def _at_file(value: str) -> str:
    """``@FILE`` → the file's text; anything else as given."""
    return Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value


def _print_index(exc: TamperingDetected) -> None:
    if exc.index is not None:
        print(f"first bad index: {exc.index}")


if __name__ == "__main__":
    sys.exit(main())
