"""The DPO console (issue 3 point 7): integrity status, journal search, access reports as pages
and PDF, exports, anomaly findings and their review — for the DPO only, every read recorded
first, nothing served when the audit store cannot record it.

On PostgreSQL the audit database is shared by the whole session: tests compare log sizes
before and after, and seed events on objects and people unique to the test.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

import hub.pdf
from audit.checkpoint import Checkpoint, NoteSigner
from audit.errors import LogUnavailable
from audit.events import Action, Decision, Event, NewEvent, to_micros
from audit.queries import EventFilter
from audit.store import AuditLog, checkpoints_table, make_audit_engine
from hub import anomaly_review, dpo_reports
from hub.anomaly_review import AnomalyFinding, AnomalyScan
from hub.dpo_tasks import detect_anomalies
from hub.migrate import downgrade, upgrade
from hub.models import Case, Organisation, User
from tests.conftest import (
    Account,
    FakeClock,
    csrf_token,
    login,
)

PARIS = ZoneInfo("Europe/Paris")
NOT_DPO = ["admin", "cpip", "conseillere", "coordinatrice"]


# -- helpers -------------------------------------------------------------------------------


def _log(app: Flask) -> AuditLog:
    log: AuditLog = app.extensions["maillon"].audit_log
    return log


def _during(app: Flask, action: Any) -> tuple[Any, list[Event]]:
    log = _log(app)
    before = log.size()
    result = action()
    return result, list(log.events(before, log.size()))


def _person(app: Flask, account: Account) -> tuple[str, str]:
    """(user public id, organisation public id) of a demo account."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == account.email))
        assert user is not None
        return user.public_id, user.organisation.public_id


def _client(app: Flask, clock: FakeClock, account: Account) -> FlaskClient:
    client = app.test_client()
    assert login(client, clock, account).status_code == 302
    return client


def _case() -> str:
    return f"C-{uuid.uuid4().hex[:10]}"


def _seed(
    app: Flask,
    who: tuple[str, str],
    object_id: str,
    *,
    action: Action = Action.CASE_VIEW,
    decision: Decision = Decision.ALLOW,
    object_type: str = "case",
) -> Event:
    return _log(app).append(
        NewEvent(
            action=action,
            actor_user=who[0],
            actor_org=who[1],
            object_type=object_type,
            object_id=object_id,
            purpose="suivi.parcours",
            decision=decision,
            rule="art.5" if decision == Decision.ALLOW else "art.9",
            charter_version="1",
        )
    )


def _at_paris(clock: FakeClock, *args: int) -> None:
    """Set the clock to a local Paris time (in the past: the shared PostgreSQL log must not
    receive future events, which retention tests would mistake for recent ones)."""
    clock.now = datetime(*args, tzinfo=PARIS).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture
def dpo(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> FlaskClient:
    return _client(app, clock, territory["dpo"])


@pytest.fixture
def finding_id(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> int:
    """A stored finding (as the periodic task would have stored it)."""
    user, org = _person(app, territory["cpip"])
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        finding = AnomalyFinding(
            rule="bulk_access",
            actor_user=user,
            actor_org=org,
            window_start=clock() - timedelta(minutes=40),
            window_end=clock() - timedelta(minutes=10),
            event_count=42,
            first_seq=1,
            last_seq=42,
            detail="31 distinct objects read, limit 30 per 1:00:00",
            created_at=clock(),
        )
        session.add(finding)
        session.commit()
        return finding.id


# -- the walk: every route, who may use it, and what it records ---------------------------

# endpoint: (path template, action recorded, object type, object id template, purpose)
WALK: dict[str, tuple[str, Action, str, str, str]] = {
    "dpo.overview": ("/dpo/", Action.AUDIT_READ, "audit_log", "", "integrity"),
    "dpo.journal": ("/dpo/journal", Action.AUDIT_READ, "audit_log", "", "search"),
    "dpo.export_csv": ("/dpo/export.csv", Action.AUDIT_EXPORT, "audit_log", "", "export_csv"),
    "dpo.export_json": ("/dpo/export.json", Action.AUDIT_EXPORT, "audit_log", "", "export_json"),
    "dpo.object_report": (
        "/dpo/rapport/objet/case/{case}",
        Action.AUDIT_READ,
        "case",
        "{case}",
        "report",
    ),
    "dpo.object_report_pdf": (
        "/dpo/rapport/objet/case/{case}/pdf",
        Action.AUDIT_EXPORT,
        "case",
        "{case}",
        "report_pdf",
    ),
    "dpo.person_report": (
        "/dpo/rapport/personne/{user}",
        Action.AUDIT_READ,
        "user",
        "{user}",
        "report",
    ),
    "dpo.person_report_pdf": (
        "/dpo/rapport/personne/{user}/pdf",
        Action.AUDIT_EXPORT,
        "user",
        "{user}",
        "report_pdf",
    ),
    "dpo.anomalies": ("/dpo/anomalies", Action.AUDIT_READ, "anomaly", "", "anomalies"),
    "dpo.finding": (
        "/dpo/anomalies/{finding}",
        Action.AUDIT_READ,
        "anomaly",
        "{finding}",
        "anomalies",
    ),
    "dpo.consents_overview": (
        "/dpo/consentements",
        Action.AUDIT_READ,
        "page",
        "dpo.consents_overview",
        "consent",
    ),
    "dpo.consent_exception": (
        "/dpo/consentements/exception/{exception}",
        Action.AUDIT_READ,
        "case",
        "{exception_case}",
        "exception",
    ),
}
POSTS = {
    "dpo.run_detection": "/dpo/anomalies/analyser",
    "dpo.finding": "/dpo/anomalies/{finding}",
}


def _demo_exception(app: Flask) -> tuple[str, str]:
    """The demo's exception « contraire à l'intérêt de l'enfant » and its case reference."""
    from consent.tables import information_table
    from hub.models import Case

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        row = session.execute(
            select(information_table.c.id, Case.reference)
            .join(Case, Case.id == information_table.c.case_id)
            .where(information_table.c.exception.is_(True))
        ).one()
        return str(row.id), str(row.reference)


@pytest.fixture
def ids(app: Flask, territory: dict[str, Account], finding_id: int) -> dict[str, str]:
    exception, exception_case = _demo_exception(app)
    return {
        "case": _case(),
        "user": _person(app, territory["cpip"])[0],
        "finding": str(finding_id),
        "exception": exception,
        "exception_case": exception_case,
    }


def test_the_walk_covers_every_dpo_route(app: Flask) -> None:
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("dpo.")}
    assert endpoints == set(WALK) | set(POSTS)
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("dpo."):
            assert rule.rule.startswith("/dpo/")


def test_only_the_dpo_may_use_the_console(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str]
) -> None:
    for who in NOT_DPO:
        client = _client(app, clock, territory[who])
        token = csrf_token(client, "/")  # the logout form carries one
        for endpoint, (path, *_rest) in WALK.items():
            response, events = _during(app, lambda c=client, p=path: c.get(p.format(**ids)))
            assert response.status_code == 403, (who, endpoint)
            # The refusal itself is recorded (once), and nothing else.
            assert [(e.action, e.decision) for e in events] == [
                (Action.ACCESS_REFUSED, Decision.DENY)
            ], (who, endpoint)
        for endpoint, path in POSTS.items():
            response = client.post(
                path.format(**ids), data={"csrf_token": token, "submit": "1", "note": "x" * 10}
            )
            assert response.status_code == 403, (who, endpoint)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        finding = session.get(AnomalyFinding, int(ids["finding"]))
        assert finding is not None and finding.reviewed_at is None
    # Anonymous visitors are sent to the login page.
    response = app.test_client().get("/dpo/")
    assert response.status_code == 302 and "/connexion" in response.headers["Location"]


