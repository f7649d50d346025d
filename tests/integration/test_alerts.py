"""Release-date alerts against « sorties sèches » (issue 12, point 2): every milestone with an
injected clock, once per person and milestone under two concurrent beats, catch-up after
downtime, a moved date rescheduled, an exit stopping them, the charter deciding who may learn
the date, each alert recorded, and no personal data in any message."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import date, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from audit.events import Action
from consent import local_day
from hub.alerts import Alerts, SweepResult, add_months, follow_up_due, release_milestone
from hub.models import Case, Notification, User
from tests.conftest import Account, FakeClock, login

RELEASE_IN_DAYS = 95  # the demo's followed case (hub.demo)


def _sweep(app: Flask) -> SweepResult:
    state = app.extensions["maillon"]
    with app.app_context(), state.session_factory() as session:
        return Alerts(state.cases(session)).sweep()


def _told(app: Flask) -> list[tuple[str, str, str]]:
    """(kind, e-mail, reference) of every notification, in creation order."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        rows = session.execute(
            select(Notification.kind, User.email, Notification.case_reference)
            .join(User, User.id == Notification.user_id)
            .order_by(Notification.id)
        )
        return [(k, e, r) for k, e, r in rows]


def _kinds_for(app: Flask, reference: str, kinds: set[str]) -> list[tuple[str, str]]:
    return [(k, e.split("@")[0]) for k, e, r in _told(app) if r == reference and k in kinds]


def _case(app: Flask, index: int) -> Case:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        case = list(session.scalars(select(Case).order_by(Case.id)))[index]
        session.expunge(case)
        return case


def _publish(app: Flask, case: Case, email: str, values: dict[str, str]) -> None:
    state = app.extensions["maillon"]
    with app.app_context(), state.session_factory() as session:
        service = state.cases(session)
        case_row = service.by_reference(case.reference)
        assert case_row is not None
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        service.publish(service.context(case_row, user), values)
        session.commit()


RELEASE_KINDS = {"release_4m", "release_1m", "release_1w", "release_day"}


# -- the calendar -----------------------------------------------------------------------------


def test_months_are_calendar_months_on_the_last_day_of_a_shorter_month() -> None:
    assert add_months(date(2027, 3, 31), -1) == date(2027, 2, 28)
    assert add_months(date(2028, 3, 31), -1) == date(2028, 2, 29)
    assert add_months(date(2027, 1, 15), -4) == date(2026, 9, 15)
    assert add_months(date(2026, 11, 30), 6) == date(2027, 5, 30)
    assert add_months(date(2026, 12, 31), 2) == date(2027, 2, 28)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2027, 2, 28), None),  # more than four months ahead
        (date(2027, 3, 1), "release_4m"),
        (date(2027, 5, 31), "release_4m"),
        (date(2027, 6, 1), "release_1m"),
        (date(2027, 6, 23), "release_1m"),
        (date(2027, 6, 24), "release_1w"),
        (date(2027, 7, 1), "release_day"),
        (date(2027, 7, 8), "release_day"),  # a week of grace for a worker that was down
        (date(2027, 7, 9), None),
    ],
)
def test_the_milestone_due_is_the_latest_reached(today: date, expected: str | None) -> None:
    assert release_milestone(date(2027, 7, 1), today) == expected


def test_the_end_of_follow_up_is_six_months_after_the_measure() -> None:
    assert not follow_up_due(date(2027, 1, 10), date(2027, 7, 9))
    assert follow_up_due(date(2027, 1, 10), date(2027, 7, 10))
    assert follow_up_due(date(2027, 1, 10), date(2027, 8, 9))
    assert not follow_up_due(date(2027, 1, 10), date(2027, 8, 10))


# -- the sweep --------------------------------------------------------------------------------


