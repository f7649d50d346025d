"""Log retention: delete events older than the retention period, keeping the log verifiable.

CNIL guidance for access logs is 6 to 12 months (DESIGN §8); the default here is 365 days.
A prune, in one write transaction holding the writer lock:

1. finds the cut: the first ``seq`` whose time is within the retention period (events are
   appended in time order, so everything below the cut is older);
2. signs a checkpoint at size ``cut`` and stores a *segment record* (cut, the complete-subtree
   hashes of the tree of ``cut`` leaves, that signed checkpoint): a verifier seeds its tree
   with them and checks every later event and checkpoint without the deleted prefix;
3. deletes events below the cut: the append-only trigger allows a DELETE only for rows below
   the largest recorded cut, so no other code path can remove events;
4. appends an ``audit.prune`` event (object ``audit_segment``/``<cut>``).

A checkpoint covering the prune event is signed right after. The offline verifier insists that
a signed ``audit.prune`` event names the export's cut, so an attacker holding a copy of an old
checkpoint cannot pass off a deletion as a retention prune. Tree nodes (hashes only) are kept,
so proofs for the remaining events keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from audit import merkle
from audit.checkpoint import Checkpoint, NoteSigner
from audit.errors import LogUnavailable, RetentionError
from audit.events import Action, Event, NewEvent, to_micros
from audit.export_format import PRUNE_OBJECT_TYPE
from audit.store import AuditLog, checkpoints_table, events_table, segments_table

DEFAULT_RETENTION = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did."""

    cut: int
    deleted: int
    segment_note: str
    prune_event: Event
    checkpoint: str


def prune(
    log: AuditLog,
    signer: NoteSigner,
    *,
    retention: timedelta = DEFAULT_RETENTION,
    actor_user: str | None = None,
    actor_org: str = "",
    request_id: str = "",
) -> PruneResult | None:
    """Delete events older than ``retention``; ``None`` if there is nothing to delete.

    ``actor_*`` name who ordered the prune (``None`` for the scheduled task).
    """
    if retention <= timedelta(0):
        raise RetentionError("retention must be positive")
    now = log.clock()
    threshold = to_micros(now - retention)
    try:
        with log.write_transaction() as conn:
            # Everything into the archive first: the cut deletes from there only.
            log.flush(conn)
            size = log._size(conn)
            previous = conn.execute(select(func.max(segments_table.c.cut))).scalar() or 0
            first_recent = conn.execute(
                select(func.min(events_table.c.seq)).where(events_table.c.time_us >= threshold)
            ).scalar()
            cut = size if first_recent is None else int(first_recent)
            if cut <= previous:
                return None
            frontier = log._fetch_frontier(conn, cut)
            root = merkle.Frontier(cut, frontier).root()
            note = str(signer.sign_checkpoint(Checkpoint(signer.name, cut, root, now)))
            conn.execute(
                insert(segments_table).values(
                    cut=cut, time_us=to_micros(now), frontier=b"".join(frontier), note=note
                )
            )
            conn.execute(
                insert(checkpoints_table).values(
                    size=cut, root=root, time_us=to_micros(now), note=note
                )
            )
            deleted = conn.execute(events_table.delete().where(events_table.c.seq < cut)).rowcount
            record = NewEvent(
                action=Action.AUDIT_PRUNE,
                actor_user=actor_user,
                actor_org=actor_org,
                object_type=PRUNE_OBJECT_TYPE,
                object_id=str(cut),
                request_id=request_id,
            )
            (event,), new_frontier = log._append_locked(conn, [record])
    except SQLAlchemyError as exc:
        raise LogUnavailable(f"prune failed, nothing deleted: {exc}") from exc
    log._frontier = new_frontier
    checkpoint = str(log.checkpoint(signer))
    return PruneResult(cut, int(deleted or 0), note, event, checkpoint)
