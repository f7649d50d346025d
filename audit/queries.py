"""DPO queries over the audit log: filtered search with keyset pagination, access reports.

Read-only, over the same engine as the log. The hub records every DPO read itself as an
``audit.read`` event (DESIGN §8: reading the log is logged) before returning results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import SQLAlchemyError

from audit.errors import InvalidEvent, LogUnavailable
from audit.events import Action, Decision, Event, from_micros, to_micros
from audit.store import AuditLog, event_from_row, events_view

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Search criteria; every field set narrows the search (AND). Periods are [since, until)."""

    object_type: str | None = None
    object_id: str | None = None
    actor_user: str | None = None
    actor_org: str | None = None
    actions: Sequence[Action] = ()
    decision: Decision | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """SQL conditions for this filter."""
        c = events_view.c
        out: list[ColumnElement[bool]] = []
        if self.object_type is not None:
            out.append(c.object_type == self.object_type)
        if self.object_id is not None:
            out.append(c.object_id == self.object_id)
        if self.actor_user is not None:
            out.append(c.actor_user == self.actor_user)
        if self.actor_org is not None:
            out.append(c.actor_org == self.actor_org)
        if self.actions:
            out.append(c.action.in_([Action(a).value for a in self.actions]))
        if self.decision is not None:
            out.append(c.decision == Decision(self.decision).value)
        if self.since is not None:
            out.append(c.time_us >= to_micros(self.since))
        if self.until is not None:
            out.append(c.time_us < to_micros(self.until))
        return out


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next one."""

    events: list[Event]
    next_cursor: int | None


def search(
    log: AuditLog,
    criteria: EventFilter,
    *,
    cursor: int | None = None,
    limit: int = 50,
    newest_first: bool = True,
) -> Page:
    """Events matching ``criteria``, paginated by sequence number (keyset: stable while the
    log grows, and each page costs the same however deep)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidEvent(f"limit must be between 1 and {MAX_PAGE}")
    c = events_view.c
    where = criteria.clauses()
    if cursor is not None:
        where.append(c.seq < cursor if newest_first else c.seq > cursor)
    order = c.seq.desc() if newest_first else c.seq.asc()
    query = select(events_view).where(*where).order_by(order).limit(limit + 1)
    try:
        with log.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise LogUnavailable(f"audit search failed: {exc}") from exc
    events = [event_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(events, events[-1].seq if more and events else None)


@dataclass(frozen=True, slots=True)
class AccessRow:
    """One line of an access report: who (or what) did which action how often, when."""

    actor_user: str | None
    actor_org: str
    object_type: str
    object_id: str
    action: Action
    decision: Decision
    count: int
    first: datetime
    last: datetime


def _report(log: AuditLog, where: list[ColumnElement[bool]]) -> list[AccessRow]:
    c = events_view.c
    keys = (c.actor_user, c.actor_org, c.object_type, c.object_id, c.action, c.decision)
    query = (
        select(*keys, func.count(), func.min(c.time_us), func.max(c.time_us))
        .where(*where)
        .group_by(*keys)
        .order_by(func.min(c.time_us))
    )
    try:
        with log.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise LogUnavailable(f"audit report failed: {exc}") from exc
    return [
        AccessRow(
            r[0],
            r[1],
            r[2],
            r[3],
            Action(r[4]),
            Decision(r[5]),
            int(r[6]),
            from_micros(int(r[7])),
            from_micros(int(r[8])),
        )
        for r in rows
    ]


def object_access_report(
    log: AuditLog,
    object_type: str,
    object_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AccessRow]:
    """Who accessed (or was refused) one object — a young person's "who saw my file"."""
    criteria = EventFilter(object_type=object_type, object_id=object_id, since=since, until=until)
    return _report(log, criteria.clauses())


def actor_access_report(
    log: AuditLog,
    actor_user: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AccessRow]:
    """Everything one user did, grouped by object and action."""
    return _report(log, EventFilter(actor_user=actor_user, since=since, until=until).clauses())


@dataclass(frozen=True, slots=True)
class TallyRow:
    """How many events of one action, decision and rule (charter article) matched."""

    action: Action
    decision: Decision
    rule: str
    count: int


def tally(log: AuditLog, criteria: EventFilter) -> list[TallyRow]:
    """Counts per (action, decision, rule) for ``criteria``, largest first (annual review)."""
    c = events_view.c
    keys = (c.action, c.decision, c.rule)
    query = (
        select(*keys, func.count())
        .where(*criteria.clauses())
        .group_by(*keys)
        .order_by(func.count().desc(), c.action, c.rule)
    )
    try:
        with log.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise LogUnavailable(f"audit tally failed: {exc}") from exc
    return [TallyRow(Action(r[0]), Decision(r[1]), str(r[2]), int(r[3])) for r in rows]
