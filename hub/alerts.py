"""Alerts against « sorties sèches »: release-date milestones, end of follow-up, review due.

When the SPIP or the PJJ records the expected release date of a young person
(``justice.date_sortie``), the people who prepare what comes after — the case's référent and the
group's coordinator, or, while the group has named no référent, the group's members from a
Mission Locale — are told four months, one month and one week before, and on the day (the
Allier and Ille-et-Vilaine « dedans-dehors » sheets). Six months after the end of the judicial
measure (``justice.date_fin_mesure``) the follow-up ends and the same people are told. Before
each monthly meeting of the group, the référent of each followed case (the coordinator for a
case still awaiting the group's decision) is told that the case is due for review.

Rules that make alerts trustworthy:

- **The charter decides who may learn the date**, as for any read: a person is told only if
  one of the purposes of the case's step lets them see the date field now (role in this case ×
  consent × meeting windows); the review reminder needs only a part in the case.
- **Exactly once per person and milestone.** Each alert is a notification whose ``dedupe_key``
  names the milestone and a keyed tag of the date (:meth:`hub.vault.FieldVault.tag`: the date
  itself never leaves the vault), unique per person: two beats running at once, or a task
  redelivered, add nothing. A date moved earlier or later has another tag, so its milestones
  are due again (rescheduled); the same date published again changes nothing.
- **Catch-up.** The sweep sends, per series, the latest milestone already due that is still
  meaningful (a release not more than :data:`RELEASE_GRACE` past), so a worker down for a week
  sends the alert it missed — once, and not every stale one before it.
- **A case whose exit is recorded (``sortie``) stops every alert.**
- **No personal data in any message**: a kind, the pseudonymous reference and a link.
- **Each alert recorded**: a ``notification.send`` event per person told, naming that person
  as the actor (what they learned, and when), the purpose and article that allowed it and the
  charter version; staged with the notification in one transaction, so neither is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select

from audit.events import Action, Decision
from charter.vocabulary import OrgKind
from consent import local_day
from hub.cases import CaseAccessDeniedError, CaseContext, Cases, charter_ref
from hub.celery_app import enqueue
from hub.models import AuditOutbox, Case, CaseField, GroupMeeting, User
from hub.notifications import notify
from hub.recording import AuditUnavailable, append_staged, new_event, stage
from hub.vault import VaultError

RELEASE_FIELD = "justice.date_sortie"
MEASURE_END_FIELD = "justice.date_fin_mesure"
# Before the release: (notification kind, months before, days before).
RELEASE_MILESTONES: tuple[tuple[str, int, int], ...] = (
    ("release_4m", 4, 0),
    ("release_1m", 1, 0),
    ("release_1w", 0, 7),
    ("release_day", 0, 0),
)
RELEASE_KINDS = tuple(kind for kind, _months, _days in RELEASE_MILESTONES)
# The alerts whose kind tells when a release or a measure's end falls (their mail says less).
DATED_KINDS = frozenset({*RELEASE_KINDS, "follow_up_end"})
FOLLOW_UP_MONTHS = 6  # the follow-up runs until six months after the measure (DESIGN §9)
# How late a missed alert is still worth sending (the worker was down).
RELEASE_GRACE = timedelta(days=7)
FOLLOW_UP_GRACE = timedelta(days=30)
REVIEW_NOTICE = timedelta(days=7)  # the review reminder comes a week before the meeting
CLOSED = "sortie"  # the exit is recorded: nothing more to prepare

logger = logging.getLogger(__name__)


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, on the last day of a shorter month (31 March
    minus one month is the last day of February)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    following = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(day.day, (following - timedelta(days=1)).day))


@dataclass(frozen=True)
class Due:
    """One alert due on a case: its kind, the field whose date it is about (``None`` for the
    review reminder) and the key that makes it once per person."""

    kind: str
    field_id: str | None
    dedupe_key: str


def release_milestone(release: date, today: date) -> str | None:
    """The release alert due on ``today`` for a release on ``release``: the latest milestone
    already reached, while the release is at most :data:`RELEASE_GRACE` past; else ``None``."""
    if today > release + RELEASE_GRACE:
        return None
    due = None
    for kind, months, days in RELEASE_MILESTONES:
        if add_months(release, -months) - timedelta(days=days) <= today:
            due = kind
    return due


def follow_up_due(measure_end: date, today: date) -> bool:
    """Whether the end-of-follow-up alert is due (reached, at most a month ago)."""
    end = add_months(measure_end, FOLLOW_UP_MONTHS)
    return end <= today <= end + FOLLOW_UP_GRACE


@dataclass(frozen=True)
class Allowed:
    """Why a person may be told: their part in the case, and the purpose and article under
    which the charter lets them see the date (both empty for the review reminder)."""

    context: CaseContext
    purpose: str
    article: str


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: notifications created (one per person and alert), and the people
    the charter kept from learning a date (not told, nothing recorded)."""

    told: int
    withheld: int


