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
