"""Database plumbing for the hub's main store: base, engines, sessions, post-commit hooks.

Plain SQLAlchemy 2 (no Flask-SQLAlchemy) so that domain services take a ``Session`` and work the
same from the web, the CLI and Celery tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Result, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# The migrations import UTCDateTime from here.
from consent.db import UTCDateTime
from consent.db import metadata as main_metadata


class Base(DeclarativeBase):
    """Declarative base of the main store (the audit log has its own store and metadata)."""

    metadata = main_metadata  # shared with the domain packages' tables (consent.db)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy API


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during writes; FULL makes an acknowledged commit survive power
    # loss; foreign keys are off by default in SQLite; busy_timeout waits for the write lock
    # instead of failing at once under concurrent requests.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Without it a REPLACE deletes the old row silently: the append-only tables' DELETE
    # triggers must fire for the rows a REPLACE would remove too.
    cursor.execute("PRAGMA recursive_triggers=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the durability settings Maillon relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose sessions run post-commit hooks (see :func:`after_commit`)."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


_HOOKS_KEY = "maillon_after_commit"


def after_commit(session: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` once the session's current transaction has committed; drop it on rollback.

    Celery tasks are enqueued through this so a worker never sees an id whose row is not
    committed yet, and a rolled-back request enqueues nothing.
    """
    session.info.setdefault(_HOOKS_KEY, []).append(hook)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    hooks: list[Callable[[], object]] = session.info.pop(_HOOKS_KEY, [])
    for hook in hooks:
        hook()


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_HOOKS_KEY, None)


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (conditional updates use it to detect who won a race)."""
    return int(getattr(result, "rowcount", 0))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. The default clock of the hub."""
    return datetime.now(UTC)