class Alerts:
    """The alert sweep on one :class:`hub.cases.Cases` service (its session, clock, vault)."""

    def __init__(self, service: Cases) -> None:
        self.service = service
        self.session = service.session

    # -- what is due -----------------------------------------------------------------------

    def _dated(self) -> Iterator[tuple[Case, str, date]]:
        """Every open case's recorded release and measure-end dates, opened from the vault."""
        rows = self.session.execute(
            select(Case, CaseField.field_id, CaseField.ciphertext)
            .join(CaseField, CaseField.case_id == Case.id)
            .where(
                Case.status != CLOSED,
                CaseField.field_id.in_([RELEASE_FIELD, MEASURE_END_FIELD]),
            )
            .order_by(Case.id, CaseField.field_id)
        )
        vault = self.service.vault
        for case, field_id, ciphertext in rows:
            try:
                day = date.fromisoformat(
                    vault.open(case.wrapped_key, case.reference, field_id, ciphertext)
                )
            except (VaultError, ValueError):
                continue  # unreadable: nothing to announce (the case page says so)
            yield case, field_id, day

    def _tag(self, case: Case, field_id: str, day: date) -> str:
        return self.service.vault.tag(case.wrapped_key, case.reference, field_id, day.isoformat())

    def due(self, today: date) -> list[tuple[Case, Due]]:
        """The alerts due on ``today`` (before deciding who may be told)."""
        found: list[tuple[Case, Due]] = []
        for case, field_id, day in self._dated():
            if field_id == RELEASE_FIELD:
                kind = release_milestone(day, today)
            else:
                kind = "follow_up_end" if follow_up_due(day, today) else None
            if kind is not None:
                key = f"alert:{kind}:{case.id}:{self._tag(case, field_id, day)}"
                found.append((case, Due(kind, field_id, key)))
        meetings = self.session.execute(
            select(GroupMeeting.group_id, GroupMeeting.meets_on)
            .where(
                GroupMeeting.meets_on >= today,
                GroupMeeting.meets_on <= today + REVIEW_NOTICE,
            )
            .order_by(GroupMeeting.meets_on)
        )
        next_meeting: dict[int, date] = {}
        for group_id, meets_on in meetings:
            next_meeting.setdefault(group_id, meets_on)
        if next_meeting:
            for case in self.session.scalars(
                select(Case)
                .where(Case.group_id.in_(next_meeting), Case.status != CLOSED)
                .order_by(Case.id)
            ):
                meets_on = next_meeting[case.group_id]
                key = f"alert:review_due:{case.id}:{meets_on.isoformat()}"
                found.append((case, Due("review_due", None, key)))
        return found

    # -- who is told -----------------------------------------------------------------------

    def candidates(self, case: Case, due: Due) -> list[User]:
        """Who should hear of ``due`` (before the charter has its say).

        Release and follow-up: the référent and the coordinator — or, while the case has no
        référent, the coordinator and the group's members from a Mission Locale (who will
        take the path on). Review: the référent of a followed case, the coordinator of a case
        still awaiting the group's decision.
        """
        group = case.group
        people: list[User] = []
        if due.kind == "review_due":
            if case.referent is not None:
                people.append(case.referent)
            elif group.coordinator is not None:
                people.append(group.coordinator)
            return people
        if case.referent is not None:
            people.append(case.referent)
        else:
            people.extend(
                m.user
                for m in group.memberships
                if m.user.organisation.kind == OrgKind.MISSION_LOCALE
            )
        if group.coordinator is not None:
            people.append(group.coordinator)
        unique = {u.id: u for u in people if u.is_active}
        return [unique[i] for i in sorted(unique)]

    def allowed(self, case: Case, user: User, field_id: str | None) -> Allowed | None:
        """The purpose and article under which ``user`` may learn ``field_id``'s date now;
        ``None`` when they take no part in the case or no purpose of its step lets them."""
        service = self.service
        try:
            ctx = service.context(case, user)
        except CaseAccessDeniedError:
            return None
        if field_id is None:
            return Allowed(ctx, "", "")
        state = service.consent_state(case)
        inputs = service.inputs(ctx)
        for purpose in service.purposes_for(ctx):
            # A field the person's charter version no longer holds at the hub (a newer version
            # dropped it, or changed its tier) has no decision: not allowed.
            reason = service.decide_view(ctx, purpose.id, state, inputs).reasons.get(field_id)
            if reason is not None and reason.allowed:
                return Allowed(ctx, purpose.id, reason.article)
        return None

    # -- the sweep -------------------------------------------------------------------------

    def sweep(self) -> SweepResult:
        """Tell everyone what is due today; each case in its own transaction (a crash loses
        nothing: what committed is staged for the log, what did not is found again)."""
        today = local_day(self.service.clock())
        told = withheld = 0
        for case, due in self.due(today):
            try:
                result = self._tell(case, due)
            except Exception:
                # One case that cannot be decided must not stop the alerts of every case
                # after it: logged (ids only), the next sweep tries it again.
                self.session.rollback()
                logger.exception("alert sweep: case %s, %s not sent", case.id, due.kind)
                continue
            told += result.told
            withheld += result.withheld
        return SweepResult(told, withheld)

    def _tell(self, case: Case, due: Due) -> SweepResult:
        """Tell the people ``due`` concerns on ``case``, in one transaction."""
        from hub.tasks import send_notification_mail  # noqa: PLC0415 - tasks import this

        service, session = self.service, self.session
        told = withheld = 0
        staged: list[AuditOutbox] = []
        for user in self.candidates(case, due):
            allowed = self.allowed(case, user, due.field_id)
            if allowed is None:
                withheld += 1
                continue
            created = notify(
                session,
                [user],
                due.kind,
                case_reference=case.reference,
                dedupe_key=due.dedupe_key,
                now=service.clock(),
            )
            for notification_id in created.ids:
                enqueue(session, send_notification_mail, notification_id)
                staged.append(
                    stage(
                        session,
                        new_event(
                            Action.NOTIFICATION_SEND,
                            object_type="case",
                            object_id=case.reference,
                            purpose=allowed.purpose,
                            decision=Decision.ALLOW,
                            rule=allowed.article,
                            charter_version=charter_ref(allowed.context.version),
                            actor=(user.public_id, user.organisation.public_id),
                        ),
                    )
                )
                told += 1
        session.commit()
        if staged:
            try:
                append_staged(session, staged)
            except AuditUnavailable:
                session.rollback()  # the outbox beat appends them once the log is back
        return SweepResult(told, withheld)
