"""A home for each role (issue 12, point 1): what needs the person's attention, each item
linking to where it is done, paginated, and every read recorded."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.events import Action, Event
from hub.alerts import Alerts
from hub.models import Case, GroupMembership, OperationalGroup, User
from tests.conftest import Account, FakeClock, login, post_form


def _as(app: Flask, clock: FakeClock, account: Account) -> FlaskClient:
    client = app.test_client()
    assert login(client, clock, account).status_code == 302
    return client


def _home(client: FlaskClient, query: str = "") -> str:
    response = client.get("/" + query)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _events_since(app: Flask, before: int) -> list[Event]:
    log = app.extensions["maillon"].audit_log
    return list(log.events(before, log.size()))


def _refs(app: Flask) -> list[str]:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return list(session.scalars(select(Case.reference).order_by(Case.id)))


def test_the_referent_sees_their_paths_with_the_release_coming_and_the_review_due(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed, signalled, minor = _refs(app)
    state = app.extensions["maillon"]
    with app.app_context(), state.session_factory() as session:
        Alerts(state.cases(session)).sweep()
    client = _as(app, clock, territory["conseillere"])
    log = state.audit_log
    before = log.size()
    html = _home(client)
    assert "Mes dossiers" in html
    assert f'href="/dossiers/{followed}"' in html
    assert signalled not in html and minor not in html  # not hers: in « Dossiers » only
    assert "Sortie à préparer" in html  # the alert she was sent, not the date itself
    meeting = (clock().date() + timedelta(days=2)).strftime("%d/%m/%Y")
    assert f"À revoir à la réunion du {meeting}" in html
    events = _events_since(app, before)
    assert [(e.action, e.object_id) for e in events] == [(Action.CASE_LIST, "main.index")]


def test_the_coordinator_sees_cases_awaiting_a_decision_the_next_meeting_and_unsigned_partners(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    followed, signalled, minor = _refs(app)
    client = _as(app, clock, territory["coordinatrice"])
    html = _home(client)
    assert "Coordination : " in html
    awaiting = html.split("En attente d'une décision du groupe", 1)[1].split("</dd>", 1)[0]
    assert signalled in awaiting and minor in awaiting and followed not in awaiting
    assert (clock().date() + timedelta(days=2)).strftime("%d/%m/%Y") in html
    assert "signée par tous les partenaires" in html
    # A new partner sits in the group without having signed: named on the coordinator's home
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup))
        user = session.scalar(select(User).where(User.email == territory["logement"].email))
        assert group is not None and user is not None
        group.memberships.append(GroupMembership(user=user, added_at=clock()))
        org_name = user.organisation.name
        session.commit()
    html = _home(client)
    assert f"Pas encore signée par : {org_name}" in html.replace("&#39;", "'")


def test_the_dpo_sees_integrity_anomalies_and_exceptions_and_the_read_is_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = _as(app, clock, territory["dpo"])
    log = app.extensions["maillon"].audit_log
    before = log.size()
    html = _home(client)
    assert "Intégrité du journal" in html
    assert "Signalements à examiner" in html
    minor = _refs(app)[2]
    assert f"dossier {minor}" in html and "/dpo/consentements/exception/" in html
    assert "Mes dossiers" not in html  # the DPO takes no part in cases
    events = _events_since(app, before)
    assert [(e.action, e.object_type, e.purpose) for e in events] == [
        (Action.AUDIT_READ, "audit_log", "integrity"),
        (Action.AUDIT_READ, "page", "consent"),  # the exceptions listed
    ]


def test_the_admin_sees_pending_invitations_and_locked_accounts(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = _as(app, clock, territory["admin"])
    html = _home(client)
    assert "Invitations en attente" in html and "Comptes verrouillés" in html
    # Someone locks themselves out; an invitation is sent
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == territory["logement"].email))
        assert user is not None
        user.locked_until = clock() + timedelta(minutes=15)
        org_id = user.organisation_id
        session.commit()
    response = post_form(
        client,
        "/admin/utilisateurs/nouveau",
        name="Nina Nouvelle",
        email="nina@ml.example",
        organisation=str(org_id),
        roles=["agent"],
    )
    assert response.status_code == 302
    log = state.audit_log
    before = log.size()
    html = _home(client)
    pending = html.split("Invitations en attente", 1)[1].split("</dd>", 1)[0]
    locked = html.split("Comptes verrouillés", 1)[1].split("</dd>", 1)[0]
    assert "Nina Nouvelle" in pending and "Hugo Logement" in locked
    events = _events_since(app, before)
    assert [(e.action, e.object_id) for e in events] == [(Action.ADMIN_READ, "main.index")]
    # Once the lock has run out, the account leaves the list
    clock.advance(minutes=16)
    locked = _home(client).split("Comptes verrouillés", 1)[1].split("</dd>", 1)[0]
    assert "Hugo Logement" not in locked


def test_my_cases_are_paginated(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with app.app_context(), state.session_factory() as session:
        service = state.cases(session)
        people = {
            u.email: u
            for u in session.scalars(select(User))
            if u.email in {territory["cpip"].email, territory["coordinatrice"].email}
        }
        group = session.scalar(select(OperationalGroup))
        assert group is not None
        referent = session.scalar(select(User).where(User.email == territory["conseillere"].email))
        for _ in range(26):
            case, _d, _v = service.open_case(
                group, people[territory["cpip"].email], {"identite.date_naissance": "2004-01-02"}
            )
            service.name_referent(
                service.context(case, people[territory["coordinatrice"].email]), referent
            )
        session.commit()
    client = _as(app, clock, territory["conseillere"])
    first = _home(client)
    assert "27 dossier(s) en cours" in first
    assert 'rel="next"' in first
    second = _home(client, "?page=2")
    assert second.count('href="/dossiers/C-') == 2


def test_my_cases_are_those_i_take_part_in_now(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from hub.models import CasePartner

    followed = _refs(app)[0]
    client = _as(app, clock, territory["cpip"])
    assert followed in _home(client)  # the SPIP agent who signalled is on the team
    # Once the SPIP no longer follows the case, its agent takes no part: not listed either
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        case = session.scalar(select(Case).where(Case.reference == followed))
        assert case is not None
        spip = next(p for p in case.partners if p.organisation.kind == "spip")
        session.delete(spip)
        session.commit()
        assert session.get(CasePartner, (case.id, spip.organisation_id)) is None
    # (he still sees it as a member of the group, under « Dossiers »: not as his own case)
    assert followed not in _home(client)
