"""Locust users for ``make load``: partners, DPOs and an SPIP's system, and the hello baseline.

Run by ``python -m tests.load.run_load`` (which seeds the territory and starts the servers); by
hand: ``LOAD_SEED_FILE=seed.json python -m locust -f tests/load/locustfile.py --headless …``.

- :class:`Partner` — an agent of the SPIP, the Mission Locale, the PJJ or the commune, member of
  the operational group: logs in (password + TOTP), lists the cases, reads cases for a purpose,
  records dates through the case form (organisations whose charter rights allow it), goes back
  to the home page, logs out and in again.
- :class:`Dpo` — the data-protection officer: log integrity page, journal searches by case, by
  action and decision, by period, "who accessed this file" reports.
- :class:`SpipSystem` — an SPIP's software on the API: access tokens from signed assertions,
  case reads, ``POST /api/v1/dossiers/<ref>/informations``.
- :class:`Hello` — the hello-world baseline (``tests.benchmarks.hello_app``).

Each simulated person has an account of their own (a TOTP code is accepted once per account and
time step, and a logout ends every session of the account) and an address of their own in
``X-Forwarded-For``, as nginx would send it: the per-address login limit (20 POSTs a minute)
applies per person, unchanged. Cookies are kept by hand: the hub's production cookies are
``Secure`` ``__Host-`` cookies and the load goes over plain HTTP on loopback, as nginx's
upstream does. Any answer other than the expected one is a failure, recorded with its status,
request id and an excerpt of the body (also appended to ``LOAD_FAILURE_LOG``).

Settings (environment): ``LOAD_SEED_FILE`` (required for the hub users), ``LOAD_THINK``
(seconds between a person's actions, ``MIN-MAX``, default ``1-5``), ``LOAD_DPO_USERS`` and
``LOAD_API_USERS`` (how many of the users are DPOs and systems, default 3 each),
``LOAD_FAILURE_LOG``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task
from locust.exception import StopUser

from hub import totp
from tests.load.clients import TOKEN_RENEW_SECONDS, forwarded_headers, load_key, token_form
from tests.load.territory import LoadAccount, LoadApiClient, LoadTerritory, load_territory

CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
# Most reads are for the follow-up of the path; the others state the other purposes.
PURPOSE_WEIGHTS = {"suivi_parcours": 6, "revue_mensuelle": 2, "orientation": 1, "reperage": 1}
FIRST_WRITTEN_DAY = date(2027, 1, 1)

Check = Callable[[Any], str | None]


def _think() -> Callable[[HttpUser], float]:
    low, _sep, high = os.environ.get("LOAD_THINK", "1-5").partition("-")
    return between(float(low), float(high or low))


class _Registry:
    """What the simulated users of one locust process share: the seeded territory (read once)
    and the accounts, systems and addresses not handed out yet."""

    def __init__(self) -> None:
        self._territory: LoadTerritory | None = None
        self._accounts: dict[str, Iterator[LoadAccount]] = {}
        self._systems: Iterator[LoadApiClient] | None = None
        self.addresses = itertools.count()

    def territory(self) -> LoadTerritory:
        """The seeded territory (``LOAD_SEED_FILE``)."""
        if self._territory is None:
            path = os.environ.get("LOAD_SEED_FILE")
            if not path:
                raise StopUser("LOAD_SEED_FILE is not set")
            self._territory = load_territory(Path(path))
        return self._territory

    def account(self, pool: str) -> LoadAccount:
        """A seeded account of ``pool`` (``partners`` or ``dpos``) nobody else uses."""
        if pool not in self._accounts:
            self._accounts[pool] = iter(getattr(self.territory(), pool))
        try:
            return next(self._accounts[pool])
        except StopIteration:
            raise StopUser(f"more {pool} users than seeded accounts") from None

    def system(self) -> LoadApiClient:
        """A seeded API client nobody else uses."""
        if self._systems is None:
            self._systems = iter(self.territory().api_clients)
        try:
            return next(self._systems)
        except StopIteration:
            raise StopUser("more systems than seeded API clients") from None


REGISTRY = _Registry()


def territory() -> LoadTerritory:
    """The seeded territory."""
    return REGISTRY.territory()


def pick_purpose(reference: str) -> str:
    """A purpose that applies at the case's step, as the page offers them (weighted)."""
    land = territory()
    offered = land.case_purposes.get(reference) or land.purposes
    weights = [PURPOSE_WEIGHTS.get(p, 1) for p in offered]
    return random.choices(offered, weights=weights)[0]


def _gist(body: str) -> str:
    """What a failed answer says, in a few words: its API error code or page title."""
    found = re.search(r'"error":\s*"([^"]+)"', body) or re.search(r"<title>([^<]+)</title>", body)
    return found.group(1) if found else body[:80]


