"""The key directory's log on the hub: entries, tree, signed checkpoints, proofs (DESIGN §6.3).

The tree, the checkpoints and the proofs are the audit log's own code (:mod:`audit.merkle`,
:mod:`audit.checkpoint`): one implementation of RFC 6962 in Maillon. Entries are appended in the
caller's transaction, so a key registration and its leaf commit (or roll back) together; each
append signs the checkpoint of the new size in the same transaction, so a client that is told
about a key can always be given a signed tree that contains it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from audit import merkle
from audit import store as audit_store
from audit.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    NoteSigner,
    PostedCosignature,
    SignedNote,
    read_cosignature,
)
from audit.errors import CosignatureRefused, ProofError
from consent.db import dialect_insert
from exchange.server.tables import (
    directory_checkpoints,
    directory_cosignatures,
    directory_entries,
    directory_head,
    directory_nodes,
)

MAX_ENTRIES_PER_PAGE = 1000


class DirectoryLog:
    """The directory's append-only log in the main store."""

    def __init__(
        self, session: Session, *, clock: Callable[[], datetime], signer: NoteSigner
    ) -> None:
        self.session = session
        self.clock = clock
        self.signer = signer

    # -- writing ---------------------------------------------------------------------------

    def append(self, entry: bytes) -> int:
        """Append ``entry`` (canonical bytes, checked by the caller) and sign the new tree
        head; its index. In the caller's transaction: nothing is visible until it commits."""
        # The head row's lock serialises appenders: the size read and the next index are one
        # step (the upsert takes the row lock on PostgreSQL, the write lock on SQLite).
        grow = dialect_insert(self.session, directory_head).values(id=1, size=1)
        grown = self.session.execute(
            grow.on_conflict_do_update(
                index_elements=[directory_head.c.id], set_={"size": directory_head.c.size + 1}
            ).returning(directory_head.c.size)
        ).scalar_one()
        size = int(grown) - 1
        frontier = merkle.Frontier(size, self._nodes(merkle.frontier_keys(size)))
        created = frontier.append(merkle.leaf_hash(entry))
        now = self.clock()
        self.session.execute(
            insert(directory_entries).values(idx=size, entry=entry, created_at=now)
        )
        self.session.execute(
            insert(directory_nodes),
            [{"level": level, "idx": idx, "hash": h} for level, idx, h in created],
        )
        self._sign(size + 1, frontier.root(), now)
        return size

    def _sign(self, size: int, root: bytes, now: datetime) -> str:
        note = str(self.signer.sign_checkpoint(Checkpoint(self.signer.name, size, root, now)))
        self.session.execute(
            insert(directory_checkpoints).values(size=size, note=note, created_at=now)
        )
        return note

    # -- reading -----------------------------------------------------------------------------

    def size(self) -> int:
        """How many entries the log holds (committed or in this transaction)."""
        size = self.session.execute(
            select(directory_head.c.size).where(directory_head.c.id == 1)
        ).scalar()
        return int(size or 0)

    def checkpoint(self, *, with_cosignatures: bool = False) -> str:
        """The signed checkpoint of the current size (the empty tree's is signed on demand);
        with the witnesses' cosignature lines after the directory's own when asked (clients
        carry it bare in their manifests, witnesses read it whole)."""
        row = self.session.execute(
            select(directory_checkpoints.c.size, directory_checkpoints.c.note)
            .order_by(directory_checkpoints.c.size.desc())
            .limit(1)
        ).first()
        if row is not None:
            note = str(row.note)
            if with_cosignatures:
                lines = self.session.execute(
                    select(directory_cosignatures.c.line)
                    .where(directory_cosignatures.c.size == row.size)
                    .order_by(directory_cosignatures.c.created_at, directory_cosignatures.c.witness)
                ).scalars()
                note += "".join(f"{line}\n" for line in lines)
            return note
        # Not stored: an empty directory's head says nothing a later one could contradict.
        return str(
            self.signer.sign_checkpoint(
                Checkpoint(self.signer.name, 0, merkle.EMPTY_ROOT, self.clock())
            )
        )

    # -- witnesses ---------------------------------------------------------------------------

    def check_cosignature(
        self, note: str, line: str, accepted: Iterable[CosignatureVerifier]
    ) -> PostedCosignature:
        """Verify a witness's cosignature ``line`` on ``note`` (a checkpoint as served); store
        nothing. :class:`~audit.errors.CosignatureRefused` with the audit log's codes unless
        the line is by an ``accepted`` witness, over a checkpoint text this directory signed,
        and verifies."""
        posted = read_cosignature(note, line, accepted)
        signed = self.session.execute(
            select(directory_checkpoints.c.note).where(
                directory_checkpoints.c.size == posted.checkpoint.size
            )
        ).scalar()
        # The exact text, byte for byte: a cosignature over another body (another timestamp)
        # must not be attached to this one.
        if signed is None or SignedNote.parse(str(signed)).text != posted.text:
            raise CosignatureRefused(
                "unknown_checkpoint",
                f"the directory signed no such checkpoint of size {posted.checkpoint.size}",
            )
        posted.verify()
        return posted

    def add_cosignature(
        self, note: str, line: str, accepted: Iterable[CosignatureVerifier]
    ) -> tuple[PostedCosignature, bool]:
        """Verify (as :meth:`check_cosignature`) and store a cosignature in the caller's
        transaction; ``False`` when this witness's cosignature of that checkpoint was already
        kept (a retry: the first one stays)."""
        posted = self.check_cosignature(note, line, accepted)
        k = directory_cosignatures.c
        kept = (
            self.session.execute(select(k.witness).where(k.size == posted.checkpoint.size))
            .scalars()
            .all()
        )
        vkey = posted.witness.vkey()
        if vkey in kept:
            return posted, False
        limit = audit_store.MAX_COSIGNATURES  # read now: the audit log's one limit
        if len(kept) >= limit:
            raise CosignatureRefused(
                "too_many_cosignatures", f"checkpoint already carries {limit} cosignatures"
            )
        stored = self.session.execute(
            dialect_insert(self.session, directory_cosignatures)
            .values(
                size=posted.checkpoint.size,
                witness=vkey,
                line=posted.line.text(),
                created_at=self.clock(),
            )
            .on_conflict_do_nothing()  # a concurrent retry kept it meanwhile
            .returning(k.witness)
        ).first()
        return posted, stored is not None

    def entries(self, start: int, end: int) -> list[bytes]:
        """The entries ``[start, end)`` (at most :data:`MAX_ENTRIES_PER_PAGE`)."""
        if not 0 <= start <= end or end - start > MAX_ENTRIES_PER_PAGE:
            raise ValueError("a page is 0 to MAX_ENTRIES_PER_PAGE entries from a start >= 0")
        rows = self.session.execute(
            select(directory_entries.c.entry)
            .where(directory_entries.c.idx >= start, directory_entries.c.idx < end)
            .order_by(directory_entries.c.idx)
        ).scalars()
        return [bytes(r) for r in rows]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 audit path of entry ``index`` in the tree of ``size`` entries."""
        return merkle.inclusion_proof(
            index, size, self._source(merkle.inclusion_proof_keys(index, size))
        )

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """RFC 6962 proof that the tree of ``old`` entries is a prefix of that of ``new``."""
        return merkle.consistency_proof(
            old, new, self._source(merkle.consistency_proof_keys(old, new))
        )

    def _nodes(self, keys: Iterable[merkle.Key]) -> list[bytes]:
        wanted = list(keys)
        found = self._fetch(wanted)
        return [found[k] for k in wanted]

    def _fetch(self, keys: Iterable[merkle.Key]) -> dict[merkle.Key, bytes]:
        wanted = list(keys)
        if not wanted:
            return {}
        rows = self.session.execute(
            select(directory_nodes.c.level, directory_nodes.c.idx, directory_nodes.c.hash).where(
                tuple_(directory_nodes.c.level, directory_nodes.c.idx).in_(wanted)
            )
        )
        found = {(r.level, r.idx): bytes(r.hash) for r in rows}
        if len(found) != len(set(wanted)):
            raise ProofError("the directory is missing tree nodes")
        return found

    def _source(self, keys: Iterable[merkle.Key]) -> merkle.SubtreeSource:
        found = self._fetch(keys)
        return lambda level, idx: found[(level, idx)]
