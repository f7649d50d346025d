"""Refused anonymous requests: throttled per client and counted, not one audit event each.

Anyone can send a forged form, a post from another site, an invalid activation link or a bad
API token without logging in. When each refusal appended its own audit event, a script could
grow the log as fast as it could send requests, and since the log is fail-closed (DESIGN §2.4)
a full audit store means 503 for everyone. So, for requests nobody is logged in for:

- the first refusal of a client in a minute is recorded at once, in full (what, where, why);
- the following ones are counted in ``refusal_counts`` (the main store) and
  :func:`record_bursts` (the beat, every minute) records them as one
  :attr:`~audit.events.Action.ACCESS_REFUSED_BURST` event per client and minute, its
  ``object_id`` saying how many;
- past ``anonymous_refusals_per_minute`` refusals in a minute, the client's refused requests
  are answered 429 with ``Retry-After`` (and still counted). Only refusals are throttled: an
  agency's other people behind the same address keep logging in, API clients with a valid
  token keep working;
- past ``anonymous_refusal_clients_per_minute`` distinct clients in a minute, the refusals of
  further clients are counted together under :data:`ALL_CLIENTS`: rotating addresses does not
  grow the log either.

The log therefore grows by at most about two events per client and minute, plus a bounded
number per minute overall. Logged-in people and API clients holding a valid token are
accountable: their refusals keep one event each. A client is the keyed hash of its address,
the same the log stores (never the address).
"""

from __future__ import annotations

from datetime import datetime

from limits import RateLimitItem, RateLimitItemPerMinute
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import TooManyRequests

from audit.events import Action, Decision, NewEvent
from consent.db import dialect_insert
from hub.db import rowcount
from hub.extensions import client_ip, limiter
from hub.models import RefusalCount
from hub.recording import AuditUnavailable, append, current_actor, new_event
from hub.state import state

# Reserved client names (a real client is 64 hex digits): the shared count of clients beyond
# the per-minute cap, and the number of distinct clients counted in the minute.
ALL_CLIENTS = "*"
CLIENTS = "#"
_LIMIT_SCOPE = "anonymous-refusals"


def is_anonymous() -> bool:
    """Whether nobody answers for the current request (no logged-in person, no API client)."""
    return current_actor()[0] is None


def minute_of(moment: datetime) -> datetime:
    """The minute ``moment`` falls in (its start)."""
    return moment.replace(second=0, microsecond=0)


def _budget() -> RateLimitItem:
    return RateLimitItemPerMinute(state().config.anonymous_refusals_per_minute)


class Throttled(TooManyRequests):
    """This client's anonymous requests were refused too often this minute: answered 429
    (already counted, not recorded again)."""


def record_refused(
    action: Action,
    *,
    object_type: str = "",
    object_id: str = "",
    purpose: str = "",
    rule: str = "",
) -> None:
    """Record a refused request: with its own event when someone answers for it (a logged-in
    person, an API client), counted per client and minute when nobody does."""
    event = new_event(
        action,
        object_type=object_type,
        object_id=object_id,
        purpose=purpose,
        decision=Decision.DENY,
        rule=rule,
    )
    if is_anonymous():
        record_refusal(event)
    else:
        append(event)


def record_refusal(event: NewEvent) -> None:
    """Record the refusal of an anonymous request: it spends the client's budget and is
    counted; its own event is appended only when it is the client's first this minute.

    Raises :class:`Throttled` once the client is past its budget for the minute (the refusal
    is counted all the same), :class:`~hub.recording.AuditUnavailable` when an event cannot
    be written (503, like any recording). If the count itself cannot be kept (the main store
    is down), the event is appended on its own rather than lost.
    """
    within_budget = not limiter.enabled or limiter.limiter.hit(_budget(), _LIMIT_SCOPE, client_ip())
    _count_or_record(event)
    if not within_budget:
        raise Throttled(retry_after=60)


def _count_or_record(event: NewEvent) -> None:
    client = event.ip_hash or ALL_CLIENTS
    minute = minute_of(state().clock())
    try:
        with state().session_factory() as session:
            first = _count(session, client, minute)
    except SQLAlchemyError:
        append(event)
        return
    if not first:
        return
    try:
        append(event)
    except AuditUnavailable:
        # Not recorded after all: the minute's counted event will include it.
        with state().session_factory() as session:
            session.execute(
                update(RefusalCount)
                .where(RefusalCount.client == client, RefusalCount.minute == minute)
                .values(recorded=0)
            )
            session.commit()
        raise


def _count(session: Session, client: str, minute: datetime) -> bool:
    """Count one refusal of ``client`` in ``minute``; True when it must be recorded on its own
    (the client's first this minute, and the minute's cap on clients not reached)."""
    counted = session.execute(
        update(RefusalCount)
        .where(RefusalCount.client == client, RefusalCount.minute == minute)
        .values(refused=RefusalCount.refused + 1)
    )
    if rowcount(counted):
        session.commit()
        return False
    first = False
    if client != ALL_CLIENTS and _add(session, CLIENTS, minute) <= (
        state().config.anonymous_refusal_clients_per_minute
    ):
        # Two first refusals of one client racing here: one inserts, the other counts.
        first = _add(session, client, minute, recorded=1) == 1
    else:
        _add(session, ALL_CLIENTS, minute)
    session.commit()
    return first


def _add(session: Session, client: str, minute: datetime, *, recorded: int = 0) -> int:
    """Add one to ``client``'s count in ``minute`` (creating it); the new count."""
    statement = dialect_insert(session, RefusalCount).values(
        client=client, minute=minute, refused=1, recorded=recorded
    )
    statement = statement.on_conflict_do_update(
        index_elements=[RefusalCount.client, RefusalCount.minute],
        set_={"refused": RefusalCount.refused + 1},
    ).returning(RefusalCount.refused)
    return int(session.execute(statement).scalar_one())


def burst_event(client: str, minute: datetime, count: int) -> NewEvent:
    """The counted event of ``count`` refusals of ``client`` in ``minute``."""
    return NewEvent(
        action=Action.ACCESS_REFUSED_BURST,
        object_type="refusals",
        object_id=str(count),
        purpose="all_clients" if client == ALL_CLIENTS else "",
        decision=Decision.DENY,
        rule=f"minute:{minute:%Y-%m-%dT%H:%MZ}",
        ip_hash="" if client == ALL_CLIENTS else client,
    )


def record_bursts(session: Session, now: datetime) -> int:
    """Record the counted refusals of every minute that is over, one event per client and
    minute, and forget the counts; the number of events appended.

    Each count is deleted in the transaction that appends its event, so a concurrent run cannot
    record it twice; if the log cannot be written the count stays for the next run and
    :class:`~hub.recording.AuditUnavailable` is raised. A crash between the append and the
    commit records it again (at least once, never lost).
    """
    current = minute_of(now)
    keys = session.execute(
        select(RefusalCount.client, RefusalCount.minute)
        .where(RefusalCount.minute < current)
        .order_by(RefusalCount.minute, RefusalCount.client)
    ).all()
    session.rollback()
    appended = 0
    for client, minute in keys:
        gone = session.execute(
            delete(RefusalCount)
            .where(RefusalCount.client == client, RefusalCount.minute == minute)
            .returning(RefusalCount.refused, RefusalCount.recorded)
        ).first()
        if gone is None:  # recorded meanwhile by another run
            session.rollback()
            continue
        left = gone.refused - gone.recorded
        if client != CLIENTS and left > 0:
            try:
                append(burst_event(client, minute, left))
            except AuditUnavailable:
                session.rollback()
                raise
            appended += 1
        session.commit()
    return appended
