"""The durable audit log: SQLAlchemy Core tables in their own ``MetaData`` and :class:`AuditLog`.

The audit log lives in its own database (DESIGN §8), so it has its own ``MetaData`` and engine
(:func:`make_audit_engine`). Core, not the ORM: appending is on every request's hot path.

Tables
------
``audit_events``       one row per event: ``seq`` (= Merkle leaf index, from 0), every field,
                       the leaf hash, with the DPO's search indexes. Append-only.
``audit_tail``         the newest events, same columns, no secondary index: appends land here
                       and every ``TAIL_FLUSH`` events the tail moves into ``audit_events`` in
                       the appending transaction (sorted inserts into the indexes, once per
                       batch, instead of four random index inserts per request). Rows may only
                       leave it for an identical row of ``audit_events``.
``audit_all_events``   a view, ``audit_events UNION ALL audit_tail``: what every reader reads.
``audit_nodes``        one row per *complete* subtree ``(level, idx, hash)``, leaves included
                       (level 0). Append-only and never pruned (hashes only, no personal data),
                       so the root at any size and any proof need O(log n) row lookups.
``audit_checkpoints``  signed checkpoint notes (see :mod:`audit.checkpoint`). Append-only.
``audit_segments``     signed records of retention cuts (see :mod:`audit.retention`).
                       Append-only; the only thing that lets old events be deleted.
``audit_witnesses``    the registry of accepted witnesses: one row per addition or removal of
                       a witness key (vkey). Append-only: the registry is each key's last row.
``audit_cosignatures`` verified witness cosignatures (c2sp.org/tlog-cosignature lines), one per
                       checkpoint and witness key. Append-only.

Append-only is enforced by triggers on SQLite and PostgreSQL: UPDATE is always refused,
DELETE of an event is refused unless a segment record covers its ``seq``, and DELETE from the
tail is refused unless the very same row is already in ``audit_events``. In production the
application's PostgreSQL role should further be granted only ``INSERT, SELECT`` on these tables
(and ``DELETE`` on ``audit_events`` only for the role that runs retention), e.g.::

    REVOKE ALL ON audit_events, audit_tail, audit_nodes, audit_checkpoints, audit_segments,
        audit_witnesses, audit_cosignatures FROM maillon_app;
    GRANT INSERT, SELECT ON audit_events, audit_tail, audit_nodes, audit_checkpoints,
        audit_segments, audit_witnesses, audit_cosignatures TO maillon_app;
    GRANT DELETE ON audit_tail TO maillon_app;  -- moves only, enforced by the trigger
    GRANT SELECT ON audit_all_events TO maillon_app;

Writers
-------
Every append goes through one path that serialises sequence assignment: SQLite
``BEGIN IMMEDIATE`` (the database write lock, taken before the size is read) or, on PostgreSQL,
a transaction-level advisory lock. The size is then read from ``audit_nodes`` and the new rows
inserted (into the tail, moved to the archive at each multiple of ``TAIL_FLUSH``) in the same
transaction, so concurrent writers in any number of threads or processes
get gap-free, unique sequence numbers. :meth:`AuditLog.append` returns only after COMMIT;
with SQLite in WAL mode and ``synchronous=FULL`` that COMMIT is durable across power loss.
"""

from __future__ import annotations

import fcntl
import operator
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from audit import merkle
from audit.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    NoteSigner,
    SignatureLine,
    SignedNote,
    read_cosignature,
)
from audit.errors import (
    AuditError,
    CheckpointError,
    CosignatureRefused,
    LogUnavailable,
    ProofError,
    WitnessRegistryError,
)
from audit.events import Event, NewEvent, from_micros, to_micros

metadata = MetaData()

# INTEGER (not BIGINT) on SQLite makes the primary key an alias of the rowid: no second index.
_Seq = BigInteger().with_variant(Integer(), "sqlite")


def _event_columns() -> list[Column[Any]]:
    return [
        Column("seq", _Seq, primary_key=True, autoincrement=False),
        Column("time_us", BigInteger, nullable=False),
        Column("action", String(64), nullable=False),
        Column("actor_user", String(128), nullable=True),
        Column("actor_org", String(128), nullable=False),
        Column("object_type", String(32), nullable=False),
        Column("object_id", String(128), nullable=False),
        Column("purpose", String(128), nullable=False),
        Column("decision", String(8), nullable=False),
        Column("rule", String(128), nullable=False),
        Column("charter_version", String(128), nullable=False),
        Column("request_id", String(128), nullable=False),
        Column("ip_hash", String(64), nullable=False),
        Column("leaf_hash", LargeBinary(32), nullable=False),
    ]


events_table = Table("audit_events", metadata, *_event_columns())
tail_table = Table("audit_tail", metadata, *_event_columns())
# Every reader reads the view (archive and tail): it is created by create_schema, not by
# create_all, hence its own MetaData.
events_view = Table("audit_all_events", MetaData(), *_event_columns())
TAIL_FLUSH = 256
# The DPO console searches by object, by actor and by period (DESIGN §8).
Index("ix_audit_events_object", events_table.c.object_id, events_table.c.seq)
Index("ix_audit_events_user", events_table.c.actor_user, events_table.c.seq)
Index("ix_audit_events_org", events_table.c.actor_org, events_table.c.seq)
Index("ix_audit_events_time", events_table.c.time_us)

nodes_table = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("id", _Seq, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False, index=True),
    Column("root", LargeBinary(32), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
)

