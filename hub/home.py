"""What needs each person's attention, for their home page (issue 12, point 1).

One section per role the person holds, each item linking to where the work is done:

- agent and référent — *my cases* (référent of, or named on the team of; paginated), with what
  awaits on each: a release coming (from the alerts already sent to this person, so the home
  page discloses nothing the charter has not already let them learn), a review due at the
  group's next meeting, a consent ending within thirty days; and the liaison forms to read;
- coordinator — per group coordinated: cases awaiting the group's decision (no référent yet),
  the next meeting, partners that have not signed the charter version in force;
- DPO — the log's integrity, anomalies waiting for review, the exceptions « contraire à
  l'intérêt de l'enfant » (new ones first);
- administrator — invitations pending, locked accounts.

No Flask here: the view records the reads (as the pages it summarises do) and renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from charter.vocabulary import Role
from consent import local_day
from hub.alerts import CLOSED, RELEASE_GRACE, RELEASE_KINDS, REVIEW_NOTICE
from hub.cases import Cases
from hub.consents import expiring_soon
from hub.models import (
    Case,
    GroupMeeting,
    Invitation,
    Notification,
    OperationalGroup,
    Organisation,
    User,
)
from hub.pagination import Page, paginate

SECTION_LIMIT = 10  # lines per secondary list; each links to its complete, paginated page
MY_PARTS = frozenset({Role.REFERENT, Role.AGENT})
# A release alert stays on the home page until the release is past its grace: four months
# and a week after the first one at most.
RELEASE_SHOWN = timedelta(days=124) + RELEASE_GRACE


@dataclass(frozen=True)
class CaseLine:
    """One of my cases and what awaits on it."""

    case: Case
    referent: bool
    release: str | None  # the latest release alert's kind sent to me, if still relevant
    review_on: date | None  # the group's next meeting, when within a week
    consent_ending: bool


@dataclass(frozen=True)
class GroupLine:
    """A group I coordinate: the next meeting, cases awaiting a decision, unsigned partners."""

    group: OperationalGroup
    next_meeting: date | None
    awaiting: list[Case]
    awaiting_total: int
    unsigned: list[Organisation]
    version: int | None


@dataclass
class Home:
    """Everything a person's home page shows (empty sections are not shown)."""

    cases: Page[CaseLine] | None = None
    groups: list[GroupLine] = field(default_factory=list)
    invitations: list[Invitation] = field(default_factory=list)
    invitations_total: int = 0
    locked: list[User] = field(default_factory=list)
    locked_total: int = 0


def my_cases(service: Cases, user: User) -> Select[Any]:
    """Open cases I am référent of or named on the team of, newest first (the case list's
    query, limited to those two parts)."""
    return service.visible_to(user, parts=MY_PARTS).where(Case.status != CLOSED)


def next_meetings(service: Cases, group_ids: set[int], today: date) -> dict[int, date]:
    """Each group's next meeting day (today or later), by group id."""
    if not group_ids:
        return {}
    rows = service.session.execute(
        select(GroupMeeting.group_id, GroupMeeting.meets_on)
        .where(GroupMeeting.group_id.in_(group_ids), GroupMeeting.meets_on >= today)
        .order_by(GroupMeeting.meets_on)
    )
    found: dict[int, date] = {}
    for group_id, meets_on in rows:
        found.setdefault(group_id, meets_on)
    return found


def _releases(service: Cases, user: User, case_ids: list[int], now: datetime) -> dict[int, str]:
    """The latest release alert sent to ``user`` on each case, if recent enough."""
    if not case_ids:
        return {}
    rows = service.session.execute(
        select(Case.id, Notification.kind)
        .join(Notification, Notification.case_reference == Case.reference)
        .where(
            Case.id.in_(case_ids),
            Notification.user_id == user.id,
            Notification.kind.in_(RELEASE_KINDS),
            Notification.created_at >= now - RELEASE_SHOWN,
        )
        .order_by(Notification.created_at, Notification.id)
    )
    return {case_id: kind for case_id, kind in rows}  # the newest wins


