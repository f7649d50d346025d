"""Offline verification of an audit export: ``python -m audit.verify DIR``.

Needs only the export directory (see :mod:`audit.export`) and, ideally, the log's verifier key
obtained out of band (``--key``): no database, no hub. It

1. checks the signature of every checkpoint (and of the retention segment, if any);
2. streams the events in one pass, recomputing each leaf hash and the tree, checking that
   every event sits at its sequence number and matches the leaf hash the store recorded;
3. compares the recomputed root with every signed checkpoint at its size;
4. detects truncation: a signed checkpoint (in the export or given with ``--checkpoint``)
   larger than the events present, or fewer events than the export announced.

It stops at the first problem and names the first bad index. Edits, deletions, insertions and
reorderings that leave the recorded leaf hashes alone are pinned to the exact index; an
attacker who also rewrote the leaf hashes can only be located between two signed checkpoints
(the index reported is then the first event after the last checkpoint that still verifies), which
is why the hub signs a checkpoint at least every minute.

Exit status: 0 verified, 1 tampering found, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from audit.checkpoint import Checkpoint, NoteVerifier, Segment
from audit.errors import AuditError, CheckpointError, TamperingDetected, UnreadableExport
from audit.events import Action
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
from audit.merkle import Frontier

EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2


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

    @property
    def unsigned_tail(self) -> int:
        """Events after the largest verified checkpoint (not yet covered by a signature)."""
        return self.size - (self.latest_checkpoint or self.first_seq)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableExport(f"cannot read {path.name}: {exc}") from None


def _load_checkpoints(
    path: Path, verifier: NoteVerifier, extra: list[str]
) -> list[tuple[str, Checkpoint]]:
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
            raise TamperingDetected(f"{path.name} line {number} is not a checkpoint note")
        notes.append((f"{path.name} line {number}", note))
    notes += [(f"--checkpoint #{i}", note) for i, note in enumerate(extra, 1)]
    checked = []
    for where, note in notes:
        try:
            checked.append((where, verifier.verify_checkpoint(note)))
        except CheckpointError as exc:
            raise TamperingDetected(f"checkpoint at {where} does not verify: {exc}") from None
    return checked


def verify_export(
    directory: Path, *, trusted_key: str | None = None, extra_checkpoints: list[str] | None = None
) -> VerifyReport:
    """Verify an export; raise :class:`TamperingDetected` or :class:`UnreadableExport`."""
    manifest = _read_json(directory / MANIFEST)
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != EXPORT_FORMAT
        or manifest.get("version") != EXPORT_VERSION
    ):
        raise UnreadableExport(f"not a {EXPORT_FORMAT} version {EXPORT_VERSION} export")
    first_seq, announced = manifest.get("first_seq"), manifest.get("size")
    if not isinstance(first_seq, int) or not isinstance(announced, int):
        raise UnreadableExport("manifest lacks first_seq/size")
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
    except CheckpointError as exc:
        raise UnreadableExport(f"bad verifier key: {exc}") from None
    if trusted_key is None:
        warnings.append("verifier key read from the export itself: pin it with --key")
    elif exported_key and exported_key != vkey:
        warnings.append("the export names another key than the pinned one")

    checkpoints = _load_checkpoints(directory / CHECKPOINTS, verifier, extra_checkpoints or [])

    segment: Segment | None = None
    frontier = Frontier()
    if first_seq:
        try:
            segment = Segment.from_json(_read_json(directory / SEGMENT))
            segment.verify(verifier)
        except CheckpointError as exc:
            raise TamperingDetected(f"retention segment does not verify: {exc}") from None
        if segment.cut != first_seq:
            raise TamperingDetected("the export does not start at the retention cut", first_seq)
        frontier = Frontier(segment.cut, segment.frontier)

    expected_roots: dict[int, set[bytes]] = defaultdict(set)
    skipped = 0
    for _where, cp in checkpoints:
        if cp.size < first_seq:
            skipped += 1  # covers pruned events only: nothing left to compare it with
        else:
            expected_roots[cp.size].add(cp.root)
    sizes = sorted(expected_roots)

    # --- one streaming pass ----------------------------------------------------------------
    try:
        leaves = (directory / LEAVES).read_bytes()
        events_file = (directory / EVENTS).open("rb")
    except OSError as exc:
        raise UnreadableExport(f"cannot read the events: {exc}") from None

    cursor = 0  # next checkpoint size to check, as an index into sizes
    last_good = first_seq
    prune_seq: int | None = None
    prune_id = str(first_seq)
    prune_action = Action.AUDIT_PRUNE.value

    def check_checkpoints(size: int) -> None:
        nonlocal cursor, last_good
        while cursor < len(sizes) and sizes[cursor] == size:
            roots = expected_roots[size]
            if roots != {frontier.root()}:
                raise TamperingDetected(
                    f"signed checkpoint at size {size} does not match the events: an event in "
                    f"[{last_good}, {size}) was altered, inserted, deleted or reordered",
                    last_good,
                )
            last_good = size
            cursor += 1

    while cursor < len(sizes) and sizes[cursor] < first_seq:
        cursor += 1
    check_checkpoints(first_seq)
    sha256 = hashlib.sha256
    loads = json.loads
    seq = first_seq
    with events_file:
        for offset, line in enumerate(events_file):
            if not line.endswith(b"\n"):
                raise TamperingDetected(f"event {seq} is cut short (no end of line)", seq)
            data = line[:-1]
            leaf = sha256(b"\x00" + data).digest()
            try:
                obj = loads(data)
                found = obj["seq"]
            except (ValueError, TypeError, KeyError):
                raise TamperingDetected(f"event {seq} is not a valid event record", seq) from None
            if found != seq:
                raise TamperingDetected(
                    f"event at position {seq} carries seq {found!r}: events were deleted, "
                    "inserted or reordered here",
                    seq,
                )
            recorded = leaves[offset * 32 : offset * 32 + 32]
            if recorded != leaf:
                if len(recorded) < 32:
                    raise TamperingDetected(f"event {seq} has no recorded leaf hash", seq)
                raise TamperingDetected(f"event {seq} differs from its recorded leaf hash", seq)
            if (
                first_seq
                and obj.get("action") == prune_action
                and obj.get("object_id") == prune_id
                and obj.get("object_type") == PRUNE_OBJECT_TYPE
            ):
                prune_seq = seq
            frontier.push(leaf)
            seq += 1
            check_checkpoints(seq)

    count = seq - first_seq
    if cursor < len(sizes):
        raise TamperingDetected(
            f"log truncated: a checkpoint signs {sizes[cursor]} events but the export ends "
            f"at {seq}",
            seq,
        )
    if len(leaves) != 32 * count or announced != seq:
        raise TamperingDetected(
            f"log truncated or extended: the export announced {announced} events and "
            f"{len(leaves) // 32} leaf hashes but holds {count} events from {first_seq}",
            min(seq, announced),
        )
    if count and not sizes:
        raise TamperingDetected("no signed checkpoint covers any event", first_seq)
    if segment is not None and (prune_seq is None or prune_seq >= last_good):
        raise TamperingDetected(
            f"no signed audit.prune event records the retention cut at {first_seq}", first_seq
        )
    latest = sizes[-1] if sizes else None
    if latest is not None and latest < seq:
        warnings.append(f"{seq - latest} events after the last checkpoint are not yet signed")
    return VerifyReport(
        origin=verifier.name,
        vkey=vkey,
        first_seq=first_seq,
        size=seq,
        root=frontier.root(),
        checkpoints_verified=len(checkpoints) - skipped,
        latest_checkpoint=latest,
        skipped_before_cut=skipped,
        warnings=tuple(warnings),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify",
        description="Verify a Maillon audit export offline. "
        "Exit 0: verified; 1: tampering found; 2: unreadable input.",
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
    args = parser.parse_args(argv)
    try:
        key = args.key
        if key and key.startswith("@"):
            key = Path(key[1:]).read_text(encoding="utf-8")
        extra = [p.read_text(encoding="utf-8") for p in args.checkpoint]
    except OSError as exc:
        print(f"UNREADABLE: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        report = verify_export(args.directory, trusted_key=key, extra_checkpoints=extra)
    except TamperingDetected as exc:
        print(f"TAMPERING: {exc}")
        if exc.index is not None:
            print(f"first bad index: {exc.index}")
        return EXIT_TAMPERED
    except UnreadableExport as exc:
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
    for warning in report.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