def test_the_nav_link_is_shown_to_the_dpo_only(
    app: Flask, clock: FakeClock, territory: dict[str, Account], dpo: FlaskClient
) -> None:
    assert "Protection des données" in dpo.get("/").get_data(as_text=True)
    cpip = _client(app, clock, territory["cpip"])
    assert "/dpo/" not in cpip.get("/").get_data(as_text=True)


@pytest.mark.parametrize("endpoint", sorted(WALK))
def test_each_console_read_records_exactly_one_event(
    app: Flask,
    territory: dict[str, Account],
    dpo: FlaskClient,
    ids: dict[str, str],
    endpoint: str,
) -> None:
    path, action, object_type, object_id, purpose = WALK[endpoint]
    response, events = _during(app, lambda: dpo.get(path.format(**ids)))
    assert response.status_code == 200, (endpoint, response.status_code)
    assert [(e.action, e.object_type, e.object_id, e.purpose) for e in events] == [
        (action, object_type, object_id.format(**ids), purpose)
    ]
    (event,) = events
    assert (event.actor_user, event.actor_org) == _person(app, territory["dpo"])
    assert event.decision == Decision.ALLOW
    assert event.request_id and len(event.ip_hash) == 64


def test_the_journal_shows_the_read_it_just_recorded(dpo: FlaskClient, app: Flask) -> None:
    # Recorded before the search ran: the newest line of the unfiltered journal is this read.
    page = dpo.get("/dpo/journal").get_data(as_text=True)
    newest = _log(app).size() - 1
    first_row = re.search(r"<tbody>\s*<tr>\s*<td>(\d+)</td>", page)
    assert first_row is not None and int(first_row.group(1)) == newest
    assert "audit.read" in page and "search" in page


# -- journal -------------------------------------------------------------------------------


def _seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", page)]


def test_journal_filters_by_object_person_organisation_action_and_decision(
    app: Flask, territory: dict[str, Account], dpo: FlaskClient
) -> None:
    cpip, mina = _person(app, territory["cpip"]), _person(app, territory["conseillere"])
    case, other = _case(), _case()
    a = _seed(app, cpip, case)
    b = _seed(app, mina, case, action=Action.FORM_OPEN)
    c = _seed(app, mina, case, action=Action.FORM_OPEN, decision=Decision.DENY)
    d = _seed(app, cpip, other)

    def seqs(**args: str) -> list[int]:
        response = dpo.get("/dpo/journal", query_string=args)
        assert response.status_code == 200
        return _seqs(response.get_data(as_text=True))

    # The DPO's own search about the case is recorded first, so it heads the results.
    own_read, *rest = seqs(object_type="case", object_id=case)
    assert rest == [c.seq, b.seq, a.seq] and own_read == _log(app).size() - 1
    assert seqs(object_type="case", object_id=case, action="form.open") == [c.seq, b.seq]
    assert seqs(object_type="case", object_id=case, decision="deny") == [c.seq]
    assert seqs(object_type="case", object_id=case, actor_user=cpip[0]) == [a.seq]
    assert seqs(object_type="case", object_id=other, actor_org=cpip[1]) == [d.seq]
    # Names come from the hub's directory, not from the log.
    page = dpo.get("/dpo/journal", query_string={"object_type": "case", "object_id": case})
    html = page.get_data(as_text=True)
    assert "Paul Probation" in html and "Mina Conseil" in html
    assert "SPIP de Démoville" in html and "Mission Locale de Démoville" in html
    matching = dpo_reports.count(_log(app), EventFilter(object_type="case", object_id=case))
    assert f"{matching} événements correspondent" in html  # the seeded ones and the DPO's reads
    assert f'/dpo/rapport/objet/case/{case}"' in html  # link to the object's access report
    # A search about an object is recorded as a read of that object.
    _, events = _during(
        app,
        lambda: dpo.get("/dpo/journal", query_string={"object_type": "case", "object_id": case}),
    )
    assert [(e.object_type, e.object_id, e.purpose) for e in events] == [("case", case, "search")]