def _record_failure(name: str, status: int, request_id: str, detail: str, body: str) -> None:
    """Append one failed request to ``LOAD_FAILURE_LOG`` (JSON lines)."""
    path = os.environ.get("LOAD_FAILURE_LOG")
    if not path:
        return
    line = {
        "time": datetime.now(UTC).isoformat(),
        "request": name,
        "status": status,
        "request_id": request_id,
        "detail": detail,
        "body": body,
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def status_is(*expected: int) -> Check:
    """An expectation on the status only."""

    def check(response: Any) -> str | None:
        return None if response.status_code in expected else f"status {response.status_code}"

    return check


def redirect_to(prefix: str) -> Check:
    """A 302 whose ``Location`` starts with ``prefix``."""

    def check(response: Any) -> str | None:
        location = response.headers.get("Location", "")
        if response.status_code == 302 and location.startswith(prefix):
            return None
        return f"status {response.status_code} to {location!r}, expected 302 to {prefix!r}…"

    return check


def page_with(text: str) -> Check:
    """A 200 whose body contains ``text``."""

    def check(response: Any) -> str | None:
        if response.status_code != 200:
            return f"status {response.status_code}"
        return None if text in response.text else f"200 without {text!r}"

    return check


class HubUser(HttpUser):
    """A client behind nginx: forwarded headers, its own address, cookies kept by hand."""

    abstract = True
    wait_time = _think()

    def on_start(self) -> None:
        """Give this user its address in X-Forwarded-For."""
        self.cookies: dict[str, str] = {}
        self.base_headers = forwarded_headers(next(REGISTRY.addresses))

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        check: Check,
        data: dict[str, str] | str | None = None,
        json_body: object = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request, judged by ``check``; redirects are not followed (they are checked)."""
        sent = {**self.base_headers, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        with self.client.request(
            method,
            path,
            name=name,
            data=data,
            json=json_body,
            headers=sent,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            self._keep_cookies(response)
            problem = check(response)
            if problem is None:
                response.success()
            else:
                request_id = response.headers.get("X-Request-Id", "")
                excerpt = re.sub(r"\s+", " ", response.text or "")[:300]
                # Grouped by locust on this text: the request id goes to LOAD_FAILURE_LOG only.
                response.failure(f"{problem}: {_gist(excerpt)}")
                _record_failure(
                    f"{method} {name}",
                    response.status_code,
                    request_id,
                    f"{problem}: {_gist(excerpt)}",
                    excerpt,
                )
        return response

    def _keep_cookies(self, response: Any) -> None:
        raw = getattr(response, "raw", None)
        headers = getattr(raw, "headers", None)
        values = headers.getlist("Set-Cookie") if headers is not None else []
        for value in values:
            cookie_name, _eq, rest = value.partition("=")
            cookie_value, _sep, attributes = rest.partition(";")
            if not cookie_value or "max-age=0" in attributes.lower():
                self.cookies.pop(cookie_name.strip(), None)
            else:
                self.cookies[cookie_name.strip()] = cookie_value
        self.client.cookies.clear()  # the session's own jar would not send Secure cookies


class WebPerson(HubUser):
    """Someone who logs in with password and TOTP on the web pages."""

    abstract = True
    pool = "partners"

    def on_start(self) -> None:
        """Take an account of one's own and log in."""
        super().on_start()
        self.account = REGISTRY.account(self.pool)
        self.last_step = -1
        self.csrf = ""
        self.login()

    def login(self) -> None:
        """Password and a TOTP code of a time step this account has not used yet."""
        while totp.step_at(datetime.now(UTC)) <= self.last_step:
            time.sleep(totp.INTERVAL - time.time() % totp.INTERVAL + 0.2)
        page = self.call("GET", "/connexion", name="/connexion", check=page_with("csrf_token"))
        match = CSRF.search(page.text or "")
        if match is None:
            return
        now = datetime.now(UTC)
        self.last_step = totp.step_at(now)
        self.call(
            "POST",
            "/connexion",
            name="/connexion",
            check=redirect_to("/"),
            data={
                "csrf_token": match.group(1),
                "email": self.account.email,
                "password": self.account.password,
                "code": totp.code_at(self.account.totp_secret, now),
            },
        )
        self.home()

    @task(3)
    def home(self) -> None:
        """The home page (the landing page after login); keeps the session's CSRF token."""
        page = self.call("GET", "/", name="/", check=page_with("csrf_token"))
        match = CSRF.search(page.text or "")
        if match is not None:
            self.csrf = match.group(1)

    @task(1)
    def logout_and_login(self) -> None:
        """Log out (every session of the account ends) and log in again."""
        self.call(
            "POST",
            "/deconnexion",
            name="/deconnexion",
            check=redirect_to("/connexion"),
            data={"csrf_token": self.csrf},
        )
        self.cookies.clear()
        self.login()


class Partner(WebPerson):
    """A partner agent, member of the operational group."""

    weight = 10

    @task(10)
    def case_list(self) -> None:
        """The cases one follows (first or second page)."""
        page = random.choice(("", "", "", "?page=2"))
        self.call("GET", f"/dossiers/{page}", name="/dossiers/ (liste)", check=status_is(200))

    @task(20)
    def case_read(self) -> None:
        """A case for a stated purpose (the need-to-know view, recorded)."""
        reference = random.choice(territory().cases)
        purpose = pick_purpose(reference)
        self.call(
            "GET",
            f"/dossiers/{reference}?finalite={purpose}",
            name="/dossiers/[ref]?finalite=…",
            check=page_with(reference),
        )

    @task(5)
    def case_write(self) -> None:
        """Record a date on a case through its form (only where the charter lets one's
        organisation publish); the answer redirects to the case, which is then read."""
        if not self.account.writable:
            self.case_read()
            return
        reference = random.choice(territory().cases)
        form = self.call(
            "GET",
            f"/dossiers/{reference}/informations",
            name="/dossiers/[ref]/informations",
            check=page_with("csrf_token"),
        )
        match = CSRF.search(form.text or "")
        if match is None:
            return
        field = random.choice(self.account.writable)
        day = FIRST_WRITTEN_DAY + timedelta(days=random.randrange(1000))
        answer = self.call(
            "POST",
            f"/dossiers/{reference}/informations",
            name="/dossiers/[ref]/informations",
            check=redirect_to(f"/dossiers/{reference}"),
            data={"csrf_token": match.group(1), field: day.isoformat()},
        )
        if answer.status_code == 302:
            self.call(
                "GET",
                answer.headers["Location"],
                name="/dossiers/[ref] (after a write)",
                check=page_with(reference),
            )


class Dpo(WebPerson):
    """The data-protection officer searching the journal."""

    fixed_count = int(os.environ.get("LOAD_DPO_USERS", "3"))
    pool = "dpos"

    @task(2)
    def integrity(self) -> None:
        """The log's size, last signed checkpoint and root check."""
        self.call("GET", "/dpo/", name="/dpo/", check=status_is(200))

    @task(6)
    def journal_by_case(self) -> None:
        """Every event about one case."""
        reference = random.choice(territory().cases)
        self.call(
            "GET",
            f"/dpo/journal?object_type=case&object_id={reference}",
            name="/dpo/journal?object=case",
            check=status_is(200),
        )

    @task(4)
    def journal_by_action(self) -> None:
        """Recent allowed or refused events of one action."""
        action, decision = random.choice(
            [("case.update", "allow"), ("case.view", "allow"), ("case.view", "deny")]
        )
        self.call(
            "GET",
            f"/dpo/journal?action={action}&decision={decision}",
            name="/dpo/journal?action&decision",
            check=status_is(200),
        )

    @task(2)
    def journal_today(self) -> None:
        """Today's events (Paris day)."""
        today = datetime.now(UTC).date().isoformat()
        self.call(
            "GET",
            f"/dpo/journal?start={today}&end={today}",
            name="/dpo/journal?period",
            check=status_is(200),
        )

    @task(2)
    def who_accessed(self) -> None:
        """Who accessed this file."""
        reference = random.choice(territory().cases)
        self.call(
            "GET",
            f"/dpo/rapport/objet/case/{reference}",
            name="/dpo/rapport/objet/case/[ref]",
            check=page_with(reference),
        )


class SpipSystem(HubUser):
    """An SPIP's case software on the API."""

    fixed_count = int(os.environ.get("LOAD_API_USERS", "3"))

    def on_start(self) -> None:
        """Take a registered client of one's own and get a first access token."""
        super().on_start()
        self.system = REGISTRY.system()
        self.key = load_key(self.system.private_key_pem)
        self.bearer: dict[str, str] = {}
        self.token_at = 0.0
        self.renew_token()

    def renew_token(self) -> None:
        """``POST /api/v1/token`` with a fresh signed assertion."""
        answer = self.call(
            "POST",
            "/api/v1/token",
            name="/api/v1/token",
            check=page_with("access_token"),
            data=token_form(self.key, self.system.client_id, territory().base_url),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if answer.status_code == 200:
            self.bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            self.token_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self.token_at > TOKEN_RENEW_SECONDS:
            self.renew_token()

    @task(4)
    def api_read(self) -> None:
        """A case as the charter lets the SPIP's system see it."""
        self._fresh()
        reference = random.choice(territory().cases)
        self.call(
            "GET",
            f"/api/v1/dossiers/{reference}?finalite={pick_purpose(reference)}",
            name="/api/v1/dossiers/[ref]",
            check=page_with(reference),
            headers=self.bearer,
        )

    @task(2)
    def api_write(self) -> None:
        """A release or end-of-measure date pushed by the SPIP's software."""
        self._fresh()
        reference = random.choice(territory().cases)
        field = random.choice(self.system.writable)
        day = FIRST_WRITTEN_DAY + timedelta(days=random.randrange(1000))
        self.call(
            "POST",
            f"/api/v1/dossiers/{reference}/informations",
            name="/api/v1/dossiers/[ref]/informations",
            check=page_with(reference),
            json_body={"fields": {field: day.isoformat()}},
            headers=self.bearer,
        )


class Hello(HttpUser):
    """The baseline: a bare Flask endpoint under the same gunicorn settings."""

    wait_time = _think()

    @task
    def hello(self) -> None:
        """GET / → ``bonjour``."""
        with self.client.get("/", name="/ (hello)", catch_response=True) as response:
            if response.status_code == 200 and response.text == "bonjour":
                response.success()
            else:
                response.failure(f"status {response.status_code}")
