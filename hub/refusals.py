"""Refused requests nobody answers for: throttled per client and counted, not one audit event
each.

Anyone can send a forged form, a post from another site, an invalid activation link, a bad API
token or a wrong password without logging in. When each refusal appended its own audit event, a
script could grow the log as fast as it could send requests, and since the log is fail-closed
(DESIGN §2.4) a full audit store means 503 for everyone. So these refusals are *counted*:

- the first refusal of a client in a minute is recorded at once, in full (what, where, why);
- the following ones are counted in ``refusal_counts`` (the main store) and
  :func:`record_bursts` (the beat, every minute) records them, once their minute is well over,
  as one :attr:`~audit.events.Action.ACCESS_REFUSED_BURST` event per client and minute whose
  ``rule`` says how many (``count:<n>/minute:<UTC minute>``);
- past ``anonymous_refusals_per_minute`` refusals in a minute, the client's refused requests
  are answered 429 with ``Retry-After`` (still counted). Only refusals are throttled: an agency's
  other people behind the same address keep logging in, API clients with a valid token keep
  working;
- past ``anonymous_refusal_clients_per_minute`` distinct clients in a minute, the refusals of
  further clients are counted together under :data:`ALL_CLIENTS`: rotating addresses does not
  grow the log either.

A client is the keyed hash of its address, the same the log stores (never the address); an IPv6
client is its /64 network (one subscriber's allocation), whose hash both its events carry.
Refused logins for an existing account are counted per account instead (the first in full,
naming the account; the rest one event naming it), whatever the addresses they come from.
Forms refused for their CSRF token or their origin are counted even when a session cookie came
with them: the person did not send them (another page of the same site may have).

The log therefore grows by at most about two events per client or account and minute, plus a
bounded number per minute overall. Logged-in people and API clients with a valid token are
accountable: their other refusals keep one event each. If the count cannot be kept (the main
store is down), the refusal is answered 503 and nothing is appended: never one event per request.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from limits import RateLimitItem, RateLimitItemPerMinute
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import TooManyRequests

from audit.errors import InvalidEvent
from audit.events import Action, Decision, NewEvent, hash_ip
from consent.db import dialect_insert
from hub.db import rowcount
from hub.extensions import client_ip, limiter
from hub.models import RefusalCount
from hub.recording import AuditUnavailable, append, current_actor, new_event
from hub.state import state

# Reserved client names (a client is 64 hex digits, an account ``user:<public id>``): the shared
# count of clients beyond the per-minute cap, and the number of distinct clients in the minute.
ALL_CLIENTS = "*"
CLIENTS = "#"
_ACCOUNT = "user:"
_LIMIT_SCOPE = "anonymous-refusals"
# A minute's counts are recorded only once the next minute is over too: a first refusal whose
# append is still in flight at the turn of the minute (or a web node whose clock is a little
# behind) still finds its row.
SETTLE = timedelta(minutes=1)

logger = logging.getLogger(__name__)


class CountUnavailable(AuditUnavailable):
    """The refusal could not be counted (the main store is down): 503, nothing appended."""


def is_anonymous() -> bool:
    """Whether nobody answers for the current request (no logged-in person, no API client)."""
    return current_actor()[0] is None


def minute_of(moment: datetime) -> datetime:
    """The minute ``moment`` falls in (its start)."""
    return moment.replace(second=0, microsecond=0)


def client_network(ip: str) -> str:
    """The address that stands for a client: an IPv6 address's /64 network (what one
    subscriber or site is usually given, so rotating within it changes nothing), else the
    address itself."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)


def _budget() -> RateLimitItem:
    return RateLimitItemPerMinute(state().config.anonymous_refusals_per_minute)


def _within_budget() -> bool:
    """Spend one refusal of the client's budget for the minute; False once it is spent."""
    if not limiter.enabled:
        return True
    try:
        return bool(limiter.limiter.hit(_budget(), _LIMIT_SCOPE, client_network(client_ip())))
    except Exception:  # the limiter's storage (Redis) is down: any of its errors
        # Counting still bounds the log; throttling is only a courtesy to the hub's CPU.
        logger.warning("refusal budget unavailable (rate-limit storage error)")
        return True


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
    counted: bool = False,
) -> None:
    """Record a refused request: with its own event when someone answers for it (a logged-in
    person, an API client), counted per client and minute when nobody does — or when
    ``counted`` says the person cannot have sent it (a forged or cross-site form)."""
    event = new_event(
        action,
        object_type=object_type,
        object_id=object_id,
        purpose=purpose,
        decision=Decision.DENY,
        rule=rule,
    )
    if counted or is_anonymous():
        record_refusal(event)
    else:
        append(event)