def test_journal_period_is_in_paris_days(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = _person(app, territory["cpip"])
    case = _case()
    _at_paris(clock, 2025, 3, 10, 23, 30)  # 22:30 UTC, still the 10th in Paris
    late = _seed(app, cpip, case)
    clock.advance(hours=1)  # 00:30 on the 11th in Paris, 23:30 UTC on the 10th
    early = _seed(app, cpip, case)
    dpo = _client(app, clock, territory["dpo"])

    def seqs(**args: str) -> list[int]:
        # (case.view only: the DPO's searches about the case are on record too)
        query = {"object_type": "case", "object_id": case, "action": "case.view", **args}
        return _seqs(dpo.get("/dpo/journal", query_string=query).get_data(as_text=True))

    assert seqs(start="2025-03-10", end="2025-03-10") == [late.seq]
    assert seqs(start="2025-03-11") == [early.seq]
    assert seqs(end="2025-03-11") == [early.seq, late.seq]
    page = dpo.get("/dpo/journal", query_string={"object_type": "case", "object_id": case})
    assert "10/03/2025 23:30:00" in page.get_data(as_text=True)  # shown in Paris time


def test_journal_pages_through_every_event_once(
    app: Flask, territory: dict[str, Account], dpo: FlaskClient
) -> None:
    cpip = _person(app, territory["cpip"])
    case = _case()
    seeded = [_seed(app, cpip, case).seq for _ in range(120)]
    seen: list[int] = []
    path: str | None = f"/dpo/journal?object_type=case&object_id={case}&action=case.view"
    pages = 0
    while path:
        html = dpo.get(path).get_data(as_text=True)
        page_seqs = _seqs(html)
        assert len(page_seqs) <= dpo_reports.JOURNAL_PAGE_SIZE
        seen += page_seqs
        pages += 1
        more = re.search(r'href="([^"]+)" rel="next"', html)
        path = more.group(1).replace("&amp;", "&") if more else None
    assert pages == 3
    assert seen == sorted(seeded, reverse=True)  # newest first, no gap, no repeat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"start": "31/02/2025"}, "Saisissez une date au format JJ/MM/AAAA."),
        ({"start": "2025-02-30"}, "Saisissez une date au format JJ/MM/AAAA."),
        ({"start": "2025-03-10", "end": "2025-03-01"}, "La date de fin précède la date de début."),
        ({"object_id": "C-1"}, "Précisez aussi le type d&#39;objet"),
        ({"object_type": "Dossier X"}, "Identifiant invalide"),
        ({"actor_user": "jean.dupont@example.org"}, "Aucune personne ne correspond"),
        ({"action": "case.steal"}, "Choisissez une action de la liste."),
        ({"decision": "maybe"}, "Choisissez une décision de la liste."),
    ],
)
def test_bad_filters_get_a_french_error_and_read_nothing(
    app: Flask, dpo: FlaskClient, args: dict[str, str], message: str
) -> None:
    response, events = _during(app, lambda: dpo.get("/dpo/journal", query_string=args))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Le formulaire contient des erreurs" in html and message in html
    assert "<tbody>" not in html  # no results table
    assert events == []
    # Exports with the same filter go back to the journal, which shows the error.
    response, events = _during(app, lambda: dpo.get("/dpo/export.csv", query_string=args))
    assert response.status_code == 302 and "/dpo/journal" in response.headers["Location"]
    assert events == []


# -- exports -------------------------------------------------------------------------------


def test_csv_and_json_exports_hold_the_filtered_events_and_are_recorded(
    app: Flask, territory: dict[str, Account], dpo: FlaskClient
) -> None:
    cpip, mina = _person(app, territory["cpip"]), _person(app, territory["conseillere"])
    case = _case()
    wanted = [_seed(app, cpip, case), _seed(app, cpip, case, decision=Decision.DENY)]
    _seed(app, mina, case)
    query = {"object_type": "case", "object_id": case, "actor_user": cpip[0]}

    response, events = _during(app, lambda: dpo.get("/dpo/export.csv", query_string=query))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(
        r'attachment; filename="maillon-journal-\d{8}-\d{6}\.csv"',
        response.headers["Content-Disposition"],
    )
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["seq"]) for r in rows] == [e.seq for e in wanted]
    assert [r["decision"] for r in rows] == ["allow", "deny"]
    assert all(r["actor_user"] == cpip[0] and r["object_id"] == case for r in rows)
    assert "Paul" not in response.get_data(as_text=True)  # ids only in exports
    assert [(e.action, e.object_type, e.object_id, e.purpose) for e in events] == [
        (Action.AUDIT_EXPORT, "case", case, "export_csv")
    ]

    response, events = _during(app, lambda: dpo.get("/dpo/export.json", query_string=query))
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = json.loads(response.get_data(as_text=True))
    assert document["filter"] == {"object_type": "case", "object_id": case, "actor_user": cpip[0]}
    assert [e["seq"] for e in document["events"]] == [e.seq for e in wanted]
    # Each exported event is canonical: it re-hashes to the leaf the log holds.
    for exported in document["events"]:
        event = Event.from_canonical(
            json.dumps(exported, sort_keys=True, separators=(",", ":")).encode()
        )
        assert event.leaf_hash() == _log(app).leaf_hash(event.seq)
    size = document["log_size"]
    assert size <= _log(app).size()
    assert document["log_root"] == dpo_reports.b64(_log(app).root(size))
    assert [(e.action, e.purpose) for e in events] == [(Action.AUDIT_EXPORT, "export_json")]


