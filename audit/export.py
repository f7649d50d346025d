"""Export the audit log to a self-contained directory for offline verification.

Layout (format ``maillon-audit-export``, version 1)::

    manifest.json       {"format", "version", "origin", "first_seq", "size", "exported_at",
                         "events", "leaves", "checkpoints", "log_key", "segment"}
    events.jsonl        one event per line, exactly its canonical bytes (audit.events), in
                        seq order from first_seq to size - 1; the leaf hash is
                        SHA-256(0x00 || line without its newline)
    leaves.bin          the store's leaf hashes for the same events, 32 bytes each, in order:
                        they let the verifier name the exact event that was edited when only
                        the event bytes were changed
    checkpoints.jsonl   one JSON string per line: a signed checkpoint note, oldest first, with
                        the witnesses' cosignature lines the log stored for it after its own
                        signature (c2sp.org/tlog-cosignature; readers that do not know a
                        witness key ignore its lines, as signed-note says)
    log.vkey            the log's signed-note verifier key (name+keyid+base64 key); a verifier
                        should pin the key it trusts instead of reading this file
    segment.json        only after a retention prune: {"cut", "frontier": [base64 hashes],
                        "note": signed checkpoint at size cut}; lets the remainder be verified

Nothing here is secret beyond the events themselves, which are pseudonymous (DESIGN §8).
The caller (the hub) records the export itself as an ``audit.export`` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from audit.checkpoint import NoteVerifier, Segment
from audit.events import format_time
from audit.export_format import (
    CHECKPOINTS,
    EVENTS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    LEAVES,
    LOG_KEY,
    MANIFEST,
    SEGMENT,
)
from audit.store import AuditLog, event_from_row, segments_table


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export contains."""

    directory: Path
    first_seq: int
    size: int
    checkpoints: int


def export_log(log: AuditLog, directory: Path, *, verifier: NoteVerifier) -> ExportSummary:
    """Write the log (events, leaf hashes, checkpoints, key, retention segment) to ``directory``.

    The export is a consistent snapshot: the tree size is read first and only events and
    checkpoints up to that size are written, even while appends continue.
    """
    directory.mkdir(parents=True, exist_ok=True)
    size = log.size()
    segment = latest_segment(log)
    first_seq = segment.cut if segment else 0
    with (directory / EVENTS).open("wb") as events_out, (directory / LEAVES).open("wb") as leaves:
        expected = first_seq
        for row in log.event_rows(first_seq, size):
            if row.seq != expected:
                # The store itself lost an event: export what is there, the verifier will
                # name the gap.
                expected = row.seq
            events_out.write(event_from_row(row).canonical() + b"\n")
            leaves.write(bytes(row.leaf_hash))
            expected += 1
    notes = [n for n in log.checkpoints(with_cosignatures=True) if _note_size(n) <= size]
    with (directory / CHECKPOINTS).open("w", encoding="utf-8") as out:
        for note in notes:
            out.write(json.dumps(note) + "\n")
    (directory / LOG_KEY).write_text(verifier.vkey() + "\n", encoding="utf-8")
    if segment:
        text = json.dumps(segment.to_json(), indent=1) + "\n"
        (directory / SEGMENT).write_text(text, encoding="utf-8")
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "origin": verifier.name,
        "first_seq": first_seq,
        "size": size,
        "exported_at": format_time(log.clock()),
        "events": EVENTS,
        "leaves": LEAVES,
        "checkpoints": CHECKPOINTS,
        "log_key": LOG_KEY,
        "segment": SEGMENT if segment else None,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return ExportSummary(directory, first_seq, size, len(notes))


def _note_size(note: str) -> int:
    return int(note.split("\n", 2)[1])


def latest_segment(log: AuditLog) -> Segment | None:
    """The most recent retention segment record (``None`` if the log was never pruned)."""
    with log.engine.connect() as conn:
        row = conn.execute(
            select(segments_table).order_by(segments_table.c.cut.desc()).limit(1)
        ).first()
    if row is None:
        return None
    frontier = bytes(row.frontier)
    return Segment(
        int(row.cut),
        tuple(frontier[i : i + 32] for i in range(0, len(frontier), 32)),
        str(row.note),
    )
