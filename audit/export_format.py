"""Names and version of the export directory layout (see :mod:`audit.export`).

Kept apart so the offline verifier can read exports without importing the store (SQLAlchemy).
"""

from __future__ import annotations

EXPORT_FORMAT = "maillon-audit-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
LEAVES = "leaves.bin"
CHECKPOINTS = "checkpoints.jsonl"
LOG_KEY = "log.vkey"
SEGMENT = "segment.json"
PRUNE_OBJECT_TYPE = "audit_segment"