def record_refusal(event: NewEvent, *, account: str = "") -> None:
    """Record a refusal nobody answers for: it spends the client's budget and is counted; its
    own event is appended only when it is the first this minute of its client — or of
    ``account`` (a public id), for refused logins of an existing account.

    Raises :class:`Throttled` once the client is past its budget for the minute (the refusal
    is counted all the same), :class:`~hub.recording.AuditUnavailable` when the event cannot
    be written or the refusal cannot be counted (503).
    """
    within_budget = _within_budget()
    if account:
        client = _ACCOUNT + account
    else:
        try:
            client = hash_ip(state().config.ip_hash_key, client_network(client_ip()))
        except InvalidEvent:  # no usable address: counted with everyone else's
            client = ALL_CLIENTS
        # The first event carries the client's hash, like the count that follows it.
        event = replace(event, ip_hash="" if client == ALL_CLIENTS else client)
    _count_or_record(event, client)
    if not within_budget:
        raise Throttled(retry_after=60)


def _count_or_record(event: NewEvent, client: str) -> None:
    minute = minute_of(state().clock())
    try:
        with state().session_factory() as session:
            first = _count(session, client, minute)
    except SQLAlchemyError as error:
        # Never fall back to one event per refusal: that is the flood this module prevents.
        logger.warning("refusal not counted (main store error: %s)", type(error).__name__)
        raise CountUnavailable() from error
    if not first:
        return
    try:
        append(event)
    except AuditUnavailable:
        # Not recorded after all: the minute's counted event includes it instead (a row that
        # the beat already took is made again, for its next run).
        try:
            with state().session_factory() as session:
                _unrecord(session, client, minute)
                session.commit()
        except SQLAlchemyError:
            logger.warning("refusal neither recorded nor counted (main store error)")
        raise


def _count(session: Session, client: str, minute: datetime) -> bool:
    """Count one refusal of ``client`` in ``minute``; True when it must be recorded on its own
    (the client's first this minute, within the minute's cap on clients)."""
    where = (RefusalCount.client == client, RefusalCount.minute == minute)
    counted = session.execute(
        update(RefusalCount).where(*where).values(refused=RefusalCount.refused + 1)
    )
    if rowcount(counted):
        session.commit()
        return False
    seen = session.scalar(
        select(RefusalCount.refused).where(
            RefusalCount.client == CLIENTS, RefusalCount.minute == minute
        )
    )
    if (seen or 0) >= state().config.anonymous_refusal_clients_per_minute and not (
        client.startswith(_ACCOUNT)
    ):
        _add(session, ALL_CLIENTS, minute)
        session.commit()
        return False
    inserted = session.execute(
        dialect_insert(session, RefusalCount)
        .values(client=client, minute=minute, refused=1, recorded=1)
        .on_conflict_do_nothing(index_elements=[RefusalCount.client, RefusalCount.minute])
        .returning(RefusalCount.refused)
    ).first()
    if inserted is None:  # the same client's first refusal won the race: this one is counted
        session.execute(update(RefusalCount).where(*where).values(refused=RefusalCount.refused + 1))
        session.commit()
        return False
    _add(session, CLIENTS, minute)  # one more distinct client (counted only on insertion)
    session.commit()
    return True


def _add(session: Session, client: str, minute: datetime) -> int:
    """Add one to ``client``'s count in ``minute`` (creating it); the new count."""
    statement = dialect_insert(session, RefusalCount).values(
        client=client, minute=minute, refused=1, recorded=0
    )
    statement = statement.on_conflict_do_update(
        index_elements=[RefusalCount.client, RefusalCount.minute],
        set_={"refused": RefusalCount.refused + 1},
    ).returning(RefusalCount.refused)
    return int(session.execute(statement).scalar_one())


def _unrecord(session: Session, client: str, minute: datetime) -> None:
    """The minute's first refusal of ``client`` was not recorded after all."""
    statement = dialect_insert(session, RefusalCount).values(
        client=client, minute=minute, refused=1, recorded=0
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[RefusalCount.client, RefusalCount.minute],
            set_={"recorded": RefusalCount.recorded - 1},
        )
    )


def burst_event(client: str, minute: datetime, count: int) -> NewEvent:
    """The counted event of ``count`` refusals of ``client`` in ``minute``."""
    account = client.removeprefix(_ACCOUNT) if client.startswith(_ACCOUNT) else ""
    return NewEvent(
        action=Action.ACCESS_REFUSED_BURST,
        object_type="user" if account else "",
        object_id=account,
        purpose="login" if account else "all_clients" if client == ALL_CLIENTS else "",
        decision=Decision.DENY,
        rule=f"count:{count}/minute:{minute:%Y-%m-%dT%H:%M}Z",
        ip_hash="" if account or client == ALL_CLIENTS else client,
    )


def record_bursts(session: Session, now: datetime) -> int:
    """Record the counted refusals of every minute that is settled, one event per client and
    minute, and forget the counts; the number of events appended.

    Each count is deleted in the transaction that appends its event, so a concurrent run cannot
    record it twice; if the log cannot be written the count stays for the next run and
    :class:`~hub.recording.AuditUnavailable` is raised. A crash between the append and the
    commit records it again (at least once, never lost).
    """
    settled = minute_of(now) - SETTLE
    keys = session.execute(
        select(RefusalCount.client, RefusalCount.minute)
        .where(RefusalCount.minute < settled)
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
