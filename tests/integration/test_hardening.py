"""What an attacker tried (issue 9): hostile redirects, crashes logged without personal data,
edge dates, cross-site reads, purposes bound to the case's step, separation of duties."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from hub import errors
from hub.security import safe_next
from tests.conftest import Account, FakeClock, csrf_token, login


@pytest.mark.parametrize(
    "target",
    [
        "/x\r\nSet-Cookie: pris=1",
        "/x\nLocation: https://evil.example",
        "/x\x00",
        "/x\x7f",
        "/x\u0085y",
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        " /dossiers/",
        "javascript:alert(1)",
        "/" + "a" * 3000,
    ],
)
def test_a_hostile_next_is_refused(target: str) -> None:
    assert safe_next(target) is None


def test_only_the_validated_parts_of_next_are_returned() -> None:
    assert safe_next("/dossiers/?q=C-12#haut") == "/dossiers/?q=C-12"
    assert safe_next("/charte/g1/") == "/charte/g1/"


@pytest.mark.parametrize("field", ["next_form", "next_login", "next_reauth"])
def test_a_crlf_in_next_never_reaches_a_header(
    app: Flask, clock: FakeClock, territory: dict[str, Account], field: str
) -> None:
    client = app.test_client()
    hostile = "/dossiers/\r\nSet-Cookie: pris=1"
    if field == "next_form":
        token = csrf_token(client, "/connexion")
        response = client.post("/langue", data={"csrf_token": token, "lang": "en", "next": hostile})
    elif field == "next_login":
        token = csrf_token(client, "/connexion")
        account = territory["cpip"]
        from tests.conftest import fresh_code

        response = client.post(
            "/connexion?next=" + hostile.replace("\r", "%0D").replace("\n", "%0A"),
            data={
                "csrf_token": token,
                "email": account.email,
                "password": account.password,
                "code": fresh_code(clock, account.totp_secret),
            },
        )
    else:
        login(client, clock, territory["cpip"])
        response = client.get("/confirmer-identite?next=%2Fx%0D%0ASet-Cookie%3A%20pris%3D1")
    assert response.status_code in (200, 302)
    assert "pris" not in response.headers.get("Set-Cookie", "")
    assert "\n" not in response.headers.get("Location", "")


def test_an_unexpected_error_is_logged_with_its_request_id_and_no_personal_data(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a view that fails with personal data in its exception message
    @app.route("/__boom")
    def boom() -> Any:
        raise RuntimeError("Kevin Dupont né le 12/05/2005")

    app.register_error_handler(Exception, errors._handle_unexpected)
    from hub import security

    security.PUBLIC_ENDPOINTS = security.PUBLIC_ENDPOINTS | {"boom"}
    try:
        with caplog.at_level(logging.ERROR, logger=app.logger.name):
            response = app.test_client().get("/__boom")
    finally:
        security.PUBLIC_ENDPOINTS = security.PUBLIC_ENDPOINTS - {"boom"}
    # Then the person gets the plain 500 page, and the operators a line they can act on
    assert response.status_code == 500
    assert "Kevin" not in response.get_data(as_text=True)
    (line,) = [r.getMessage() for r in caplog.records if "unexpected error" in r.getMessage()]
    assert (
        "endpoint=boom" in line and "exception=RuntimeError" in line and "test_hardening.py" in line
    )
    assert "request_id=" in line and response.headers["X-Request-Id"] in line
    assert "Kevin" not in line and "2005" not in line


def test_an_unknown_case_and_a_refused_one_answer_alike_and_both_are_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from sqlalchemy import select

    from audit.events import Action
    from hub.models import Case

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        real = session.scalar(select(Case.reference).order_by(Case.id).limit(1))
    client = app.test_client()
    login(client, clock, territory["logement"])  # a partner outside the group: refused
    log = state.audit_log
    answers = []
    for reference in (real, "C-ZZZZ-ZZZZ"):
        before = log.size()
        response = client.get(f"/dossiers/{reference}")
        (event,) = log.events(before, log.size())
        answers.append(
            (response.status_code, response.get_data(as_text=True).count("Vous ne suivez pas"))
        )
        assert (event.action, event.decision.value) == (Action.CASE_VIEW, "deny")
    assert answers[0] == answers[1] == (403, 1)


# -- edge dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/dpo/journal?end=9999-12-31",
        "/dpo/journal?start=0001-01-01",
        "/dpo/journal?start=2026-02-30",
        "/dpo/export.csv?end=9999-12-31",
        "/dpo/export.json?start=0001-01-01",
        "/dpo/rapport/objet/case/C-0000-0000?end=9999-12-31",
        "/dpo/rapport/personne/x?start=0001-01-01",
    ],
)
def test_edge_dates_in_the_dpo_console_are_refused_not_crashing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], path: str
) -> None:
    client = app.test_client()
    login(client, clock, territory["dpo"])
    response = client.get(path)
    assert response.status_code < 500
    if response.status_code == 200 and "text/html" in response.content_type:
        assert "Saisissez une date" in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["?end=9999-12-31", "?start=0001-01-01", "?start=x&end=y"])
def test_edge_dates_in_the_charter_review_are_refused_not_crashing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], query: str
) -> None:
    from sqlalchemy import select

    from hub.models import OperationalGroup

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup.public_id))
    client = app.test_client()
    login(client, clock, territory["coordinatrice"])
    for suffix in ("bilan", "bilan.pdf"):
        assert client.get(f"/charte/{group}/{suffix}{query}").status_code == 200


def test_a_meeting_far_in_the_past_is_refused_and_a_stored_one_breaks_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from datetime import date

    from sqlalchemy import select

    from hub.models import Case, GroupMeeting, OperationalGroup

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup))
        assert group is not None
        public_id, group_id = group.public_id, group.id
        reference = session.scalar(select(Case.reference).order_by(Case.id).limit(1))
    coordinator = app.test_client()
    login(coordinator, clock, territory["coordinatrice"])
    page = f"/dossiers/reunions/{public_id}"
    token = csrf_token(coordinator, page)
    refused = coordinator.post(page, data={"csrf_token": token, "day": "0001-01-01"})
    assert refused.status_code == 200 and "01/01/2000" in refused.get_data(as_text=True)
    # A meeting stored at the edge of the calendar (old data, a direct import) breaks no page…
    with state.session_factory() as session:
        for day in (date.min, date.max):
            session.add(GroupMeeting(group_id=group_id, meets_on=day, created_at=clock()))
        session.commit()
        ids = [
            m.id
            for m in session.scalars(select(GroupMeeting))
            if m.meets_on in (date.min, date.max)
        ]
    referent = app.test_client()
    login(referent, clock, territory["conseillere"])
    for purpose in ("suivi_parcours", "revue_mensuelle"):
        assert referent.get(f"/dossiers/{reference}?finalite={purpose}").status_code == 200
    # …and the coordinator corrects one and cancels the other
    moved = coordinator.post(
        f"{page}/{ids[0]}", data={"csrf_token": token, "edit-day": clock().date().isoformat()}
    )
    assert moved.status_code == 302
    cancelled = coordinator.post(f"{page}/{ids[1]}", data={"csrf_token": token, "annuler": "1"})
    assert cancelled.status_code == 302
    with state.session_factory() as session:
        days = set(session.scalars(select(GroupMeeting.meets_on)))
    assert date.min not in days and date.max not in days and clock().date() in days
    # Someone else cannot
    cpip = app.test_client()
    login(cpip, clock, territory["cpip"])
    other = cpip.post(f"{page}/{ids[0]}", data={"csrf_token": token, "annuler": "1"})
    assert other.status_code in (400, 403)


def test_a_case_date_beyond_2100_is_refused(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from sqlalchemy import select

    from hub.models import Case

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        reference = session.scalar(select(Case.reference).order_by(Case.id).limit(1))
    client = app.test_client()
    login(client, clock, territory["cpip"])
    path = f"/dossiers/{reference}/informations"
    token = csrf_token(client, path)
    response = client.post(path, data={"csrf_token": token, "justice.date_sortie": "9999-12-31"})
    assert response.status_code == 400 and "31/12/2100" in response.get_data(as_text=True)


# -- cross-site reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_a_link_from_another_site_reads_nothing_in_the_persons_name(
    app: Flask, clock: FakeClock, territory: dict[str, Account], fetch_site: str
) -> None:
    from sqlalchemy import select

    from hub.models import Case

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        reference = session.scalar(select(Case.reference).order_by(Case.id).limit(1))
    client = app.test_client()
    login(client, clock, territory["conseillere"])
    path = f"/dossiers/{reference}?finalite=suivi_parcours"
    log = state.audit_log
    before = log.size()
    # Given a link on another site, followed by a logged-in référent's browser
    landed = client.get(path, headers={"Sec-Fetch-Site": fetch_site})
    html = landed.get_data(as_text=True)
    # Then nothing is read nor recorded, and the page offers to go on from Maillon itself
    assert landed.status_code == 200 and "autre site" in html
    assert "12/05/2005" not in html and log.size() == before
    assert f'href="/dossiers/{reference}?finalite=suivi_parcours"' in html.replace("&amp;", "&")
    # The same link followed from Maillon (or typed) opens the case, recorded
    opened = client.get(path, headers={"Sec-Fetch-Site": "same-origin"})
    assert "12/05/2005" in opened.get_data(as_text=True) and log.size() == before + 1
    typed = client.get(path, headers={"Sec-Fetch-Site": "none"})
    assert typed.status_code == 200 and "12/05/2005" in typed.get_data(as_text=True)
    # The home page may be linked to
    assert "autre site" not in client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).get_data(
        as_text=True
    )