def case_lines(service: Cases, user: User, number: int) -> Page[CaseLine]:
    """Page ``number`` of my cases, each with what awaits on it."""
    page = paginate(service.session, my_cases(service, user), number)
    now = service.clock()
    today = local_day(now)
    ids = [c.id for c in page.items]
    releases = _releases(service, user, ids, now)
    meetings = next_meetings(service, {c.group_id for c in page.items}, today)
    mine = [c.id for c in page.items if c.referent_id == user.id]
    ending = expiring_soon(service.consents, mine, today)
    lines = []
    for case in page.items:
        meets_on = meetings.get(case.group_id)
        lines.append(
            CaseLine(
                case=case,
                referent=case.referent_id == user.id,
                release=releases.get(case.id),
                review_on=meets_on if meets_on and meets_on - today <= REVIEW_NOTICE else None,
                consent_ending=case.id in ending,
            )
        )
    return Page(lines, page.number, page.per_page, page.total)


def coordinated(service: Cases, user: User) -> list[GroupLine]:
    """The groups ``user`` coordinates, with what awaits the coordinator in each."""
    session = service.session
    groups = list(
        session.scalars(
            select(OperationalGroup)
            .where(OperationalGroup.coordinator_id == user.id)
            .order_by(OperationalGroup.name)
        )
    )
    meetings = next_meetings(service, {g.id for g in groups}, local_day(service.clock()))
    lines = []
    for group in groups:
        awaiting = select(Case).where(
            Case.group_id == group.id, Case.status == "reperage", Case.referent_id.is_(None)
        )
        first = paginate(session, awaiting.order_by(Case.opened_at), 1, SECTION_LIMIT)
        version = service.charters.latest(group)
        unsigned = (
            [
                org
                for org in service.charters.partners(group)
                if service.charters.signature_of(version, org) is None
            ]
            if version is not None
            else []
        )
        lines.append(
            GroupLine(
                group=group,
                next_meeting=meetings.get(group.id),
                awaiting=first.items,
                awaiting_total=first.total,
                unsigned=unsigned,
                version=version.version if version is not None else None,
            )
        )
    return lines


def pending_invitations(service: Cases) -> tuple[list[Invitation], int]:
    """Invitations not yet used and not expired (oldest first), and how many there are."""
    page = paginate(
        service.session,
        select(Invitation)
        .where(Invitation.used_at.is_(None), Invitation.expires_at > service.clock())
        .order_by(Invitation.created_at, Invitation.id),
        1,
        SECTION_LIMIT,
    )
    return page.items, page.total


def locked_accounts(service: Cases) -> tuple[list[User], int]:
    """Accounts locked out now (too many failed logins), and how many there are."""
    page = paginate(
        service.session,
        select(User).where(User.locked_until > service.clock()).order_by(User.name),
        1,
        SECTION_LIMIT,
    )
    return page.items, page.total


def case_refs(session: Session, case_ids: set[int]) -> dict[int, str]:
    """The references of ``case_ids`` (lists that hold case ids), by id."""
    if not case_ids:
        return {}
    rows = session.execute(select(Case.id, Case.reference).where(Case.id.in_(case_ids)))
    return {row.id: row.reference for row in rows}


def home_of(service: Cases, user: User, number: int) -> Home:
    """What ``user``'s home page shows (page ``number`` of their cases)."""
    home = Home()
    if user.has_role(Role.REFERENT) or user.has_role(Role.AGENT):
        home.cases = case_lines(service, user, number)
    if user.has_role(Role.COORDINATOR):
        home.groups = coordinated(service, user)
    if user.has_role(Role.ADMIN):
        home.invitations, home.invitations_total = pending_invitations(service)
        home.locked, home.locked_total = locked_accounts(service)
    return home