segments_table = Table(
    "audit_segments",
    metadata,
    Column("cut", BigInteger, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
)

witnesses_table = Table(
    "audit_witnesses",
    metadata,
    Column("id", _Seq, primary_key=True, autoincrement=True),
    Column("vkey", String(512), nullable=False),
    # True: the witness was accepted then; False: removed. A key's last row says which it is.
    Column("accepted", Boolean, nullable=False),
    Column("time_us", BigInteger, nullable=False),
)

cosignatures_table = Table(
    "audit_cosignatures",
    metadata,
    Column(
        "checkpoint_id",
        _Seq,
        ForeignKey("audit_checkpoints.id"),
        primary_key=True,
        autoincrement=False,
    ),
    # The witness's verifier key (vkey), as the registry holds it.
    Column("witness", String(512), primary_key=True),
    # The signature line exactly as the witness made it: exports append it to the note.
    Column("line", Text, nullable=False),
    # The cosignature's own timestamp (POSIX seconds, signed by the witness).
    Column("cosigned_at", BigInteger, nullable=False),
    Column("time_us", BigInteger, nullable=False),
)

# At most this many witnesses are accepted at once, and a checkpoint carries at most
# MAX_COSIGNATURES cosignatures: with the log's own signature a cosigned note then stays within
# the 32 signature lines a note may have (audit.checkpoint), whatever witnesses came and went.
MAX_WITNESSES = 16
MAX_COSIGNATURES = 31

_APPEND_ONLY = (
    "audit_events",
    "audit_tail",
    "audit_nodes",
    "audit_checkpoints",
    "audit_segments",
    "audit_witnesses",
    "audit_cosignatures",
)
# Tables whose DELETE is guarded by a condition rather than always refused.
_GUARDED_DELETE = ("audit_events", "audit_tail")
_COLUMN_NAMES = tuple(c.name for c in events_table.columns)
# A tail row may be deleted only once the very same event is in the archive (a move).
_MOVED = " AND ".join(f"e.{name} IS OLD.{name}" for name in _COLUMN_NAMES)
# Column and table names here and in the DDL below are this module's constants, never input.
_VIEW_SELECT = (
    f"SELECT {', '.join(_COLUMN_NAMES)} FROM audit_events "  # noqa: S608
    f"UNION ALL SELECT {', '.join(_COLUMN_NAMES)} FROM audit_tail"
)

_SQLITE_TRIGGERS = [
    *(
        f"CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} "
        f"BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"
        for t in _APPEND_ONLY
    ),
    *(
        f"CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} "
        f"BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"
        for t in _APPEND_ONLY
        if t not in _GUARDED_DELETE
    ),
    # Events may only be deleted below a signed retention cut (audit.retention).
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "WHEN OLD.seq >= COALESCE((SELECT MAX(cut) FROM audit_segments), 0) "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only above the retention cut'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_tail_no_delete BEFORE DELETE ON audit_tail "  # noqa: S608
    f"WHEN NOT EXISTS (SELECT 1 FROM audit_events e WHERE {_MOVED}) "
    "BEGIN SELECT RAISE(ABORT, 'audit_tail rows only move into audit_events'); END",
    f"CREATE VIEW IF NOT EXISTS audit_all_events AS {_VIEW_SELECT}",
]

_PG_TAIL_GUARD = f"""CREATE OR REPLACE FUNCTION audit_guard_tail_delete() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM audit_events e
                        WHERE {_MOVED.replace(" IS ", " IS NOT DISTINCT FROM ")}) THEN
           RAISE EXCEPTION 'audit_tail rows only move into audit_events';
         END IF;
         RETURN OLD;
       END $$"""  # noqa: S608

_PG_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION audit_forbid_change() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$""",
    """CREATE OR REPLACE FUNCTION audit_guard_event_delete() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.seq >= COALESCE((SELECT MAX(cut) FROM audit_segments), 0) THEN
           RAISE EXCEPTION 'audit_events is append-only above the retention cut';
         END IF;
         RETURN OLD;
       END $$""",
    _PG_TAIL_GUARD,
    *(
        f"CREATE OR REPLACE TRIGGER {t}_no_update BEFORE UPDATE ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_forbid_change()"
        for t in _APPEND_ONLY
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {t}_no_delete BEFORE DELETE ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION audit_forbid_change()"
        for t in _APPEND_ONLY
        if t not in _GUARDED_DELETE
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION audit_forbid_change()"
        for t in _APPEND_ONLY
    ),
    "CREATE OR REPLACE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_guard_event_delete()",
    "CREATE OR REPLACE TRIGGER audit_tail_no_delete BEFORE DELETE ON audit_tail "
    "FOR EACH ROW EXECUTE FUNCTION audit_guard_tail_delete()",
    f"CREATE OR REPLACE VIEW audit_all_events AS {_VIEW_SELECT}",
]

# Arbitrary constant naming the audit writer lock among the database's advisory locks.
_PG_LOCK_KEY = 0x4D41494C  # "MAIL"
_WRITE_OPTION = "maillon_audit_write"
# Seconds an append waits for the writer lock (configurable: MAILLON_AUDIT_WRITE_TIMEOUT_SECONDS).
DEFAULT_WRITE_TIMEOUT = 5.0
_BATCH = 1000


def _prepare_sqlite(dbapi_connection: Any) -> None:
    """Pragmas of every audit store connection (pooled, or the dedicated writer's)."""
    # Transactions are opened explicitly (BEGIN / BEGIN IMMEDIATE), never by pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    # A REPLACE must not delete a logged row behind the append-only triggers' back.
    cursor.execute("PRAGMA recursive_triggers=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def make_audit_engine(url: str, *, timeout: float | None = None, **kwargs: Any) -> Engine:
    """An engine for the audit store.

    For SQLite files: WAL journal, ``synchronous=FULL`` (an acknowledged append survives power
    loss), a generous busy timeout (writers queue instead of failing), and transactions opened
    by SQLAlchemy rather than the driver, so that write transactions can start with
    ``BEGIN IMMEDIATE``. Other URLs (``postgresql+psycopg://…``) are passed through; with
    ``timeout`` (seconds), waiting for a pooled connection, connecting, and data left
    unacknowledged by a server that stopped answering are bounded too (the server-side
    timeouts of an append cannot act when the network is what stalls).
    """
    if not url.startswith("sqlite"):
        if timeout is not None and url.startswith("postgresql"):
            seconds = max(1, int(timeout))
            kwargs.setdefault("pool_timeout", seconds)
            server_args: dict[str, Any] = {
                "connect_timeout": seconds,
                "tcp_user_timeout": seconds * 1000,
            }
            server_args.update(kwargs.pop("connect_args", {}))
            kwargs["connect_args"] = server_args
        return create_engine(url, pool_pre_ping=True, **kwargs)
    connect_args = {"timeout": 60.0, "check_same_thread": False}
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _prepare_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so reading the size and inserting the next
        # sequence number happen under one lock; readers stay deferred (WAL snapshots).
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def event_from_row(row: Any) -> Event:
    """The :class:`Event` of an ``audit_events`` row."""
    return Event(
        seq=row.seq,
        time=from_micros(row.time_us),
        action=row.action,
        actor_user=row.actor_user,
        actor_org=row.actor_org,
        object_type=row.object_type,
        object_id=row.object_id,
        purpose=row.purpose,
        decision=row.decision,
        rule=row.rule,
        charter_version=row.charter_version,
        request_id=row.request_id,
        ip_hash=row.ip_hash,
    )


_NEW_FIELDS = tuple(f.name for f in fields(NewEvent))
_new_values = operator.attrgetter(*_NEW_FIELDS)  # one C call for the row's middle columns

# Built once: the append path runs them on every audited request.
_SIZE_QUERY = select(func.max(nodes_table.c.idx)).where(nodes_table.c.level == 0)
_INSERT_EVENTS = insert(tail_table)
_INSERT_NODES = insert(nodes_table)
# The embedded store's append path goes straight to the driver (DESIGN §11: hot paths use Core
# or the driver): per append, SQLAlchemy's execution machinery costs about as much CPU as the
# fsync itself, and audit appends sit on every request.
_EVENT_COLUMNS = tuple(c.name for c in events_table.columns)
# Table and column names below are this module's constants, never input: no injection vector.
_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO {tail_table.name} ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in _EVENT_COLUMNS)})"
)
_SQLITE_SIZE = f"SELECT max(idx) FROM {nodes_table.name} WHERE level = 0"  # noqa: S608
_SQLITE_INSERT_NODES = f"INSERT INTO {nodes_table.name} (level, idx, hash) VALUES (?, ?, ?)"  # noqa: S608
# Moving the tail: sorted inserts into the archive's indexes, then the tail is emptied (the
# trigger checks each deleted row arrived). Same statements on both databases.
_FLUSH_TAIL = (
    f"INSERT INTO audit_events ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(_EVENT_COLUMNS)} FROM audit_tail ORDER BY seq"
)
_EMPTY_TAIL = "DELETE FROM audit_tail"
_SQLITE_NODE = f"SELECT hash FROM {nodes_table.name} WHERE level = ? AND idx = ?"  # noqa: S608
_NODE_COLUMNS = ("level", "idx", "hash")
# Event rows are built as tuples in this column order: seq, time, the NewEvent fields, leaf.
assert ("seq", "time_us", *_NEW_FIELDS, "leaf_hash") == _EVENT_COLUMNS


