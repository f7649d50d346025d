"""DPO search, access reports and anomaly rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.anomalies import (
    WorkingHours,
    bulk_access,
    detect,
    off_hours,
    refusal_bursts,
    unexpected_access,
)
from audit.errors import InvalidEvent
from audit.events import Action, Decision, Event, NewEvent
from audit.queries import EventFilter, actor_access_report, object_access_report, search
from audit.store import AuditLog
from tests.unit.audit.conftest import Clock, view


def test_search_filters_and_paginates_by_keyset(log: AuditLog, clock: Clock) -> None:
    log.append_many([view(i % 3, user=f"u-{i % 2}") for i in range(20)])
    log.append(NewEvent(action=Action.FORM_SEND_REFUSED, actor_user="u-1", decision=Decision.DENY))
    criteria = EventFilter(actor_user="u-1", object_type="case", object_id="C-0001")
    seen: list[int] = []
    cursor = None
    while True:
        page = search(log, criteria, cursor=cursor, limit=2)
        seen += [e.seq for e in page.events]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    expected = [i for i in range(20) if i % 2 == 1 and i % 3 == 1]
    assert seen == sorted(expected, reverse=True)
    oldest = search(log, criteria, limit=100, newest_first=False)
    assert [e.seq for e in oldest.events] == expected and oldest.next_cursor is None
    refused = search(log, EventFilter(decision=Decision.DENY)).events
    assert [e.action for e in refused] == [Action.FORM_SEND_REFUSED]
    assert search(log, EventFilter(actions=[Action.FORM_OPEN])).events == []


def test_search_by_period(log: AuditLog, clock: Clock) -> None:
    log.append_many([view(i) for i in range(5)])
    middle = clock.now
    clock.advance(timedelta(days=1))
    log.append_many([view(i) for i in range(5, 8)])
    page = search(log, EventFilter(since=middle), newest_first=False)
    assert [e.seq for e in page.events] == [5, 6, 7]
    page = search(log, EventFilter(until=middle), newest_first=False)
    assert [e.seq for e in page.events] == [0, 1, 2, 3, 4]


def test_search_limit_is_bounded(log: AuditLog) -> None:
    with pytest.raises(InvalidEvent):
        search(log, EventFilter(), limit=10_000)


def test_object_and_actor_reports(log: AuditLog) -> None:
    log.append_many([view(1, user="u-a"), view(1, user="u-a"), view(1, user="u-b"), view(2)])
    rows = object_access_report(log, "case", "C-0001")
    assert [(r.actor_user, r.count) for r in rows] == [("u-a", 2), ("u-b", 1)]
    assert rows[0].first < rows[0].last
    mine = actor_access_report(log, "u-0001")
    assert [(r.object_id, r.count) for r in mine] == [("C-0002", 1)]


T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)  # a Tuesday, 11:00 in Paris


def ev(
    seq: int,
    minutes: float,
    *,
    user: str = "u-1",
    obj: int = 0,
    decision: Decision = Decision.ALLOW,
    when: datetime | None = None,
) -> Event:
    return Event(
        seq,
        when or T0 + timedelta(minutes=minutes),
        Action.CASE_VIEW,
        actor_user=user,
        actor_org="org-1",
        object_type="case",
        object_id=f"C-{obj}",
        decision=decision,
    )


def test_bulk_access_fires_above_the_limit_only() -> None:
    calm = [ev(i, i, obj=i) for i in range(10)]  # 10 cases in 10 minutes
    assert bulk_access(calm, max_objects=10) == []
    burst = [ev(i, i * 0.5, obj=i) for i in range(15)]
    (finding,) = bulk_access(burst, max_objects=10)
    assert finding.rule == "bulk_access" and finding.actor_user == "u-1"
    assert finding.seqs[-1] == 14 and finding.count == 15
    # Re-reading the same case many times is not bulk access.
    assert bulk_access([ev(i, i * 0.1, obj=1) for i in range(50)], max_objects=10) == []
    # Spread over more than the window: no finding.
    slow = [ev(i, i * 10, obj=i) for i in range(15)]
    assert bulk_access(slow, max_objects=10, window=timedelta(hours=1)) == []


def test_off_hours_uses_paris_time_weekends_and_holidays() -> None:
    paris = WorkingHours()
    assert paris.contains(T0)
    # 19:30 UTC in March is 20:30 in Paris: after hours. 06:00 UTC = 07:00 Paris: before.
    late = ev(1, 0, when=datetime(2025, 3, 4, 19, 30, tzinfo=UTC))
    early = ev(2, 0, when=datetime(2025, 3, 4, 6, 0, tzinfo=UTC))
    saturday = ev(3, 0, when=datetime(2025, 3, 8, 10, 0, tzinfo=UTC))
    summer_evening = ev(4, 0, when=datetime(2025, 7, 1, 17, 30, tzinfo=UTC))  # 19:30 CEST
    findings = off_hours([ev(0, 0), late, early, saturday, summer_evening])
    assert sorted(s for f in findings for s in f.seqs) == [1, 2, 3]
    holiday = WorkingHours(holidays=frozenset({T0.date()}))
    assert [f.seqs for f in off_hours([ev(0, 0)], hours=holiday)] == [(0,)]


def test_refusal_bursts() -> None:
    deny = Decision.DENY
    few = [ev(i, i, decision=deny) for i in range(5)]
    assert refusal_bursts(few, max_refusals=5) == []
    many = [ev(i, i, decision=deny) for i in range(8)] + [ev(8, 9, decision=Decision.ALLOW)]
    (finding,) = refusal_bursts(many, max_refusals=5)
    assert finding.seqs == tuple(range(8))
    other_users = [ev(i, i, user=f"u-{i}", decision=deny) for i in range(8)]
    assert refusal_bursts(other_users, max_refusals=5) == []


def test_unexpected_access_and_detect() -> None:
    events = [ev(0, 0, user="u-ref"), ev(1, 1, user="u-stranger")]
    found = unexpected_access(events, lambda e: e.actor_user == "u-ref")
    assert [f.actor_user for f in found] == ["u-stranger"]
    night = ev(2, 0, when=datetime(2025, 3, 4, 23, 0, tzinfo=UTC))
    assert [f.rule for f in detect([*events, night])] == ["off_hours"]