def test_exports_beyond_the_limit_are_refused_with_a_message(
    app: Flask, territory: dict[str, Account], dpo: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpip = _person(app, territory["cpip"])
    case = _case()
    for _ in range(3):
        _seed(app, cpip, case)
    monkeypatch.setattr(dpo_reports, "EXPORT_LIMIT", 2)
    query = {"object_type": "case", "object_id": case}
    response, events = _during(app, lambda: dpo.get("/dpo/export.json", query_string=query))
    assert response.status_code == 302 and events == []
    page = dpo.get(response.headers["Location"]).get_data(as_text=True)
    assert "L&#39;export est limité à 2 événements et 3 correspondent" in page


# -- access reports ------------------------------------------------------------------------


def test_object_report_says_who_accessed_the_case(
    app: Flask, territory: dict[str, Account], dpo: FlaskClient
) -> None:
    cpip, mina = _person(app, territory["cpip"]), _person(app, territory["conseillere"])
    case = _case()
    _seed(app, cpip, case)
    _seed(app, cpip, case)
    _seed(app, mina, case, action=Action.FORM_OPEN, decision=Decision.DENY)
    html = dpo.get(f"/dpo/rapport/objet/case/{case}").get_data(as_text=True)
    assert f"Accès à l'objet case {case}" in html
    assert "Paul Probation" in html and "Mina Conseil" in html and "Refusé" in html
    summary = html.split("Détail des événements")[0]
    assert re.search(
        r"Consultation d&#39;un dossier<br><code class=\"hint\">case\.view</code></td>\s*<td>.*?</td>\s*<td>2</td>",
        summary,
        re.S,
    )
    assert "tout le journal conservé" in html
    assert f'href="/dpo/rapport/objet/case/{case}/pdf"' in html


def test_person_report_lists_what_the_person_did_within_the_period(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = _person(app, territory["cpip"])
    first, second = _case(), _case()
    _at_paris(clock, 2025, 1, 6, 10, 0)
    _seed(app, cpip, first)
    clock.advance(days=2)
    _seed(app, cpip, second)
    dpo = _client(app, clock, territory["dpo"])
    html = dpo.get(
        f"/dpo/rapport/personne/{cpip[0]}", query_string={"start": "2025-01-08"}
    ).get_data(as_text=True)
    assert second in html and first not in html
    assert "depuis le 08/01/2025" in html and "Paul Probation" in html
    assert f"/dpo/rapport/personne/{cpip[0]}/pdf?start=2025-01-08" in html


def test_report_pdf_is_a_pdf_download_without_personal_data(
    app: Flask,
    territory: dict[str, Account],
    dpo: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpip = _person(app, territory["cpip"])
    case = _case()
    _seed(app, cpip, case)
    printed: list[str] = []
    real = hub.pdf.html_to_pdf

    def spy(html: str, **options: str | None) -> bytes:
        printed.append(html)
        return real(html, **options)

    monkeypatch.setattr(hub.pdf, "html_to_pdf", spy)
    response, events = _during(app, lambda: dpo.get(f"/dpo/rapport/objet/case/{case}/pdf"))
    assert response.status_code == 200
    body = response.data
    assert body.startswith(b"%PDF")
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    disposition = response.headers["Content-Disposition"]
    match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', disposition)
    assert match and match.group(1).startswith(f"maillon-acces-case-{case}-")
    assert match.group(1).endswith(".pdf")
    (html,) = printed
    for account in territory.values():  # no e-mail address of anyone, anywhere
        assert account.email not in html and account.email.encode() not in body
    assert "@" not in html
    assert "Paul Probation" in html and case in html  # professionals by name, the case by id
    # The report names the signed tree it was taken from: its size and root.
    size = re.search(r"(\d+) événements</dd>", html)
    assert size is not None and "Racine du journal" in html
    assert dpo_reports.b64(_log(app).root(int(size.group(1)))) in html
    assert [(e.action, e.object_id, e.purpose) for e in events] == [
        (Action.AUDIT_EXPORT, case, "report_pdf")
    ]
    # The person report's file is named by the person's id only.
    response = dpo.get(f"/dpo/rapport/personne/{cpip[0]}/pdf")
    assert response.data.startswith(b"%PDF")
    assert f'filename="maillon-acces-user-{cpip[0]}-' in response.headers["Content-Disposition"]
    assert "Probation" not in response.headers["Content-Disposition"]


def test_long_reports_list_the_first_events_and_summarise_all(
    app: Flask,
    territory: dict[str, Account],
    dpo: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpip = _person(app, territory["cpip"])
    case = _case()
    seeded = [_seed(app, cpip, case).seq for _ in range(4)]
    monkeypatch.setattr(dpo_reports, "REPORT_EVENT_LIMIT", 3)
    monkeypatch.setattr(dpo_reports, "PDF_EVENT_LIMIT", 2)
    printed: list[str] = []
    monkeypatch.setattr(
        hub.pdf, "html_to_pdf", lambda html, **_options: printed.append(html) or b"%PDF-"
    )
    page = dpo.get(f"/dpo/rapport/objet/case/{case}").get_data(as_text=True)
    detail = page.split("Détail des événements", 1)[1]
    assert _seqs(detail) == seeded[:3] and "Seuls les 3 premiers événements" in page
    assert re.search(
        r"<code class=\"hint\">case\.view</code></td>\s*<td>.*?</td>\s*<td>4</td>", page, re.S
    )
    dpo.get(f"/dpo/rapport/objet/case/{case}/pdf")
    (html,) = printed
    assert _seqs(html.split("Détail des événements", 1)[1]) == seeded[:2]
    assert "Seuls les 2 premiers événements" in html


def test_the_pdf_renderer_fetches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[object] = []
    monkeypatch.setattr(
        urllib.request.OpenerDirector, "open", lambda _self, *args, **_kw: opened.append(args)
    )
    pdf = hub.pdf.html_to_pdf(
        '<html lang="fr"><body><h1>Test</h1><img src="file:///etc/hostname" alt="">'
        '<img src="http://example.org/pixel.png" alt=""></body></html>'
    )
    assert pdf.startswith(b"%PDF") and opened == []


def test_download_names_are_plain_ascii() -> None:
    name = hub.pdf.ascii_filename("maillon-accès", "case", "../../etc/C 1", extension="pdf")
    assert name == "maillon-acc_s-case-etc_C_1.pdf"
    assert hub.pdf.ascii_filename("", "é", extension="csv") == "document.csv"


def test_report_with_a_bad_period_or_id(app: Flask, dpo: FlaskClient) -> None:
    case = _case()
    response, events = _during(
        app, lambda: dpo.get(f"/dpo/rapport/objet/case/{case}?start=2025-13-01")
    )
    assert response.status_code == 200 and events == []
    assert "Saisissez une date au format JJ/MM/AAAA." in response.get_data(as_text=True)
    response = dpo.get(f"/dpo/rapport/objet/case/{case}/pdf?start=nope")
    assert response.status_code == 302 and "/pdf" not in response.headers["Location"]
    assert dpo.get("/dpo/rapport/objet/Case/x").status_code == 404
    assert dpo.get("/dpo/rapport/personne/jean%20dupont").status_code == 404


# -- integrity -----------------------------------------------------------------------------


@pytest.fixture
def own_log(app: Flask, clock: FakeClock, tmp_path: Path) -> AuditLog:
    """A fresh audit store for this test alone (checkpoints forged here must not reach the
    session-wide PostgreSQL log)."""
    state = app.extensions["maillon"]
    log = AuditLog(make_audit_engine(f"sqlite:///{tmp_path / 'own-audit.sqlite'}"), clock=clock)
    log.create_schema()
    state.audit_log = log
    return log


def _insert_note(log: AuditLog, checkpoint: Checkpoint, signer: NoteSigner) -> None:
    note = str(signer.sign_checkpoint(checkpoint))
    with log.engine.begin() as conn:
        conn.execute(
            insert(checkpoints_table).values(
                size=checkpoint.size,
                root=checkpoint.root,
                time_us=to_micros(checkpoint.time),
                note=note,
            )
        )


def test_integrity_status(
    app: Flask, clock: FakeClock, territory: dict[str, Account], own_log: AuditLog
) -> None:
    state = app.extensions["maillon"]
    dpo = _client(app, clock, territory["dpo"])
    assert "Aucun point de contrôle signé" in dpo.get("/dpo/").get_data(as_text=True)
    # Given a signed checkpoint of the current tree
    note = own_log.checkpoint(state.audit_signer)
    html = dpo.get("/dpo/").get_data(as_text=True)
    assert "Vérifié" in html and "Anomalie" not in html
    assert dpo_reports.b64(own_log.root(Checkpoint.parse_body(note.text).size)) in html
    # When a checkpoint signed by the server disagrees with the stored tree
    size = own_log.size()
    forged = Checkpoint(state.audit_signer.name, size, b"\x07" * 32, clock())
    _insert_note(own_log, forged, state.audit_signer)
    html = dpo.get("/dpo/").get_data(as_text=True)
    assert "Anomalie d'intégrité" in html and "ne correspond pas" in html
    assert "Vérifié" not in html
    # When the log holds fewer events than a signed size (truncation)
    size = own_log.size()
    _insert_note(
        own_log,
        Checkpoint(state.audit_signer.name, size + 5, own_log.root(size), clock()),
        state.audit_signer,
    )
    assert "moins d'événements" in dpo.get("/dpo/").get_data(as_text=True)


def test_integrity_flags_a_checkpoint_signed_by_another_key(
    app: Flask, clock: FakeClock, territory: dict[str, Account], own_log: AuditLog
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    state = app.extensions["maillon"]
    dpo = _client(app, clock, territory["dpo"])
    other = NoteSigner(state.audit_signer.name, Ed25519PrivateKey.generate())
    size = own_log.size()
    _insert_note(own_log, Checkpoint(other.name, size, own_log.root(size), clock()), other)
    html = dpo.get("/dpo/").get_data(as_text=True)
    assert "signature du dernier point de contrôle n'est pas valide" in html


# -- anomalies -----------------------------------------------------------------------------


def _findings(app: Flask, actor_user: str) -> list[AnomalyFinding]:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        rows = session.scalars(
            select(AnomalyFinding)
            .where(AnomalyFinding.actor_user == actor_user)
            .order_by(AnomalyFinding.first_seq)
        ).all()
        session.expunge_all()
        return list(rows)


def _run_task(app: Flask) -> int:
    with app.app_context():
        return int(detect_anomalies.run())


def test_the_anomaly_task_stores_findings_once(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = _person(app, territory["cpip"])
    # Given six refused accesses within ten minutes, on a Monday morning
    _at_paris(clock, 2025, 1, 6, 10, 0)
    refused = []
    for _ in range(6):
        refused.append(_seed(app, cpip, _case(), decision=Decision.DENY))
        clock.advance(minutes=1)
    _run_task(app)
    found = {(f.rule, f.event_count, f.first_seq, f.last_seq) for f in _findings(app, cpip[0])}
    assert found == {("refusal_burst", 6, refused[0].seq, refused[-1].seq)}
    # Running again stores nothing new
    assert _run_task(app) == 0
    assert len(_findings(app, cpip[0])) == 1
    # A continued burst, seen by the next run, extends the open finding instead of adding one
    refused.append(_seed(app, cpip, _case(), decision=Decision.DENY))
    _run_task(app)
    (finding,) = _findings(app, cpip[0])
    assert (finding.event_count, finding.last_seq) == (7, refused[-1].seq)
    assert finding.actor_org == cpip[1] and "Paul" not in finding.detail
    # Reads on Saturday night are an off-hours finding, found whole across two runs
    _at_paris(clock, 2025, 1, 11, 23, 0)
    reads = [_seed(app, cpip, _case())]
    _run_task(app)
    clock.advance(minutes=50)
    reads.append(_seed(app, cpip, _case()))
    _run_task(app)
    off = [f for f in _findings(app, cpip[0]) if f.rule == "off_hours"]
    assert [(f.event_count, f.first_seq, f.last_seq) for f in off] == [
        (2, reads[0].seq, reads[-1].seq)
    ]
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        scans = session.scalars(select(AnomalyScan).order_by(AnomalyScan.scanned_from)).all()
        # Consecutive scans, each starting where the previous one stopped
        assert all(a.scanned_until == b.scanned_from for a, b in itertools.pairwise(scans))
        assert scans[-1].scanned_until == _log(app).size()


def test_a_scan_losing_a_race_from_the_same_watermark_stores_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    cpip = _person(app, territory["cpip"])
    _at_paris(clock, 2025, 1, 6, 10, 0)
    for _ in range(6):
        _seed(app, cpip, _case(), decision=Decision.DENY)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        stale = anomaly_review.watermark(session)
    _run_task(app)
    assert len(_findings(app, cpip[0])) == 1
    # A second worker that read the watermark before the first committed loses at commit.
    monkeypatch.setattr(anomaly_review, "watermark", lambda _session: stale)
    assert _run_task(app) == 0
    assert len(_findings(app, cpip[0])) == 1
    with state.session_factory() as session, pytest.raises(IntegrityError):
        anomaly_review.scan(session, state.audit_log, now=clock())


def test_the_dpo_reviews_a_finding(
    app: Flask, clock: FakeClock, territory: dict[str, Account], own_log: AuditLog
) -> None:
    # (own_log: the listing must not be crowded by findings from the session's shared log)
    cpip = _person(app, territory["cpip"])
    _at_paris(clock, 2025, 1, 6, 10, 0)
    for _ in range(6):
        _seed(app, cpip, _case(), decision=Decision.DENY)
    _run_task(app)
    (finding,) = _findings(app, cpip[0])
    dpo = _client(app, clock, territory["dpo"])
    listing = dpo.get("/dpo/anomalies").get_data(as_text=True)
    assert "Série d'accès refusés" in listing and "Paul Probation" in listing
    assert f"/dpo/anomalies/{finding.id}" in listing
    overview = dpo.get("/dpo/").get_data(as_text=True)
    assert re.search(r"Signalements à examiner : [1-9]", overview)
    page = f"/dpo/anomalies/{finding.id}"
    detail = dpo.get(page).get_data(as_text=True)
    assert f"actor_user={cpip[0]}" in detail and "start=2025-01-06" in detail
    token = csrf_token(dpo, page)
    # An empty note is refused with an error next to the field
    response = dpo.post(page, data={"csrf_token": token, "note": ""})
    assert (
        response.status_code == 200
        and "Le formulaire contient des erreurs" in response.get_data(as_text=True)
    )
    # A note marks the finding reviewed; the review is itself on record
    response, events = _during(
        app,
        lambda: dpo.post(
            page, data={"csrf_token": token, "note": "Réunion du groupe ce soir-là : normal."}
        ),
    )
    assert response.status_code == 302
    assert [(e.action, e.object_type, e.object_id, e.purpose) for e in events] == [
        (Action.AUDIT_READ, "anomaly", str(finding.id), "anomaly_review")
    ]
    (reviewed,) = _findings(app, cpip[0])
    dpo_id = _person(app, territory["dpo"])[0]
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        reviewer = session.get(User, reviewed.reviewed_by_id)
        assert reviewer is not None and reviewer.public_id == dpo_id
    assert reviewed.reviewed_at is not None
    assert reviewed.review_note == "Réunion du groupe ce soir-là : normal."
    assert f"/dpo/anomalies/{finding.id}" not in dpo.get("/dpo/anomalies").get_data(as_text=True)
    shown = dpo.get("/dpo/anomalies?etat=toutes").get_data(as_text=True)
    assert f"/dpo/anomalies/{finding.id}" in shown and "Examiné le" in shown
    # Reviewing twice changes nothing
    response, events = _during(
        app, lambda: dpo.post(page, data={"csrf_token": token, "note": "Autre conclusion."})
    )
    assert response.status_code == 302 and events == []
    assert _findings(app, cpip[0])[0].review_note == "Réunion du groupe ce soir-là : normal."
    # Events continuing a reviewed burst become a new finding, the reviewed one stays as it is
    clock.advance(minutes=1)
    _seed(app, cpip, _case(), decision=Decision.DENY)
    _run_task(app)
    after = _findings(app, cpip[0])
    assert len(after) == 2 and after[0].event_count == 6 and after[1].event_count == 1


def test_run_detection_now_enqueues_the_task_after_commit(
    app: Flask, dpo: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(
        app.extensions["celery"], "send_task", lambda name, **_kw: sent.append(name)
    )
    token = csrf_token(dpo, "/dpo/anomalies")
    response, events = _during(
        app, lambda: dpo.post("/dpo/anomalies/analyser", data={"csrf_token": token})
    )
    assert response.status_code == 302
    assert sent == ["hub.dpo_tasks.detect_anomalies"]
    assert [(e.action, e.purpose) for e in events] == [(Action.AUDIT_READ, "anomaly_scan")]
    assert "Analyse lancée" in dpo.get(response.headers["Location"]).get_data(as_text=True)
    # Without the form's token nothing is enqueued
    assert dpo.post("/dpo/anomalies/analyser").status_code == 400
    assert sent == ["hub.dpo_tasks.detect_anomalies"]


def test_the_task_is_scheduled_hourly(app: Flask) -> None:
    celery = app.extensions["celery"]
    entry = celery.conf.beat_schedule["detect-anomalies"]
    assert entry["task"] == detect_anomalies.name and entry["schedule"] == timedelta(hours=1)
    assert "hub.dpo_tasks" in celery.conf.include


# -- fail closed ---------------------------------------------------------------------------


def _break_audit_store(app: Flask, tmp_path: Path, how: str) -> None:
    state = app.extensions["maillon"]
    if how == "read-only":
        path = tmp_path / "audit-ro.sqlite"
        good = AuditLog(make_audit_engine(f"sqlite:///{path}"), clock=state.clock)
        good.create_schema()
        good.engine.dispose()
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        url = "sqlite:////nonexistent/dir/x.sqlite"
    state.audit_log = AuditLog(make_audit_engine(url), clock=state.clock)


@pytest.mark.parametrize("how", ["read-only", "down"])
def test_an_unwritable_audit_store_serves_nothing(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    ids: dict[str, str],
    tmp_path: Path,
    how: str,
) -> None:
    dpo = _client(app, clock, territory["dpo"])
    _seed(app, _person(app, territory["cpip"]), ids["case"])
    token = csrf_token(dpo, "/dpo/anomalies")
    _break_audit_store(app, tmp_path, how)
    for endpoint, (path, *_rest) in WALK.items():
        response = dpo.get(path.format(**ids))
        assert response.status_code == 503, endpoint
        body = response.get_data(as_text=True)
        assert "Service indisponible" in body
        assert "<table" not in body and "Paul Probation" not in body and "%PDF" not in body
    review = dpo.post(
        f"/dpo/anomalies/{ids['finding']}", data={"csrf_token": token, "note": "Vu, normal."}
    )
    assert review.status_code == 503
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        finding = session.get(AnomalyFinding, int(ids["finding"]))
        assert finding is not None and finding.reviewed_at is None


def test_a_log_that_fails_after_the_read_was_recorded_answers_503(
    app: Flask, dpo: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise LogUnavailable("audit search failed")

    monkeypatch.setattr(dpo_reports, "journal", broken)
    response = dpo.get("/dpo/journal")
    assert response.status_code == 503 and "<tbody>" not in response.get_data(as_text=True)


# -- English -------------------------------------------------------------------------------


def test_the_console_speaks_english_when_asked(dpo: FlaskClient) -> None:
    token = csrf_token(dpo, "/dpo/")
    dpo.post("/langue", data={"csrf_token": token, "lang": "en", "next": "/dpo/"})
    html = dpo.get("/dpo/journal?start=nope").get_data(as_text=True)
    assert "Access log" in html and "Enter a date as DD/MM/YYYY." in html


# -- migration -----------------------------------------------------------------------------


def test_migration_0004_upgrades_and_downgrades_on_data(empty_engine: Engine) -> None:
    when = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    upgrade(empty_engine, "0003")
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO organisations (id, public_id, name, kind, active, created_at) "
                "VALUES (1, 'o1', 'Ville', 'commune', true, :t)"
            ),
            {"t": when},
        )
        c.execute(
            text(
                "INSERT INTO users (id, public_id, name, email, organisation_id, session_nonce, "
                "active, failed_logins, locked_by_failures, created_at) "
                "VALUES (1, 'u1', 'Dominique', 'dpo@ville.example', 1, 'n', true, 0, false, :t)"
            ),
            {"t": when},
        )
    upgrade(empty_engine, "0004")
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO anomaly_findings (rule, actor_user, actor_org, window_start, "
                "window_end, event_count, first_seq, last_seq, detail, created_at, reviewed_at, "
                "reviewed_by_id, review_note) VALUES ('off_hours', 'u9', 'o9', :t, :t, 3, "
                "5000000000, 5000000002, 'd', :t, :t, 1, 'ok')"
            ),
            {"t": when},
        )
        c.execute(
            text(
                "INSERT INTO anomaly_scans (scanned_from, scanned_until, ran_at, findings) "
                "VALUES (0, 10, :t, 1)"
            ),
            {"t": when},
        )
    with pytest.raises(Exception), empty_engine.begin() as c:  # noqa: B017 - driver-specific
        c.execute(
            text(
                "INSERT INTO anomaly_scans (scanned_from, scanned_until, ran_at, findings) "
                "VALUES (0, 12, :t, 0)"
            ),
            {"t": when},
        )
    downgrade(empty_engine, "0003")
    tables = set(inspect(empty_engine).get_table_names())
    assert "anomaly_findings" not in tables and "anomaly_scans" not in tables
    assert {"users", "charter_versions"} <= tables
    upgrade(empty_engine, "head")
    with empty_engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
        assert c.execute(text("SELECT count(*) FROM anomaly_findings")).scalar_one() == 0


def test_organisation_names_are_joined_from_the_directory(
    app: Flask, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(select(Organisation).where(Organisation.name == "SPIP de Démoville"))
        assert org is not None
        names = dpo_reports.directory(session, ["client:nope", None], [org.public_id, "x"])
    assert names.org_name(org.public_id) == "SPIP de Démoville"
    assert names.org_name("x") is None and names.user_name("client:nope") is None


def test_the_dpo_reading_a_case_report_is_not_a_person_not_expected(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from hub.anomaly_review import scan_all

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        reference = session.scalar(select(Case.reference).order_by(Case.id))
    assert reference is not None
    dpo = _client(app, clock, territory["dpo"])
    assert dpo.get(f"/dpo/rapport/objet/case/{reference}").status_code == 200
    # The same read by someone else than a DPO (an event forged for the test) is listed
    outsider = _person(app, territory["logement"])
    _seed(app, outsider, reference, action=Action.AUDIT_READ)
    with state.session_factory() as session:
        scan_all(session, state.audit_log, now=clock())
        session.commit()
        flagged = {
            f.actor_user
            for f in session.scalars(
                select(AnomalyFinding).where(AnomalyFinding.rule == "unexpected_access")
            )
        }
    assert _person(app, territory["dpo"])[0] not in flagged
    assert outsider[0] in flagged


def test_the_verify_commands_shown_to_the_dpo_work_as_printed(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path
) -> None:
    import html as html_lib
    import shlex

    from audit.verify import main as verify_main

    dpo = _client(app, clock, territory["dpo"])
    page = dpo.get("/dpo/").get_data(as_text=True)
    block = page.split('id="verify-commands"><code>', 1)[1].split("</code>", 1)[0]
    export_line, verify_line = html_lib.unescape(block).strip().splitlines()
    export_args = shlex.split(export_line)
    verify_args = shlex.split(verify_line)
    assert export_args[:3] == [".venv/bin/flask", "--app", "hub"]
    assert verify_args[:3] == [".venv/bin/python", "-m", "audit.verify"]
    # Run exactly what is printed (in a scratch directory)
    directory = tmp_path / "journal-exporte"
    export = [str(directory) if a == "journal-exporte" else a for a in export_args[3:]]
    with app.app_context():
        result = app.test_cli_runner().invoke(args=export)
    assert result.exit_code == 0, result.output
    verify = [str(directory) if a == "journal-exporte" else a for a in verify_args[3:]]
    assert verify_main(verify) == 0


def test_every_action_reads_in_french_and_the_filter_offers_only_recorded_ones() -> None:
    from hub.action_labels import ACTION_LABELS, NEVER_RECORDED

    assert set(ACTION_LABELS) | NEVER_RECORDED == set(Action)
    assert not set(ACTION_LABELS) & NEVER_RECORDED
    assert ACTION_LABELS[Action.CASE_VIEW] == "Consultation d'un dossier"


def test_the_journal_reads_like_french_and_finds_a_person_by_name(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip = _person(app, territory["cpip"])
    reference = _case()
    _seed(app, cpip, reference)
    dpo = _client(app, clock, territory["dpo"])
    form = dpo.get("/dpo/journal").get_data(as_text=True)
    assert '<option value="case.view">Consultation d&#39;un dossier</option>' in form
    assert 'value="case.close"' not in form  # never recorded: not offered
    # By part of a name, any case: the person's public id is what is searched
    page = dpo.get("/dpo/journal?actor_user=paul+prob").get_data(as_text=True)
    assert reference in page and "Consultation d&#39;un dossier" in page
    assert "Paul Probation" in page
    assert f'href="/dpo/rapport/personne/{cpip[0]}' in page
    # A name that matches nobody, or several people: said plainly, nothing searched
    for query, message in (
        ("personne+inconnue", "Aucune personne ne correspond"),
        ("on", "Plusieurs personnes correspondent"),
    ):
        page = dpo.get(f"/dpo/journal?actor_user={query}").get_data(as_text=True)
        assert message in page and reference not in page
    # An organisation by name too
    page = dpo.get("/dpo/journal?actor_org=SPIP").get_data(as_text=True)
    assert reference in page


def test_the_journal_still_finds_an_organisation_system_by_its_id(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    reference = _case()
    _seed(app, ("client:logiciel-spip", _person(app, territory["cpip"])[1]), reference)
    dpo = _client(app, clock, territory["dpo"])
    page = dpo.get("/dpo/journal?actor_user=client:logiciel-spip").get_data(as_text=True)
    assert reference in page and "Aucune personne" not in page