def _crosses_flush(size: int, count: int) -> bool:
    """Whether appending ``count`` events to a log of ``size`` reaches a multiple of
    ``TAIL_FLUSH``: the size is read under the writer lock, so whichever process or thread
    makes that append moves the tail, and a flush is never skipped for long."""
    return (size + count) // TAIL_FLUSH != size // TAIL_FLUSH


@dataclass(frozen=True, slots=True)
class StoreSpace:
    """Room left for the audit store: ``free`` and ``total`` bytes of the volume holding it."""

    free: int
    total: int


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A witness's cosignature, verified, on a checkpoint this log signed and stored."""

    checkpoint: Checkpoint
    checkpoint_id: int
    witness: CosignatureVerifier
    line: SignatureLine
    time: datetime  # the witness's own timestamp, as it signed it


def _note_text(note: str) -> str:
    """The signed text of a stored note (what precedes its signature lines)."""
    return note[: note.rfind("\n\n") + 1]


class _Ticket:
    """One caller's events waiting for a group commit, and their outcome."""

    __slots__ = ("done", "error", "events", "result")

    def __init__(self, events: tuple[NewEvent, ...]) -> None:
        self.events = events
        self.result: list[Event] | None = None
        self.error: BaseException | None = None
        self.done = False

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True


class _SqliteWriter:
    """The embedded store's one writer connection, kept outside SQLAlchemy's pool.

    Appends sit on every audited request. On SQLite, checking a connection out of the pool and
    SQLAlchemy's begin/commit events and execution contexts cost about as much CPU as the
    durable commit itself, so the append path talks to the driver over one connection, used
    only by the thread holding the log's writer turn. It is opened through the engine (same
    URL, same pragmas), reopened in a forked child (a SQLite connection must not cross a fork)
    and after any error, so nothing half-done outlives a failed append.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        database = engine.url.database
        # Appending processes queue on this file's lock (see turn()); in-memory stores have
        # one process only.
        self._lock_path = f"{database}.append-lock" if database and database != ":memory:" else None
        self._lock_fd: int | None = None
        self._lock_pid = 0
        self._busy_ms = 0  # the busy timeout set on the connection, 0 when not set yet

    def wait_at_most(self, conn: sqlite3.Connection, deadline: float) -> None:
        """Have SQLite wait for its lock no later than ``deadline`` (``time.monotonic()``).

        The time left is rounded down to a multiple of :data:`_BUSY_STEP_MS` and the pragma
        runs only when that changes: an append far from its deadline (nearly all of them) then
        skips a statement, and a wait still never outlasts the deadline (it may end up to one
        step before it).
        """
        left_ms = int((deadline - time.monotonic()) * 1000)
        wanted = max(1, left_ms - left_ms % _BUSY_STEP_MS)
        if wanted != self._busy_ms:
            conn.execute(f"PRAGMA busy_timeout={wanted}")
            self._busy_ms = wanted

    @contextmanager
    def turn(self, deadline: float) -> Iterator[None]:
        """This process's turn to append, across processes (gunicorn workers, Celery).

        SQLite's own lock would serialise them too, but a process that finds the database
        locked sleeps in its busy handler (1 ms, then 2, 5, 10…), while the append it waits for
        takes a fraction of a millisecond: under load each append then paid a sleep. A blocking
        ``flock`` wakes the next process as soon as the lock is released. The SQLite lock still
        guards correctness (retention and writers that skip this turn).

        The wait ends at ``deadline`` (``time.monotonic()``): a process stalled while holding
        the turn must not hold every other request until it recovers (:class:`LogUnavailable`,
        503).
        """
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None or self._lock_pid != os.getpid():
            # A descriptor inherited through a fork would share its lock with the parent.
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._lock_pid = os.getpid()
        _flock_until(self._lock_fd, deadline)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def connection(self) -> sqlite3.Connection:
        """The open writer connection (opened on first use)."""
        if self._conn is None or self._pid != os.getpid():
            proxy = self._engine.raw_connection()  # runs the engine's connect hook
            conn = proxy.driver_connection
            proxy.detach()  # ours from now on: never handed back to the pool
            assert isinstance(conn, sqlite3.Connection)
            self._conn, self._pid = conn, os.getpid()
            self._busy_ms = 0  # the engine's connect hook set its own
            weakref.finalize(self, _close_quietly, conn)
        return self._conn

    def reset(self) -> None:
        """Close the connection (after an error); the next append opens a fresh one."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            _close_quietly(conn)


