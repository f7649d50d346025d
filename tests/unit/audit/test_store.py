"""The durable log: appends, tree, proofs, concurrency, append-only enforcement."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from audit.checkpoint import NoteSigner
from audit.errors import InvalidEvent, LogUnavailable, ProofError
from audit.events import Action, Event, NewEvent
from audit.merkle import MemoryTree, verify_consistency, verify_inclusion
from audit.store import _BUSY_STEP_MS, AuditLog, _SqliteWriter, make_audit_engine
from tests.unit.audit.conftest import Clock, view


def test_append_assigns_sequence_and_clock_time(log: AuditLog, clock: Clock) -> None:
    start = clock.now
    first = log.append(view(1))
    second = log.append(view(2))
    assert (first.seq, second.seq) == (0, 1)
    assert first.time == start and second.time > first.time
    assert log.size() == 2
    assert log.event(1) == second


def test_append_many_is_one_ordered_batch(log: AuditLog) -> None:
    log.append(view(0))
    batch = log.append_many([view(i) for i in range(1, 6)])
    assert [e.seq for e in batch] == [1, 2, 3, 4, 5]
    assert list(log.events()) == [log.event(i) for i in range(6)]
    assert log.append_many([]) == []


def test_root_and_proofs_match_reference_tree_at_every_size(log: AuditLog) -> None:
    appended = log.append_many([view(i) for i in range(37)])
    tree = MemoryTree(e.leaf_hash() for e in appended)
    for size in range(38):
        assert log.root(size) == tree.root(size)
    for size in (1, 2, 7, 16, 31, 37):
        root = log.root(size)
        for seq in range(size):
            proof = log.inclusion_proof(seq, size)
            assert proof == tree.inclusion_proof(seq, size)
            verify_inclusion(appended[seq].leaf_hash(), seq, size, proof, root)
        for old in range(size + 1):
            proof = log.consistency_proof(old, size)
            verify_consistency(old, size, log.root(old), root, proof)


def test_proofs_beyond_the_log_are_refused(log: AuditLog) -> None:
    log.append_many([view(i) for i in range(3)])
    with pytest.raises(ProofError):
        log.root(4)
    with pytest.raises(ProofError):
        log.inclusion_proof(3, 3)
    with pytest.raises(ProofError):
        log.consistency_proof(2, 5)


def test_events_iterate_in_keyset_batches(log: AuditLog) -> None:
    log.append_many([view(i) for i in range(25)])
    assert [e.seq for e in log.events(batch=4)] == list(range(25))
    assert [e.seq for e in log.events(10, 13, batch=2)] == [10, 11, 12]


def test_stored_leaf_hash_is_the_hash_of_the_canonical_event(log: AuditLog) -> None:
    event = log.append(view(3))
    assert log.leaf_hash(0) == event.leaf_hash()


def test_invalid_event_is_refused_before_anything_is_written(log: AuditLog) -> None:
    with pytest.raises(InvalidEvent):
        log.append_many([view(1), NewEvent(action=Action.CASE_VIEW, object_id="Jean Dupont")])
    assert log.size() == 0


def test_create_schema_is_idempotent(log: AuditLog) -> None:
    log.append(view(1))
    log.create_schema()
    assert log.size() == 1


def test_a_second_instance_continues_the_same_tree(
    engine_factory: Callable[[], Engine], log: AuditLog, clock: Clock
) -> None:
    # Another process (here another engine and instance) appends between our appends: the
    # cached right edge of the tree must not be trusted blindly.
    other = AuditLog(engine_factory(), clock=clock)
    log.append(view(0))
    other.append(view(1))
    log.append(view(2))
    events = list(log.events())
    assert [e.seq for e in events] == [0, 1, 2]
    assert log.root() == MemoryTree(e.leaf_hash() for e in events).root()


def test_concurrent_threads_get_gap_free_sequence_and_a_correct_tree(
    engine_factory: Callable[[], Engine], log: AuditLog
) -> None:
    # Given 8 writer threads, some with their own AuditLog instance (as separate processes)
    lock = threading.Lock()
    base = datetime(2025, 3, 3, tzinfo=UTC)
    ticks = iter(range(10**6))

    def shared_clock() -> datetime:
        with lock:
            return base + timedelta(microseconds=next(ticks))

    logs = [AuditLog(engine_factory(), clock=shared_clock) for _ in range(3)] + [log]
    errors: list[BaseException] = []
    per_thread = 30  # 8 × 36 events: past TAIL_FLUSH, so a tail move happens under contention

    def writer(worker: int) -> None:
        target = logs[worker % len(logs)]
        try:
            for i in range(per_thread):
                if i % 5 == 4:
                    target.append_many([view(i, user=f"u-{worker}")] * 2)
                else:
                    target.append(view(i, user=f"u-{worker}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    # When they all append at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every event got a unique, gap-free seq and the stored tree matches the events
    assert not errors
    events = list(log.events())
    expected = 8 * (per_thread + per_thread // 5)
    assert [e.seq for e in events] == list(range(expected))
    assert log.size() == expected
    tree = MemoryTree(e.leaf_hash() for e in events)
    assert log.root() == tree.root()
    _assert_tail_moved(log, expected)
    assert log.inclusion_proof(expected // 2) == tree.inclusion_proof(expected // 2)


def _process_writer(url: str, worker: int, count: int) -> None:
    audit_log = AuditLog(make_audit_engine(url), clock=lambda: datetime.now(UTC))
    for i in range(count):
        audit_log.append(view(i, user=f"p-{worker}"))


def _assert_tail_moved(log: AuditLog, size: int) -> None:
    """The archive holds a prefix of the log covering every whole TAIL_FLUSH (a batch that
    crosses the boundary moves with it), the tail holds the rest, and no event is in both."""
    from audit.store import TAIL_FLUSH, events_table, tail_table

    with log.engine.connect() as conn:
        archived = list(conn.execute(select(events_table.c.seq)).scalars())
        tail = list(conn.execute(select(tail_table.c.seq)).scalars())
    assert sorted(archived + tail) == list(range(size))
    assert len(archived) >= size // TAIL_FLUSH * TAIL_FLUSH
    assert not tail or max(archived) < min(tail)


def test_concurrent_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'multi.db'}"
    log = AuditLog(make_audit_engine(url), clock=lambda: datetime.now(UTC))
    log.create_schema()
    ctx = multiprocessing.get_context("spawn")
    # 4 × 70 events: past TAIL_FLUSH, so one process moves the tail while others append
    procs = [ctx.Process(target=_process_writer, args=(url, w, 70)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    events = list(log.events())
    assert [e.seq for e in events] == list(range(280))
    assert sorted(e.actor_user or "" for e in events) == sorted(
        f"p-{w}" for w in range(4) for _ in range(70)
    )
    assert log.root() == MemoryTree(e.leaf_hash() for e in events).root()
    _assert_tail_moved(log, 280)


@pytest.mark.parametrize(
    "sql",
    [
        # The archive (events moved out of the tail)
        "UPDATE audit_events SET actor_user = 'someone' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_events",
        # The tail (the newest events)
        "UPDATE audit_tail SET actor_user = 'someone' WHERE seq = 5",
        "DELETE FROM audit_tail WHERE seq = 5",
        "DELETE FROM audit_tail",
        # A forged "move": a different row put in the archive does not let the tail row go
        "INSERT INTO audit_events SELECT seq, time_us, action, 'someone', actor_org, object_type,"
        " object_id, purpose, decision, rule, charter_version, request_id, ip_hash, leaf_hash"
        " FROM audit_tail WHERE seq = 5; DELETE FROM audit_tail WHERE seq = 5",
        "UPDATE audit_nodes SET hash = hash WHERE level = 0",
        "DELETE FROM audit_nodes WHERE level = 0 AND idx = 2",
        "UPDATE audit_checkpoints SET size = 0",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_append_only_triggers_refuse_changes(log: AuditLog, signer: NoteSigner, sql: str) -> None:
    # Given events 0-3 moved into the archive and 4-5 still in the tail
    log.append_many([view(i) for i in range(4)])
    with log.write_transaction() as conn:
        log.flush(conn)
    log.append_many([view(i) for i in range(4, 6)])
    log.checkpoint(signer)
    root = log.root()
    # When any change is attempted, it is refused and nothing changed
    with pytest.raises(DBAPIError), log.engine.begin() as conn:
        for statement in sql.split("; "):
            conn.execute(text(statement))
    assert log.size() == 6 and log.root() == root
    assert [e.seq for e in log.events()] == [0, 1, 2, 3, 4, 5]
    assert [e.actor_user for e in log.events()] == ["u-0001"] * 6


def test_the_tail_moves_into_the_archive_every_flush_and_readers_see_both(
    log: AuditLog,
) -> None:
    from audit.store import TAIL_FLUSH, events_table, tail_table

    def counts() -> tuple[int, int]:
        with log.engine.connect() as conn:
            archive = conn.execute(select(func.count()).select_from(events_table)).scalar()
            tail = conn.execute(select(func.count()).select_from(tail_table)).scalar()
        return int(archive or 0), int(tail or 0)

    log.append_many([view(i) for i in range(TAIL_FLUSH - 1)])
    assert counts() == (0, TAIL_FLUSH - 1)
    assert [e.seq for e in log.events()] == list(range(TAIL_FLUSH - 1))
    log.append(view(TAIL_FLUSH))  # reaches the multiple: the whole tail moves
    assert counts() == (TAIL_FLUSH, 0)
    log.append_many([view(i) for i in range(3)])
    assert counts() == (TAIL_FLUSH, 3)
    events = list(log.events())
    assert [e.seq for e in events] == list(range(TAIL_FLUSH + 3))
    assert log.event(TAIL_FLUSH + 1) == events[TAIL_FLUSH + 1]  # a tail event, by number
    assert log.event(5) == events[5]  # an archived one
    assert log.root() == MemoryTree(e.leaf_hash() for e in events).root()


def test_postgres_refuses_truncate(log: AuditLog) -> None:
    if log.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE bypasses row triggers only on PostgreSQL")
    log.append(view(1))
    with pytest.raises(DBAPIError), log.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_events"))
    assert log.size() == 1


def test_sqlite_durability_settings(tmp_path: Path) -> None:
    engine = make_audit_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_unwritable_store_fails_closed(tmp_path: Path, clock: Clock) -> None:
    log = AuditLog(make_audit_engine(f"sqlite:///{tmp_path / 'gone' / 'a.db'}"), clock=clock)
    with pytest.raises(LogUnavailable):
        log.append(view(1))


def test_missing_schema_fails_closed(engine: Engine, clock: Clock) -> None:
    with pytest.raises(LogUnavailable):
        AuditLog(engine, clock=clock).append(view(1))


def test_events_round_trip_through_the_store(log: AuditLog) -> None:
    new = NewEvent(action=Action.AUTH_LOGIN_REFUSED, ip_hash="ab" * 32)
    stored = log.append(new)
    assert log.event(0) == stored
    assert isinstance(stored, Event) and stored.actor_user is None


def test_the_embedded_writer_connection_is_durable(tmp_path: Path, clock: Clock) -> None:
    # Appends bypass the pool: their own connection must carry the same durability pragmas.
    log = AuditLog(make_audit_engine(f"sqlite:///{tmp_path / 'w.db'}"), clock=clock)
    log.create_schema()
    log.append(view(1))
    writer = log._sqlite_writer
    assert writer is not None
    conn = writer.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert not conn.in_transaction  # committed, nothing left open


def test_a_broken_writer_connection_fails_closed_then_is_replaced(
    tmp_path: Path, clock: Clock
) -> None:
    log = AuditLog(make_audit_engine(f"sqlite:///{tmp_path / 'b.db'}"), clock=clock)
    log.create_schema()
    log.append_many([view(i) for i in range(3)])
    writer = log._sqlite_writer
    assert writer is not None
    writer.connection().close()  # e.g. the file vanished under a long-lived connection
    with pytest.raises(LogUnavailable):
        log.append(view(3))
    assert log.size() == 3  # nothing half-written
    log.append(view(4))
    assert [e.seq for e in log.events()] == [0, 1, 2, 3]
    assert log.root() == MemoryTree(e.leaf_hash() for e in log.events()).root()


def _forked_writer(log: AuditLog) -> None:
    for i in range(5):
        log.append(view(i, user="child"))


def test_a_forked_child_appends_on_its_own_connection(tmp_path: Path) -> None:
    # Gunicorn and Celery fork after the app (and its log) exist: a SQLite connection must not
    # cross the fork, so the child opens its own and the parent's keeps working.
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    log = AuditLog(make_audit_engine(url), clock=lambda: datetime.now(UTC))
    log.create_schema()
    log.append(view(0, user="parent"))
    child = multiprocessing.get_context("fork").Process(target=_forked_writer, args=(log,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    log.append(view(1, user="parent"))
    events = list(log.events())
    assert [e.seq for e in events] == list(range(7))
    assert [e.actor_user for e in events] == ["parent", *["child"] * 5, "parent"]
    assert log.root() == MemoryTree(e.leaf_hash() for e in events).root()


def test_the_writer_waits_for_sqlite_no_later_than_the_deadline(tmp_path: Path) -> None:
    # The append path sets SQLite's busy timeout to the time left, rounded down, and skips the
    # statement when that did not change (nearly every append).
    writer = _SqliteWriter(make_audit_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    conn = sqlite3.connect(tmp_path / "b.db")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    deadline = time.monotonic() + 5.0
    writer.wait_at_most(conn, deadline)
    (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    assert 5000 - _BUSY_STEP_MS <= timeout <= 5000 and timeout % _BUSY_STEP_MS == 0
    statements.clear()
    writer.wait_at_most(conn, deadline)
    assert statements == []  # unchanged: no statement
    writer.wait_at_most(conn, time.monotonic() + 0.2)
    (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    assert 1 <= timeout <= 200
    writer.wait_at_most(conn, time.monotonic() - 1)  # past: the least SQLite takes
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (1,)
    conn.close()
