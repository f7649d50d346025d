"""Anomaly rules over audit events, for the DPO's alerts (DESIGN §8).

Pure functions: they take events (from :func:`audit.queries.search` or :meth:`AuditLog.events`)
and return findings; the hub's periodic task decides whom to alert. Each finding names the
rule, the actor, the period and the sequence numbers involved, so the DPO can open them.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from audit.events import Action, Decision, Event

PARIS = ZoneInfo("Europe/Paris")

# Reads of personal data: what bulk-access and off-hours rules watch.
READ_ACTIONS = frozenset({Action.CASE_VIEW, Action.FORM_OPEN, Action.AUDIT_READ})


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly: ``rule`` fired for ``actor_user`` between ``start`` and ``end``."""

    rule: str
    actor_user: str | None
    actor_org: str
    start: datetime
    end: datetime
    count: int
    seqs: tuple[int, ...]
    detail: str = ""


def _by_actor(events: Iterable[Event]) -> dict[tuple[str | None, str], list[Event]]:
    grouped: dict[tuple[str | None, str], list[Event]] = defaultdict(list)
    for e in events:
        grouped[(e.actor_user, e.actor_org)].append(e)
    for items in grouped.values():
        items.sort(key=lambda e: (e.time, e.seq))
    return grouped


def bulk_access(
    events: Iterable[Event],
    *,
    max_objects: int = 30,
    window: timedelta = timedelta(hours=1),
    actions: frozenset[Action] = READ_ACTIONS,
) -> list[Finding]:
    """An actor reading more than ``max_objects`` distinct objects within ``window``.

    One finding per burst: the window slides over the actor's reads, and a burst ends when
    the count falls back to the limit.
    """
    findings = []
    for (user, org), items in _by_actor(e for e in events if e.action in actions).items():
        window_events: deque[Event] = deque()
        distinct: Counter[tuple[str, str]] = Counter()
        burst: list[Event] = []
        for e in items:
            window_events.append(e)
            distinct[(e.object_type, e.object_id)] += 1
            while window_events and e.time - window_events[0].time > window:
                old = window_events.popleft()
                key = (old.object_type, old.object_id)
                distinct[key] -= 1
                if not distinct[key]:
                    del distinct[key]
            if len(distinct) > max_objects:
                if not burst:
                    burst = list(window_events)
                else:
                    burst.append(e)
            elif burst:
                findings.append(_bulk(user, org, burst, max_objects, window))
                burst = []
        if burst:
            findings.append(_bulk(user, org, burst, max_objects, window))
    return findings


def _bulk(user: str | None, org: str, burst: list[Event], limit: int, window: timedelta) -> Finding:
    objects = {(e.object_type, e.object_id) for e in burst}
    return Finding(
        "bulk_access",
        user,
        org,
        burst[0].time,
        burst[-1].time,
        len(burst),
        tuple(e.seq for e in burst),
        f"{len(objects)} distinct objects read, limit {limit} per {window}",
    )


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Local working hours: weekdays from ``start`` to ``end`` in ``zone``, minus holidays."""

    start: time = time(7, 30)
    end: time = time(20, 0)
    zone: ZoneInfo = PARIS
    holidays: frozenset[date] = field(default_factory=frozenset)

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` (aware) falls within working hours, local time."""
        local = when.astimezone(self.zone)
        if local.weekday() >= 5 or local.date() in self.holidays:
            return False
        return self.start <= local.time() < self.end


def off_hours(
    events: Iterable[Event],
    *,
    hours: WorkingHours | None = None,
    actions: frozenset[Action] = READ_ACTIONS,
) -> list[Finding]:
    """Reads at night, on weekends or on holidays (Europe/Paris by default): one finding per
    actor and local day."""
    rule = hours or WorkingHours()
    days: dict[tuple[str | None, str, date], list[Event]] = defaultdict(list)
    for e in events:
        if e.action in actions and not rule.contains(e.time):
            days[(e.actor_user, e.actor_org, e.time.astimezone(rule.zone).date())].append(e)
    return [
        Finding(
            "off_hours",
            user,
            org,
            items[0].time,
            items[-1].time,
            len(items),
            tuple(e.seq for e in items),
            f"{len(items)} reads outside working hours on {day.isoformat()}",
        )
        for (user, org, day), items in sorted(days.items(), key=lambda kv: kv[1][0].seq)
    ]


def burst_count(e: Event) -> int:
    """How many refusals ``e`` stands for: a counted event (``access.refused.burst``) the ``n``
    of its rule ``count:<n>/minute:<UTC minute>``, any other event one."""
    if e.action is not Action.ACCESS_REFUSED_BURST:
        return 1
    head = e.rule.split("/", 1)[0].removeprefix("count:")
    return int(head) if head.isdigit() else 1


def refusal_bursts(
    events: Iterable[Event], *, max_refusals: int = 5, window: timedelta = timedelta(minutes=10)
) -> list[Finding]:
    """More than ``max_refusals`` refused accesses by one actor within ``window`` (a counted
    event of anonymous refusals weighs its count)."""
    findings = []
    denied = (e for e in events if e.decision is Decision.DENY)
    for (user, org), items in _by_actor(denied).items():
        start = 0
        in_window = 0
        reported_until = -1
        for end, e in enumerate(items):
            in_window += burst_count(e)
            while e.time - items[start].time > window:
                in_window -= burst_count(items[start])
                start += 1
            if in_window > max_refusals and end > reported_until:
                # Extend over every refusal still within the window of the last one.
                stop = end
                while stop + 1 < len(items) and items[stop + 1].time - items[stop].time <= window:
                    stop += 1
                burst = items[start : stop + 1]
                count = sum(burst_count(x) for x in burst)
                findings.append(
                    Finding(
                        "refusal_burst",
                        user,
                        org,
                        burst[0].time,
                        burst[-1].time,
                        count,
                        tuple(x.seq for x in burst),
                        f"{count} refusals, limit {max_refusals} per {window}",
                    )
                )
                reported_until = stop
    return findings


def unexpected_access(
    events: Iterable[Event],
    is_expected: Callable[[Event], bool],
    *,
    actions: frozenset[Action] = READ_ACTIONS,
) -> list[Finding]:
    """Reads the hub's own knowledge flags (e.g. the reader is neither the référent nor a
    member of the case's group): ``is_expected`` answers for each read."""
    return [
        Finding(
            "unexpected_access",
            e.actor_user,
            e.actor_org,
            e.time,
            e.time,
            1,
            (e.seq,),
            f"{e.action.value} of {e.object_type} {e.object_id}",
        )
        for e in events
        if e.action in actions and e.decision is not Decision.DENY and not is_expected(e)
    ]


def detect(events: Iterable[Event], *, hours: WorkingHours | None = None) -> list[Finding]:
    """Every built-in rule with default thresholds, findings in log order."""
    items = list(events)
    found = bulk_access(items) + off_hours(items, hours=hours) + refusal_bursts(items)
    return sorted(found, key=lambda f: (f.seqs[0], f.rule))