# Granularity of the busy timeout the append path sets (see _SqliteWriter.wait_at_most).
_BUSY_STEP_MS = 50


def _flock_until(fd: int, deadline: float) -> None:
    """Take an exclusive ``flock`` on ``fd`` before ``deadline`` (``time.monotonic()``), or
    raise :class:`LogUnavailable`. Polls a non-blocking lock: ``flock`` itself has no timeout,
    and a signal-based one would not be safe in a threaded web worker."""
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LogUnavailable("audit store busy: no writer turn in time") from None
        # Short pauses: the turn changes hands within a millisecond, and a long pause would let
        # later arrivals overtake a waiter again and again (polling is not first come, first
        # served).
        time.sleep(pause)
        pause = min(pause * 2, 0.001)


def _close_quietly(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        conn.close()


class AuditLog:
    """The append-only, Merkle-tree audit log over one database.

    ``clock`` returns the current time as an aware datetime; it is injected so tests and
    replays control time. One instance may be shared by threads; several processes may hold
    their own instances on the same database.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})
        # How long an append waits for the writer lock before giving up (fail fast: a locked
        # or stalled store answers 503 in seconds instead of holding the request).
        self._write_timeout = write_timeout
        self._sqlite_writer = None if self._postgres else _SqliteWriter(engine)
        # Right edge of the tree at the last size this instance committed. Only a hint: it is
        # used only when the size read under the write lock still matches.
        self._frontier: merkle.Frontier | None = None
        self._schema_lock = threading.Lock()
        # Group commit: appends queue here; one thread at a time commits the whole queue.
        self._queue: list[_Ticket] = []
        self._queue_lock = threading.Lock()
        self._leader_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The audit database engine."""
        return self._engine

    @property
    def clock(self) -> Callable[[], datetime]:
        """The injected clock (retention and exports read time from it too)."""
        return self._clock

    def space(self) -> StoreSpace | None:
        """Room on the volume holding the embedded store's files, or ``None`` when unknown
        (a PostgreSQL server's disk is watched by its operators; an in-memory store has none).

        The log is fail-closed: once its volume is full every audited request answers 503,
        so the hub warns well before (``/healthz``, the DPO console).
        """
        database = self._engine.url.database
        if self._postgres or not database or database == ":memory:":
            return None
        stats = os.statvfs(os.path.dirname(os.path.abspath(database)))
        # f_bavail: what an unprivileged process may still write (root's reserve excluded).
        block = stats.f_frsize
        return StoreSpace(free=stats.f_bavail * block, total=stats.f_blocks * block)

    # --- schema --------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create tables, indexes and append-only triggers if missing (idempotent)."""
        with self._schema_lock:
            try:
                with self._writer.begin() as conn:
                    if self._postgres:
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                    metadata.create_all(conn, checkfirst=True)
                    for ddl in _PG_TRIGGERS if self._postgres else _SQLITE_TRIGGERS:
                        conn.exec_driver_sql(ddl)
            except SQLAlchemyError as exc:
                raise LogUnavailable(f"cannot create the audit schema: {exc}") from exc

    # --- writing -------------------------------------------------------------------------

    @contextmanager
    def write_transaction(self, *, timeout: float | None = None) -> Iterator[Connection]:
        """A transaction holding the single writer lock (used by appends and retention).

        ``timeout``: on PostgreSQL, how long to wait for the lock and run each statement
        before giving up (appends pass the write timeout; retention waits as long as needed).
        """
        with self._writer.begin() as conn:
            if self._postgres:
                if timeout is not None:
                    ms = max(1, int(timeout * 1000))
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            yield conn

    def append(self, new: NewEvent) -> Event:
        """Append one event; it is committed and durable when this returns.

        Raises :class:`LogUnavailable` if it could not be written: the caller must then refuse
        the audited action (fail closed).
        """
        return self.append_many((new,))[0]

    def append_many(self, news: Sequence[NewEvent]) -> list[Event]:
        """Append several events in one transaction (one fsync), in order and contiguous.

        Threads appending through the same instance are group-committed: whoever holds the
        instance's writer turn commits every event queued meanwhile in one transaction, and
        each caller returns once the transaction holding its events has committed. The
        database lock still serialises this instance against other processes.
        """
        if not news:
            return []
        for new in news:
            if not isinstance(new, NewEvent):
                raise TypeError("append takes NewEvent records")
        ticket = _Ticket(tuple(news))
        # One deadline for the whole append (waiting for the group's leader, the turn lock, the
        # database lock): a stalled store answers within the write timeout, not a multiple.
        deadline = time.monotonic() + self._write_timeout
        with self._queue_lock:
            self._queue.append(ticket)
        if not self._leader_lock.acquire(timeout=self._write_timeout):
            with self._queue_lock:
                if any(t is ticket for t in self._queue):  # nobody took it: give up cleanly
                    self._queue = [t for t in self._queue if t is not ticket]
                    raise LogUnavailable("audit store busy: no writer turn in time")
            # A leader took this ticket with its batch; its commit ends by its own deadline.
            self._leader_lock.acquire()
        try:
            if not ticket.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_batch(batch, deadline)
        finally:
            self._leader_lock.release()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None  # done without error means committed
        return ticket.result

    def _commit_batch(self, batch: list[_Ticket], deadline: float) -> None:
        news = [new for ticket in batch for new in ticket.events]
        try:
            if self._sqlite_writer is not None:
                appended, frontier = self._commit_sqlite(self._sqlite_writer, news, deadline)
            else:
                left = max(0.001, deadline - time.monotonic())
                with self.write_transaction(timeout=left) as conn:
                    appended, frontier = self._append_locked(conn, news)
        except AuditError as exc:
            for ticket in batch:
                ticket.fail(type(exc)(*exc.args))
            return
        except SQLAlchemyError as exc:
            for ticket in batch:
                ticket.fail(LogUnavailable(f"audit event not written: {exc}"))
            return
        except BaseException:
            for ticket in batch:
                ticket.fail(LogUnavailable("audit append interrupted"))
            raise
        self._frontier = frontier
        offset = 0
        for ticket in batch:
            ticket.result = appended[offset : offset + len(ticket.events)]
            ticket.done = True
            offset += len(ticket.events)

    def _commit_sqlite(
        self, writer: _SqliteWriter, news: Sequence[NewEvent], deadline: float
    ) -> tuple[list[Event], merkle.Frontier]:
        """One durable append transaction on the embedded store, through the driver."""
        try:
            with writer.turn(deadline):
                return self._commit_sqlite_turn(writer, news, deadline)
        except OSError as exc:  # the lock file cannot be opened or locked
            raise LogUnavailable(f"audit event not written: {exc}") from exc

    def _commit_sqlite_turn(
        self, writer: _SqliteWriter, news: Sequence[NewEvent], deadline: float
    ) -> tuple[list[Event], merkle.Frontier]:
        try:
            conn = writer.connection()
            # SQLite's lock is waited for only until the deadline (another process that skips
            # the turn lock, retention, may hold it); pooled connections keep the long timeout.
            writer.wait_at_most(conn, deadline)
            # The write lock first, so the size read and the inserts are one atomic step.
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(_SQLITE_SIZE).fetchone()
                size = 0 if row is None or row[0] is None else int(row[0]) + 1
                appended, frontier, event_rows, node_rows = self._rows(
                    size, self._frontier_at(size, lambda: self._sqlite_frontier(conn, size)), news
                )
                conn.executemany(_SQLITE_INSERT_EVENTS, event_rows)
                conn.executemany(_SQLITE_INSERT_NODES, node_rows)
                if _crosses_flush(size, len(news)):
                    conn.execute(_FLUSH_TAIL)
                    conn.execute(_EMPTY_TAIL)
                conn.execute("COMMIT")  # durable on return: WAL with synchronous=FULL
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            writer.reset()
            raise LogUnavailable(f"audit event not written: {exc}") from exc
        return appended, frontier

    @staticmethod
    def flush(conn: Connection) -> None:
        """Move the tail into the indexed archive, inside the caller's write transaction.

        Appends do it every ``TAIL_FLUSH`` events; retention does it before cutting. Readers
        never need it: they read the union of both.
        """
        conn.exec_driver_sql(_FLUSH_TAIL)
        conn.exec_driver_sql(_EMPTY_TAIL)

    def _sqlite_frontier(self, conn: sqlite3.Connection, size: int) -> list[bytes]:
        keys = merkle.frontier_keys(size)
        found: dict[merkle.Key, bytes] = {}
        for level, idx in keys:
            row = conn.execute(_SQLITE_NODE, (level, idx)).fetchone()
            if row is None:
                raise ProofError("the audit store is missing tree nodes")
            found[(level, idx)] = bytes(row[0])
        return [found[k] for k in keys]

    def _frontier_at(self, size: int, fetch: Callable[[], list[bytes]]) -> merkle.Frontier:
        """The tree's right edge at ``size``: this instance's cached one when still current."""
        cached = self._frontier
        if cached is not None and cached.size == size:
            return cached.copy()
        return merkle.Frontier(size, fetch())

    def _rows(
        self, size: int, frontier: merkle.Frontier, news: Sequence[NewEvent]
    ) -> tuple[list[Event], merkle.Frontier, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Events numbered from ``size``, their rows and the tree nodes they complete."""
        appended: list[Event] = []
        event_rows: list[tuple[Any, ...]] = []
        node_rows: list[tuple[Any, ...]] = []
        for offset, new in enumerate(news):
            ev = Event.from_new(size + offset, self._clock(), new)
            leaf = ev.leaf_hash()
            # Same order as _EVENT_COLUMNS.
            event_rows.append((ev.seq, to_micros(ev.time), *_new_values(new), leaf))
            node_rows.extend(frontier.append(leaf))
            appended.append(ev)
        return appended, frontier, event_rows, node_rows

    def _append_locked(
        self, conn: Connection, news: Sequence[NewEvent]
    ) -> tuple[list[Event], merkle.Frontier]:
        """Append inside a SQLAlchemy write transaction (PostgreSQL, and retention's prune)."""
        size = self._size(conn)
        frontier = self._frontier_at(size, lambda: self._fetch_frontier(conn, size))
        appended, frontier, event_rows, node_rows = self._rows(size, frontier, news)
        conn.execute(
            _INSERT_EVENTS, [dict(zip(_EVENT_COLUMNS, r, strict=True)) for r in event_rows]
        )
        if _crosses_flush(size, len(news)):
            self.flush(conn)
        conn.execute(_INSERT_NODES, [dict(zip(_NODE_COLUMNS, r, strict=True)) for r in node_rows])
        return appended, frontier

    # --- reading the tree ----------------------------------------------------------------

    @staticmethod
    def _size(conn: Connection) -> int:
        last = conn.execute(_SIZE_QUERY).scalar()
        return 0 if last is None else int(last) + 1

    @staticmethod
    def _fetch_nodes(conn: Connection, keys: Iterable[merkle.Key]) -> dict[merkle.Key, bytes]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        by_level: dict[int, list[int]] = {}
        for level, idx in wanted:
            by_level.setdefault(level, []).append(idx)
        c = nodes_table.c
        # One equality-and-IN term per level: SQLite answers each with a primary-key search,
        # whereas a row-value IN over (level, idx) scans the whole table.
        rows = conn.execute(
            select(c.level, c.idx, c.hash).where(
                or_(*(and_(c.level == lvl, c.idx.in_(ids)) for lvl, ids in by_level.items()))
            )
        )
        found = {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}
        if len(found) != len(wanted):
            raise ProofError("the audit store is missing tree nodes")
        return found

    def _fetch_frontier(self, conn: Connection, size: int) -> list[bytes]:
        keys = merkle.frontier_keys(size)
        nodes = self._fetch_nodes(conn, keys)
        return [nodes[k] for k in keys]

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # One transaction per read so a proof and the size it is for come from one snapshot.
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise LogUnavailable(f"audit store unreadable: {exc}") from exc

    def _resolve_size(self, conn: Connection, size: int | None) -> int:
        current = self._size(conn)
        if size is None:
            return current
        if not 0 <= size <= current:
            raise ProofError(f"the log has {current} events, not {size}")
        return size

    def size(self) -> int:
        """Number of events ever appended (pruned ones included: sequence numbers are kept)."""
        with self._read() as conn:
            return self._size(conn)

    def root(self, size: int | None = None) -> bytes:
        """Merkle root of the first ``size`` events (all by default)."""
        with self._read() as conn:
            n = self._resolve_size(conn, size)
            nodes = self._fetch_nodes(conn, merkle.frontier_keys(n))
            return merkle.tree_root_at(n, lambda level, idx: nodes[(level, idx)])

    def frontier(self, size: int) -> list[bytes]:
        """The complete-subtree hashes making up the tree of ``size`` events."""
        with self._read() as conn:
            return self._fetch_frontier(conn, self._resolve_size(conn, size))

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """Audit path of event ``seq`` in the tree of ``size`` events (all by default)."""
        with self._read() as conn:
            n = self._resolve_size(conn, size)
            nodes = self._fetch_nodes(conn, merkle.inclusion_proof_keys(seq, n))
            return merkle.inclusion_proof(seq, n, lambda level, idx: nodes[(level, idx)])

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """Proof that the tree of ``old`` events is a prefix of the tree of ``new``."""
        with self._read() as conn:
            n = self._resolve_size(conn, new)
            nodes = self._fetch_nodes(conn, merkle.consistency_proof_keys(old, n))
            return merkle.consistency_proof(old, n, lambda level, idx: nodes[(level, idx)])

    def leaf_hash(self, seq: int) -> bytes:
        """The stored leaf hash of event ``seq`` (kept even after the event is pruned)."""
        with self._read() as conn:
            return self._fetch_nodes(conn, [(0, seq)])[(0, seq)]

    # --- reading events ------------------------------------------------------------------

    def event(self, seq: int) -> Event:
        """The event at ``seq``; :class:`AuditError` if it does not exist or was pruned."""
        with self._read() as conn:
            row = conn.execute(select(events_view).where(events_view.c.seq == seq)).first()
        if row is None:
            raise AuditError(f"no event {seq}")
        return event_from_row(row)

    def events(
        self, start: int = 0, stop: int | None = None, *, batch: int = _BATCH
    ) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in order, fetched in keyset batches."""
        for row in self.event_rows(start, stop, batch=batch):
            yield event_from_row(row)

    def event_rows(
        self, start: int = 0, stop: int | None = None, *, batch: int = _BATCH
    ) -> Iterator[Any]:
        """Raw rows of :meth:`events` (with the stored ``leaf_hash``), for exports."""
        cursor = start
        while True:
            query = select(events_view).where(events_view.c.seq >= cursor)
            if stop is not None:
                query = query.where(events_view.c.seq < stop)
            with self._read() as conn:
                rows = conn.execute(query.order_by(events_view.c.seq).limit(batch)).all()
            yield from rows
            if len(rows) < batch:
                return
            cursor = int(rows[-1].seq) + 1

    # --- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, signer: NoteSigner) -> SignedNote:
        """Sign and store a checkpoint of the current tree; return its signed note."""
        with self._read() as conn:
            size = self._size(conn)
            nodes = self._fetch_nodes(conn, merkle.frontier_keys(size))
            root = merkle.tree_root_at(size, lambda level, idx: nodes[(level, idx)])
        checkpoint = Checkpoint(signer.name, size, root, self._clock())
        note = signer.sign_checkpoint(checkpoint)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(checkpoints_table).values(
                        size=size, root=root, time_us=to_micros(checkpoint.time), note=str(note)
                    )
                )
        except SQLAlchemyError as exc:
            raise LogUnavailable(f"checkpoint not stored: {exc}") from exc
        return note

    def checkpoints(self, *, since_size: int = 0, with_cosignatures: bool = False) -> list[str]:
        """Stored checkpoint notes with ``size >= since_size``, oldest first.

        ``with_cosignatures``: each note with the cosignature lines stored for it appended
        (in the order they were stored), as exports carry them.
        """
        c = checkpoints_table.c
        with self._read() as conn:
            rows = conn.execute(
                select(c.id, c.note).where(c.size >= since_size).order_by(c.id)
            ).all()
            lines = self._cosignature_lines(conn, c.size >= since_size) if with_cosignatures else {}
        return [str(r.note) + lines.get(int(r.id), "") for r in rows]

    def latest_checkpoint(self, *, with_cosignatures: bool = False) -> str | None:
        """The checkpoint note of the largest signed tree (the newest of that size), if any.

        By size, not by insertion: a retention prune signs a checkpoint at its (smaller) cut
        just before the one covering its own event, and a witness asking meanwhile must not be
        shown a tree smaller than one it may already have cosigned.
        """
        c = checkpoints_table.c
        with self._read() as conn:
            row = conn.execute(
                select(c.id, c.note).order_by(c.size.desc(), c.id.desc()).limit(1)
            ).first()
            if row is None:
                return None
            lines = self._cosignature_lines(conn, c.id == row.id) if with_cosignatures else {}
        return str(row.note) + lines.get(int(row.id), "")

    @staticmethod
    def _cosignature_lines(conn: Connection, where: Any) -> dict[int, str]:
        """Cosignature lines (each ending with a newline) by checkpoint id, for the
        checkpoints ``where`` selects."""
        k = cosignatures_table.c
        rows = conn.execute(
            select(k.checkpoint_id, k.line)
            .join(checkpoints_table, checkpoints_table.c.id == k.checkpoint_id)
            .where(where)
            .order_by(k.checkpoint_id, k.time_us, k.witness)
        )
        lines: dict[int, str] = {}
        for row in rows:
            lines[int(row.checkpoint_id)] = lines.get(int(row.checkpoint_id), "") + row.line + "\n"
        return lines

    # --- witnesses and their cosignatures ------------------------------------------------

    @staticmethod
    def _accepted(conn: Connection) -> dict[str, CosignatureVerifier]:
        """The accepted witnesses by vkey, in the order they were (last) accepted."""
        w = witnesses_table.c
        accepted: dict[str, CosignatureVerifier] = {}
        for row in conn.execute(select(w.vkey, w.accepted).order_by(w.id)):
            accepted.pop(str(row.vkey), None)
            if row.accepted:
                accepted[str(row.vkey)] = CosignatureVerifier.from_vkey(str(row.vkey))
        return accepted

    def witnesses(self) -> list[CosignatureVerifier]:
        """The witnesses whose cosignatures this log accepts, in the order they were added."""
        with self._read() as conn:
            return list(self._accepted(conn).values())

    def add_witness(self, vkey: str) -> CosignatureVerifier:
        """Accept cosignatures by the witness key ``vkey`` (``name+keyid+base64``, type 0x04).

        :class:`WitnessRegistryError` if it is not a witness key, is already accepted, shares
        its name and key ID with an accepted key, or the registry is full.
        """
        witness = self._witness_key(vkey)
        return self._change_registry(witness, accepted=True)

    def remove_witness(self, vkey: str) -> CosignatureVerifier:
        """Stop accepting cosignatures by ``vkey`` (those stored stay: they were valid)."""
        witness = self._witness_key(vkey)
        return self._change_registry(witness, accepted=False)

    @staticmethod
    def _witness_key(vkey: str) -> CosignatureVerifier:
        try:
            return CosignatureVerifier.from_vkey(vkey)
        except (CheckpointError, ValueError) as exc:
            raise WitnessRegistryError(f"not a witness verifier key: {exc}") from None

    def _change_registry(
        self, witness: CosignatureVerifier, *, accepted: bool
    ) -> CosignatureVerifier:
        vkey = witness.vkey()  # canonical text: the registry compares keys by it
        try:
            with self._writer.begin() as conn:
                current = self._accepted(conn)
                if accepted:
                    if vkey in current:
                        raise WitnessRegistryError(f"{witness.name} is already accepted")
                    named = (witness.name, witness.key_id)
                    if any((w.name, w.key_id) == named for w in current.values()):
                        raise WitnessRegistryError(
                            f"another accepted key has the name and key ID of {witness.name}"
                        )
                    if len(current) >= MAX_WITNESSES:
                        raise WitnessRegistryError(f"at most {MAX_WITNESSES} witnesses")
                elif vkey not in current:
                    raise WitnessRegistryError(f"{witness.name} is not an accepted witness")
                conn.execute(
                    insert(witnesses_table).values(
                        vkey=vkey, accepted=accepted, time_us=to_micros(self._clock())
                    )
                )
        except SQLAlchemyError as exc:
            raise LogUnavailable(f"witness registry not changed: {exc}") from exc
        return witness

    def check_cosignature(self, note: str, line: str) -> Cosignature:
        """Verify a witness's cosignature ``line`` on the checkpoint ``note`` (as this log
        served it, its own signature included); store nothing.

        :class:`CosignatureRefused` with a stable code unless the line is by an accepted
        witness, over a checkpoint this log signed and stored, and verifies.
        """
        try:
            with self._read() as conn:
                return self._check_cosignature(conn, note, line)
        except SQLAlchemyError as exc:
            raise LogUnavailable(f"audit store unreadable: {exc}") from exc

    def add_cosignature(self, note: str, line: str) -> bool:
        """Verify (as :meth:`check_cosignature`) and store a cosignature; ``True`` when
        stored, ``False`` when this witness's cosignature on that checkpoint already was (a
        retry: the first one is kept). Nothing is stored on :class:`CosignatureRefused`."""
        try:
            with self._writer.begin() as conn:
                cosignature = self._check_cosignature(conn, note, line)
                k = cosignatures_table.c
                stored = conn.execute(
                    select(k.witness).where(k.checkpoint_id == cosignature.checkpoint_id)
                ).all()
                vkey = cosignature.witness.vkey()
                if any(row.witness == vkey for row in stored):
                    return False
                if len(stored) >= MAX_COSIGNATURES:
                    raise CosignatureRefused(
                        "too_many_cosignatures",
                        f"checkpoint already carries {MAX_COSIGNATURES} cosignatures",
                    )
                conn.execute(
                    insert(cosignatures_table).values(
                        checkpoint_id=cosignature.checkpoint_id,
                        witness=vkey,
                        line=cosignature.line.text(),
                        cosigned_at=int(cosignature.time.timestamp()),
                        time_us=to_micros(self._clock()),
                    )
                )
        except IntegrityError:
            return False  # the same cosignature, stored meanwhile by a concurrent retry
        except SQLAlchemyError as exc:
            raise LogUnavailable(f"cosignature not stored: {exc}") from exc
        return True

    def _check_cosignature(self, conn: Connection, note: str, line: str) -> Cosignature:
        posted = read_cosignature(note, line, self._accepted(conn).values())
        checkpoint = posted.checkpoint
        c = checkpoints_table.c
        # Its text, byte for byte, must be one this log signed: size and root alone would let
        # a cosignature over another timestamp (another body) be attached to it.
        stored = conn.execute(
            select(c.id, c.note)
            .where(c.size == checkpoint.size, c.root == checkpoint.root)
            .order_by(c.id)
        ).all()
        checkpoint_id = next(
            (int(r.id) for r in stored if _note_text(str(r.note)) == posted.text), None
        )
        if checkpoint_id is None:
            raise CosignatureRefused(
                "unknown_checkpoint",
                f"this log signed no such checkpoint of size {checkpoint.size}",
            )
        when = posted.verify()
        return Cosignature(checkpoint, checkpoint_id, posted.witness, posted.line, when)
