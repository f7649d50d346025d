"""Fork detection: one signing key vouching for two histories of a log.

A log's checkpoints are signed by one key; a log that shows one history to some readers and
another to others (a split view), or that rewrites what it already signed, has to sign two
checkpoints that cannot both be true:

- two checkpoints of the **same size with different roots**;
- a smaller checkpoint whose tree is **not a prefix** of a larger one's (no consistency proof
  can exist; a verifier holding the larger tree's leaves sees it directly: the larger tree's
  root at the smaller size is not the smaller checkpoint's root).

Either pair, both signatures verified, is proof of misbehaviour by whoever holds the key. This
module only compares checkpoints the caller has already verified with **one** key (the audit
verifier, and the key-directory verifier, which reuses it); it imports nothing of the store.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from audit.checkpoint import Checkpoint


def _b64(root: bytes) -> str:
    return base64.b64encode(root).decode("ascii")


@dataclass(frozen=True, slots=True)
class Sighting:
    """A checkpoint and where it was seen (``checkpoints.jsonl line 3``, ``--checkpoint #1``…)."""

    where: str
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Fork:
    """Two verified checkpoints of one key that cannot both describe the same log."""

    first: Sighting
    second: Sighting

    @property
    def origin(self) -> str:
        """The log (key name) that signed both."""
        return self.first.checkpoint.origin

    def describe(self) -> str:
        """One line for people: both sizes, both roots, where each was seen."""
        a, b = self.first.checkpoint, self.second.checkpoint
        if a.size == b.size:
            return (
                f"two checkpoints of size {a.size} signed by {self.origin} with different "
                f"roots: {_b64(a.root)} ({self.first.where}) and {_b64(b.root)} "
                f"({self.second.where})"
            )
        return (
            f"the checkpoint of size {a.size} (root {_b64(a.root)}, {self.first.where}) is "
            f"not a prefix of the checkpoint of size {b.size} (root {_b64(b.root)}, "
            f"{self.second.where}), both signed by {self.origin}"
        )


def find_fork(sightings: Iterable[Sighting]) -> Fork | None:
    """The first pair of checkpoints of one origin and size with different roots, if any.

    The caller verifies every signature with one key first: two checkpoints signed by
    different keys prove nothing against either. Order is kept, so the fork names the
    sighting met first as ``first``.
    """
    seen: dict[tuple[str, int], Sighting] = {}
    for sighting in sightings:
        checkpoint = sighting.checkpoint
        key = (checkpoint.origin, checkpoint.size)
        earlier = seen.setdefault(key, sighting)
        if earlier.checkpoint.root != checkpoint.root:
            return Fork(earlier, sighting)
    return None