def test_each_milestone_reaches_the_referent_once_as_the_release_comes(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed = _case(app, 0)
    release = local_day(clock()) + timedelta(days=RELEASE_IN_DAYS)
    # Four months ahead is already reached (95 days): the référent is told at once
    first = _sweep(app)
    assert ("release_4m", "conseillere") in _kinds_for(app, followed.reference, RELEASE_KINDS)
    assert first.told > 0
    assert _sweep(app).told == 0  # the next beat: nothing new
    for kind, day in (
        ("release_1m", add_months(release, -1)),
        ("release_1w", release - timedelta(days=7)),
        ("release_day", release),
    ):
        clock.now = clock.now + (day - local_day(clock()))
        clock.advance(days=-1)
        _sweep(app)
        assert kind not in {k for k, _ in _kinds_for(app, followed.reference, RELEASE_KINDS)}
        clock.advance(days=1)
        _sweep(app)
        _sweep(app)
    told = _kinds_for(app, followed.reference, RELEASE_KINDS)
    referent = [k for k, who in told if who == "conseillere"]
    assert referent == ["release_4m", "release_1m", "release_1w", "release_day"]
    # Past the grace, nothing more about this release
    clock.advance(days=30)
    _sweep(app)
    assert _kinds_for(app, followed.reference, RELEASE_KINDS) == told


def test_the_charter_decides_who_may_learn_the_date(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed = _case(app, 0)
    # Seventy days on, one month before the release: no group meeting is near, and the
    # coordinator sees the release date only around meetings (monthly review): the référent
    # is told, the coordinator is not, and nothing is recorded for them
    clock.advance(days=70)
    log = app.extensions["maillon"].audit_log
    before = log.size()
    result = _sweep(app)
    assert result.withheld >= 1
    told = _kinds_for(app, followed.reference, RELEASE_KINDS)
    assert told == [("release_1m", "conseillere")]
    events = [e for e in log.events(before, log.size()) if e.action is Action.NOTIFICATION_SEND]
    assert len(events) == 1


def test_without_a_referent_the_mission_locale_of_the_group_is_told(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # The PJJ's minor has no référent yet: the group's Mission Locale member prepares the
    # release with the coordinator (a group meeting is two days away: they may see the date)
    minor = _case(app, 2)
    release = local_day(clock()) + timedelta(days=20)
    _publish(app, minor, territory["educateur"].email, {"justice.date_sortie": release.isoformat()})
    _sweep(app)
    told = _kinds_for(app, minor.reference, RELEASE_KINDS)
    assert sorted(told) == [("release_1m", "conseillere"), ("release_1m", "coordinatrice")]


def test_two_beats_at_once_tell_each_person_once_and_record_it_once(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    log = app.extensions["maillon"].audit_log
    before = log.size()
    results: list[SweepResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        try:
            barrier.wait()
            results.append(_sweep(app))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    told = _told(app)
    assert len(told) == len(set(told)) == sum(r.told for r in results) > 0
    events = [e for e in log.events(before, log.size()) if e.action is Action.NOTIFICATION_SEND]
    assert len(events) == len(told)


def test_a_worker_back_from_downtime_sends_the_missed_milestone_once(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed = _case(app, 0)
    _sweep(app)
    # Down from now until six days before the release: the one-month alert was missed; the
    # one-week alert is sent, once, and the missed one is not sent late
    clock.advance(days=RELEASE_IN_DAYS - 6)
    _sweep(app)
    _sweep(app)
    assert [
        k for k, who in _kinds_for(app, followed.reference, RELEASE_KINDS) if who == "conseillere"
    ] == [
        "release_4m",
        "release_1w",
    ]


def test_a_moved_date_reschedules_and_the_same_date_again_changes_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed = _case(app, 0)
    release = local_day(clock()) + timedelta(days=RELEASE_IN_DAYS)
    _sweep(app)
    # Published again unchanged: no new alert
    _publish(app, followed, territory["cpip"].email, {"justice.date_sortie": release.isoformat()})
    _sweep(app)
    assert len(_kinds_for(app, followed.reference, RELEASE_KINDS)) == 2  # référent, coordinator
    # Moved earlier, to ten days from now: the one-month alert is due for the new date
    earlier = local_day(clock()) + timedelta(days=10)
    _publish(app, followed, territory["cpip"].email, {"justice.date_sortie": earlier.isoformat()})
    _sweep(app)
    referent = [
        k for k, w in _kinds_for(app, followed.reference, RELEASE_KINDS) if w == "conseillere"
    ]
    assert referent == ["release_4m", "release_1m"]
    # Moved later again, beyond four months: nothing due until the new milestones come
    later = local_day(clock()) + timedelta(days=200)
    _publish(app, followed, territory["cpip"].email, {"justice.date_sortie": later.isoformat()})
    count = len(_told(app))
    _sweep(app)
    assert len([t for t in _told(app)[count:] if t[0] in RELEASE_KINDS]) == 0
    clock.advance(days=200 - 120)  # four months before the new date
    _sweep(app)
    referent = [
        k for k, w in _kinds_for(app, followed.reference, RELEASE_KINDS) if w == "conseillere"
    ]
    assert referent == ["release_4m", "release_1m", "release_4m"]


def test_an_exit_recorded_stops_every_alert(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        for case in session.scalars(select(Case)):
            case.status = "sortie"
        session.commit()
    assert _sweep(app) == SweepResult(0, 0)
    assert _told(app) == []


def test_no_message_holds_personal_data(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from hub.tasks import send_notification_mail

    followed = _case(app, 0)
    # The only free text the hub holds is the référent's name (parcours.referent): give her a
    # marker name and record it on the case
    marker = "Zébulon Marqueur"
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        referent = session.scalar(select(User).where(User.email == territory["conseillere"].email))
        assert referent is not None
        referent.name = marker
        label = f"{marker} ({referent.organisation.name})"
        session.commit()
    _publish(app, followed, territory["conseillere"].email, {"parcours.referent": label})
    release = local_day(clock()) + timedelta(days=RELEASE_IN_DAYS)
    _sweep(app)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        ids = list(session.scalars(select(Notification.id)))
    with app.app_context():
        assert {send_notification_mail(i) for i in ids} == {"sent"}
    # Decoded as a mail reader shows them (the files are quoted-printable: a raw search
    # would miss an accented marker, or a date split by a soft line break)
    mails = [
        f"{m['Subject']}\n\n{m.get_content()}"
        for m in (
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in state.config.mail_outbox.glob("*.eml")
        )
    ]
    client = app.test_client()
    assert login(client, clock, territory["coordinatrice"]).status_code == 302
    page = client.get("/notifications").get_data(as_text=True)
    assert "Sortie à préparer" in page and followed.reference in page
    personal = (
        marker,
        "Zébulon",
        release.isoformat(),
        release.strftime("%d/%m/%Y"),
        "2005-05-12",
        "12/05/2005",
    )
    assert len(mails) == len(ids) > 0
    for text in [*mails, page]:
        for value in personal:
            assert value not in text, value
    # The mail does not even say that a release from detention is near: only that something
    # is due (the milestone is shown in the app, to whom the charter lets see the date)
    dated = [m for m in mails if "chéance" in m]
    assert dated  # the release alert's mail, generic
    for mail in dated:
        assert "sortie" not in mail.lower() and "détention" not in mail.lower()
    for mail in mails:
        assert followed.reference in mail or "C-" in mail


def test_the_end_of_follow_up_and_the_review_due_reach_who_they_concern(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed, signalled, _minor = (_case(app, i) for i in range(3))
    # A meeting in two days: the référent reviews her path, the coordinator the case that
    # awaits the group's decision
    _sweep(app)
    due = {(r, e.split("@")[0]) for k, e, r in _told(app) if k == "review_due"}
    assert (followed.reference, "conseillere") in due
    assert (signalled.reference, "coordinatrice") in due
    assert (followed.reference, "coordinatrice") not in due
    # The measure ended six months ago less a day (while the accord is in force): the day
    # after, the follow-up ends and the référent is told, once
    measure_end = add_months(local_day(clock()), -6) + timedelta(days=1)
    _publish(
        app, followed, territory["cpip"].email, {"justice.date_fin_mesure": measure_end.isoformat()}
    )
    _sweep(app)
    assert not [k for k, _e, _r in _told(app) if k == "follow_up_end"]
    clock.advance(days=1)
    _sweep(app)
    _sweep(app)
    ends = [(r, e.split("@")[0]) for k, e, r in _told(app) if k == "follow_up_end"]
    assert ends.count((followed.reference, "conseillere")) == 1


def test_a_case_that_cannot_be_decided_does_not_stop_the_others(
    app: Flask, clock: FakeClock, territory: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    followed = _case(app, 0)
    original = Alerts._tell

    def broken(self: Alerts, case: Case, due: object) -> SweepResult:
        if case.id == followed.id:
            raise RuntimeError("undecidable")
        return original(self, case, due)  # type: ignore[arg-type]

    monkeypatch.setattr(Alerts, "_tell", broken)
    _sweep(app)
    told = {r for _k, _e, r in _told(app)}
    assert followed.reference not in told and len(told) >= 2  # the other cases' reviews
    monkeypatch.setattr(Alerts, "_tell", original)
    _sweep(app)  # the next sweep sends what the broken one could not
    assert followed.reference in {r for _k, _e, r in _told(app)}
