"""Login: mandatory TOTP, one answer for every failure, replay, lockout, sessions."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hub import totp
from hub.accounts import LoginOutcome
from tests.conftest import Account, FakeClock, csrf_token, fresh_code, login, post_form

REFUSED = "Connexion impossible"


def _refused(response: object) -> bool:
    return REFUSED in response.get_data(as_text=True)  # type: ignore[attr-defined]


def test_login_with_password_and_code_opens_a_session(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    response = login(client, clock, territory["cpip"])
    assert response.status_code == 302 and response.location == "/"
    assert "Paul Probation" in client.get("/").get_data(as_text=True)


def test_unknown_user_wrong_password_and_wrong_code_get_the_same_answer(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    answers = []
    for email, password, code in [
        ("personne@demoville.example", cpip.password, fresh_code(clock, cpip.totp_secret)),
        (cpip.email, cpip.password + "x", fresh_code(clock, cpip.totp_secret)),
        (cpip.email, cpip.password, "000000"),
    ]:
        token = csrf_token(client, "/connexion")
        response = client.post(
            "/connexion",
            data={"csrf_token": token, "email": email, "password": password, "code": code},
        )
        body = response.get_data(as_text=True)
        answers.append((response.status_code, body.replace(token, "").replace(email, "")))
    assert answers[0][0] == answers[1][0] == answers[2][0] == 200
    # Same page but for the CSRF token and the echoed email: nothing tells what was wrong.
    assert answers[0][1] == answers[1][1] == answers[2][1]
    assert REFUSED in answers[0][1]


def test_password_alone_is_not_enough(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    token = csrf_token(client, "/connexion")
    response = client.post(
        "/connexion",
        data={"csrf_token": token, "email": cpip.email, "password": cpip.password, "code": ""},
    )
    assert response.status_code == 200 and _refused(response)
    assert client.get("/").status_code == 302


def test_a_totp_code_is_accepted_only_once(
    client: FlaskClient, app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    code = fresh_code(clock, cpip.totp_secret)
    assert login(client, clock, cpip, code=code).status_code == 302
    other = app.test_client()
    response = login(other, clock, cpip, code=code)
    assert response.status_code == 200 and _refused(response)
    assert other.get("/").status_code == 302


def test_an_older_code_is_refused_after_a_newer_one(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    older = totp.code_at(cpip.totp_secret, clock())
    newer = fresh_code(clock, cpip.totp_secret)  # one step later, still inside the drift window
    assert login(app.test_client(), clock, cpip, code=newer).status_code == 302
    assert _refused(login(app.test_client(), clock, cpip, code=older))


def test_the_same_code_in_two_concurrent_logins_opens_one_session(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Given two logins racing with the same valid code, through two separate database sessions
    cpip = territory["cpip"]
    code = fresh_code(clock, cpip.totp_secret)
    state = app.extensions["maillon"]
    barrier = threading.Barrier(2)
    outcomes: list[LoginOutcome] = []

    def attempt() -> None:
        with app.app_context(), state.session_factory() as session:
            service = state.accounts(session)
            user = service.by_email(cpip.email)
            assert user is not None
            barrier.wait()
            result = service.authenticate(cpip.email, cpip.password, code)
            session.commit()
            outcomes.append(result.outcome)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then exactly one wins
    assert sorted(outcomes) == sorted([LoginOutcome.OK, LoginOutcome.BAD_CODE])


def test_recovery_code_works_once(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        service = state.accounts(session)
        user = service.by_email(territory["cpip"].email)
        assert user is not None
        codes = service._new_recovery_codes(user)
        session.commit()
    cpip = territory["cpip"]
    assert (
        login(app.test_client(), clock, cpip, code=codes[0].lower().replace("-", " ")).status_code
        == 302
    )
    assert _refused(login(app.test_client(), clock, cpip, code=codes[0]))


@pytest.mark.config(ratelimit_enabled=False)
def test_ten_failures_lock_the_account_until_the_delay_passes(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    client = app.test_client()
    for _ in range(10):
        assert _refused(login(client, clock, cpip, code="000000"))
    # Locked: even the right credentials are refused, with the same answer
    assert _refused(login(client, clock, cpip))
    clock.advance(minutes=28)  # each login() also moves on one TOTP step (30 s)
    assert _refused(login(client, clock, cpip))
    clock.advance(minutes=2)
    assert login(client, clock, cpip).status_code == 302


@pytest.mark.config(ratelimit_enabled=False)
def test_an_admin_unlocks_a_locked_account(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    for _ in range(10):
        login(app.test_client(), clock, cpip, code="000000")
    assert _refused(login(app.test_client(), clock, cpip))
    admin = app.test_client()
    assert login(admin, clock, territory["admin"]).status_code == 302
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        public_id = state.accounts(session).by_email(cpip.email).public_id  # type: ignore[union-attr]
    detail = f"/admin/utilisateurs/{public_id}"
    assert "Bloqué" in admin.get(detail).get_data(as_text=True)
    response = post_form(admin, detail, f"{detail}/deverrouiller", submit="1")
    assert response.status_code == 302
    assert login(app.test_client(), clock, cpip).status_code == 302


def test_login_regenerates_the_session(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Given an anonymous session carrying a value planted before login
    with client.session_transaction() as session:
        session["planted"] = "attacker"
        session["sid"] = "fixed-by-attacker"
    before = client.get_cookie("maillon")
    assert before is not None
    # When the person logs in
    login(client, clock, territory["cpip"])
    # Then nothing of the old session survives and the cookie is a new one
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["sid"] != "fixed-by-attacker"
    after = client.get_cookie("maillon")
    assert after is not None and after.value != before.value


def test_a_copied_cookie_is_useless_after_logout(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = app.test_client()
    login(client, clock, territory["cpip"])
    cookie = client.get_cookie("maillon")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("maillon", cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the session lives
    post_form(client, "/", "/deconnexion")
    assert client.get("/").status_code == 302
    assert thief.get("/").status_code == 302


def test_logout_ends_every_session_of_the_user(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, clock, territory["cpip"])
    login(phone, clock, territory["cpip"])
    post_form(laptop, "/", "/deconnexion")
    assert phone.get("/").status_code == 302


def test_password_change_ends_other_sessions_but_keeps_this_one(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, clock, cpip)
    login(phone, clock, cpip)
    new_password = "un nouveau mot de passe solide"
    response = post_form(
        laptop,
        "/compte/mot-de-passe",
        current=cpip.password,
        new=new_password,
        new_again=new_password,
    )
    assert response.status_code == 302
    assert laptop.get("/").status_code == 200
    assert phone.get("/").status_code == 302
    changed = Account(cpip.email, new_password, cpip.totp_secret, cpip.roles, cpip.organisation)
    assert login(app.test_client(), clock, changed).status_code == 302


def test_weak_new_password_is_refused_and_nothing_changes(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    client = app.test_client()
    login(client, clock, cpip)
    response = post_form(
        client, "/compte/mot-de-passe", current=cpip.password, new="court", new_again="court"
    )
    assert response.status_code == 200
    assert "au moins 12 caractères" in response.get_data(as_text=True)
    assert login(app.test_client(), clock, cpip).status_code == 302


def test_idle_session_expires(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["cpip"])
    clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/connexion")
    assert client.get("/").status_code == 302


def test_sensitive_action_needs_a_fresh_login(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    login(client, clock, cpip)
    clock.advance(minutes=11)
    client.get("/")  # activity keeps the session alive, but the login is no longer fresh
    clock.advance(minutes=5)
    response = client.get("/compte/mot-de-passe")
    assert response.status_code == 302 and response.location.startswith("/confirmer-identite")
    response = post_form(
        client,
        "/confirmer-identite",
        "/confirmer-identite?next=/compte/mot-de-passe",
        password=cpip.password,
        code=fresh_code(clock, cpip.totp_secret),
    )
    assert response.status_code == 302 and response.location == "/compte/mot-de-passe"
    assert client.get("/compte/mot-de-passe").status_code == 200


def test_no_remember_me_cookie_and_session_cookie_is_http_only(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    response = login(client, clock, territory["cpip"])
    cookies = response.headers.getlist("Set-Cookie")
    assert not any(c.startswith("remember_token") for c in cookies)
    session_cookie = next(c for c in cookies if c.startswith("maillon="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert "Expires" not in session_cookie  # a browser-session cookie: no persistent login


def test_open_redirect_after_login_is_refused(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    token = csrf_token(client, "/connexion")
    response = client.post(
        "/connexion?next=//evil.example/x",
        data={
            "csrf_token": token,
            "email": cpip.email,
            "password": cpip.password,
            "code": fresh_code(clock, cpip.totp_secret),
        },
    )
    assert response.status_code == 302 and response.location == "/"


def test_login_is_rate_limited_per_account(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    statuses = []
    for i in range(11):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{i + 1}"  # different addresses, same account
        statuses.append(login(client, clock, cpip, code="000000").status_code)
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


def test_login_is_rate_limited_per_address(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = app.test_client()
    statuses = []
    for i in range(21):
        token = csrf_token(client, "/connexion")
        statuses.append(
            client.post(
                "/connexion",
                data={
                    "csrf_token": token,
                    "email": f"x{i}@demoville.example",
                    "password": "x",
                    "code": "1",
                },
            ).status_code
        )
    assert statuses[:20] == [200] * 20 and statuses[20] == 429
    token = csrf_token(client, "/connexion")
    refused = client.post(
        "/connexion", data={"csrf_token": token, "email": "a@b.c", "password": "x", "code": "1"}
    )
    assert refused.status_code == 429 and "Trop de tentatives" in refused.get_data(as_text=True)


@pytest.mark.config(ratelimit_enabled=False)
def test_a_lockout_that_expired_starts_a_fresh_count(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = territory["cpip"]
    client = app.test_client()
    for _ in range(10):
        login(client, clock, cpip, code="000000")
    clock.advance(minutes=31)
    # One mistake after the lockout is one mistake, not a new lockout…
    assert _refused(login(client, clock, cpip, code="000000"))
    assert login(client, clock, cpip).status_code == 302
    # …and nine more are still below the threshold
    for _ in range(9):
        login(app.test_client(), clock, cpip, code="000000")
    assert login(app.test_client(), clock, cpip).status_code == 302
