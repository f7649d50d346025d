"""Consent enforced on every read and write (issue 8): fail closed without accord, withdrawal at
once (even under concurrent reads), the minors' rule on the day of the decision, the case team as
people, the pages and their refusals, receipts, the API, the DPO's view, the daily sweep, and a
withdrawal that outlives an audit store outage."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import hub.pdf
from audit.events import Action, Event
from audit.store import AuditLog
from charter.vocabulary import Role
from consent.tables import consents_table, status_table
from hub import totp
from hub.demo import demo_consent
from hub.models import AuditOutbox, Case, Notification, Organisation, User
from hub.tasks import flush_audit_outbox, run_consent_sweep
from tests.conftest import Account, FakeClock, csrf_token, login

SCAN = b"%PDF-1.7\n% formulaire signe\n%%EOF\n"


# -- helpers ---------------------------------------------------------------------------------


def _cases(app: Flask) -> dict[str, Case]:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        rows = list(session.scalars(select(Case).order_by(Case.id)))
        session.expunge_all()
    return dict(zip(("followed", "signalled", "minor"), rows, strict=True))


@pytest.fixture
def refs(app: Flask, territory: dict[str, Account]) -> dict[str, str]:
    return {name: case.reference for name, case in _cases(app).items()}


def _as(app: Flask, clock: FakeClock, account: Account) -> FlaskClient:
    client = app.test_client()
    assert login(client, clock, account).status_code == 302
    return client


def _log(app: Flask) -> AuditLog:
    log: AuditLog = app.extensions["maillon"].audit_log
    return log


def _events(app: Flask, before: int) -> list[Event]:
    return list(_log(app).events(before, _log(app).size()))


def _consent_id(app: Flask, reference: str, grantor: str = "jeune") -> int:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        case_id = session.scalar(select(Case.id).where(Case.reference == reference))
        return int(
            session.execute(
                select(consents_table.c.id).where(
                    consents_table.c.case_id == case_id, consents_table.c.grantor == grantor
                )
            ).scalar_one()
        )


def _count(app: Flask, table: Any) -> int:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def _paris(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _post(client: FlaskClient, path: str, **data: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, path), **data})


def _new_agent(app: Flask, org_kind: str, email: str) -> Account:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        accounts = state.accounts(session)
        org = session.scalar(select(Organisation).where(Organisation.kind == org_kind))
        user = accounts.create_user(
            name="Agathe Nouvelle", email=email, organisation=org, roles={Role.AGENT}
        )
        secret = totp.new_secret()
        user.password_hash = accounts.passwords.hash("un mot de passe solide")
        user.totp_secret = secret
        session.commit()
        return Account(email, "un mot de passe solide", secret, ["agent"], org.name)


# -- fail closed -------------------------------------------------------------------------------


def test_without_consent_nothing_resting_on_accord_is_shared_and_the_refusal_is_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # Given a young person signalled by the SPIP who has not been asked for his accord yet
    client = _as(app, clock, territory["conseillere"])
    before = _log(app).size()
    # When a group member reviews his case (the charter grants the date of birth for that)
    page = client.get(f"/dossiers/{refs['signalled']}?finalite=reperage")
    html = page.get_data(as_text=True)
    # Then the date is neither decrypted into the page nor sent; the refusal names the article
    assert page.status_code == 200
    assert "15/03/2004" not in html
    assert "aucun accord de la personne en vigueur" in html and "art-5" in html
    assert "Aucun accord enregistré" in html
    (event,) = _events(app, before)
    assert (event.action, event.decision.value) == (Action.CASE_VIEW, "deny")
    assert "art-5" in event.rule.split("/")


def test_with_consent_the_referent_sees_what_the_accord_covers(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    html = client.get(f"/dossiers/{refs['followed']}?finalite=suivi_parcours").get_data(
        as_text=True
    )
    assert "12/05/2005" in html
    assert _paris(clock().date() + timedelta(days=95)) in html
    assert "Accord en vigueur" in html


# -- withdrawal --------------------------------------------------------------------------------


def test_a_withdrawal_takes_effect_at_once_is_recorded_and_the_partners_are_told(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    reference = refs["followed"]
    consent_id = _consent_id(app, reference)
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{reference}/consentement/{consent_id}/retrait"
    confirm = client.get(path)
    assert confirm.status_code == 200 and "Confirmer le retrait" in confirm.get_data(as_text=True)
    before = _log(app).size()
    response = _post(client, path)
    assert response.status_code == 302
    (event,) = _events(app, before)
    assert (event.action, event.object_id, event.rule) == (
        Action.CONSENT_WITHDRAW,
        reference,
        "art-5",
    )
    # The next read shows nothing that rested on the accord
    html = client.get(f"/dossiers/{reference}?finalite=suivi_parcours").get_data(as_text=True)
    assert "12/05/2005" not in html
    assert _paris(clock().date() + timedelta(days=95)) not in html
    assert "Accord retiré" in html
    # The team, the référent and the coordinator are told, without content or names
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        told = {
            email
            for email, kind in session.execute(
                select(User.email, Notification.kind).join(
                    Notification, Notification.user_id == User.id
                )
            )
            if kind == "consent_withdrawn"
        }
    assert told == {
        territory["conseillere"].email,
        territory["cpip"].email,
        territory["coordinatrice"].email,
    }
    notifications = _as(app, clock, territory["cpip"]).get("/notifications")
    text = notifications.get_data(as_text=True)
    assert "Consentement retiré" in text and reference in text and "12/05/2005" not in text
    # Withdrawing again is refused, recorded, and changes nothing
    before = _log(app).size()
    statuses = _count(app, status_table)
    again = _post(client, path)
    (refused,) = _events(app, before)
    assert "déjà été retiré" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert _count(app, status_table) == statuses
    assert (refused.action, refused.decision.value, refused.rule) == (
        Action.CONSENT_WITHDRAW,
        "deny",
        "already_withdrawn",
    )


def test_withdrawal_asks_for_a_fresh_login(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    clock.advance(minutes=11)
    path = f"/dossiers/{refs['followed']}/consentement/{_consent_id(app, refs['followed'])}/retrait"
    response = client.get(path)
    assert response.status_code == 302 and "/confirmer-identite" in response.headers["Location"]


@pytest.mark.slow
def test_a_read_racing_a_withdrawal_never_returns_data_after_the_withdrawal_in_the_log(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    """Readers loop over the case while the young person's accord is withdrawn: every answer
    that still carried a value resting on the accord was recorded before the withdrawal."""
    reference = refs["followed"]
    birth_shown = "12/05/2005"
    readers = [_as(app, clock, territory["conseillere"]) for _ in range(4)]
    withdrawer = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{reference}/consentement/{_consent_id(app, reference)}/retrait"
    token = csrf_token(withdrawer, path)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()
    started = threading.Barrier(len(readers) + 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read(client: FlaskClient) -> None:
        try:
            started.wait()
            while not stop.is_set():
                response = client.get(f"/dossiers/{reference}?finalite=suivi_parcours")
                assert response.status_code == 200, response.status_code
                shown = birth_shown in response.get_data(as_text=True)
                with lock:
                    results.append((response.headers["X-Request-Id"], shown))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=read, args=(c,)) for c in readers]
    for thread in threads:
        thread.start()
    started.wait()
    while len(results) < 12:
        threading.Event().wait(0.01)
    withdrawal = withdrawer.post(path, data={"csrf_token": token})
    done_at = len(results)
    while len(results) < done_at + 12:
        threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert withdrawal.status_code == 302
    events = list(_log(app).events(0, _log(app).size()))
    (withdrawn_at,) = [
        e.seq for e in events if e.action == Action.CONSENT_WITHDRAW and e.object_id == reference
    ]
    last_view: dict[str, Event] = {}
    for event in events:
        if event.action == Action.CASE_VIEW and event.object_id == reference:
            last_view[event.request_id] = event
    served = [(last_view[request_id], shown) for request_id, shown in results]
    # Every answer that showed the date was recorded before the withdrawal…
    assert all(event.seq < withdrawn_at for event, shown in served if shown)
    # …and the race really happened: answers on both sides of it
    assert any(shown for _event, shown in served)
    assert any(event.seq > withdrawn_at and not shown for event, shown in served)


def _read_across(
    monkeypatch: pytest.MonkeyPatch,
    reader: FlaskClient,
    path: str,
    change: Callable[[], Any],
) -> tuple[Any, list[bool]]:
    """Make the race certain: ``reader`` GETs ``path``; its first view decision waits while
    ``change`` (a withdrawal, a removal…) runs to its end, then the read goes on and records.
    Returns the answer and, per decision taken, whether it showed anything."""
    from hub.cases import Cases

    decided, changed = threading.Event(), threading.Event()
    real_view = Cases.view
    shown: list[bool] = []

    def paused_view(self: Cases, *args: Any, **kwargs: Any) -> Any:
        view = real_view(self, *args, **kwargs)
        shown.append(bool(view.shown))
        if len(shown) == 1:  # only the first decision waits for the change
            decided.set()
            assert changed.wait(30)
        return view

    monkeypatch.setattr(Cases, "view", paused_view)
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(reader.get(path)))
    thread.start()
    assert decided.wait(30)
    change()
    changed.set()
    thread.join(30)
    (response,) = answer
    return response, shown


def test_a_read_decided_before_a_withdrawal_and_recorded_after_it_is_decided_again(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race made certain: the read takes its decision under the accord, then the withdrawal
    commits and takes its place in the log, then the read records its event — after the
    withdrawal. It must answer as the withdrawal says."""
    reference = refs["followed"]
    reader = _as(app, clock, territory["conseillere"])
    withdrawer = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{reference}/consentement/{_consent_id(app, reference)}/retrait"
    token = csrf_token(withdrawer, path)
    response, shown = _read_across(
        monkeypatch,
        reader,
        f"/dossiers/{reference}?finalite=suivi_parcours",
        lambda: withdrawer.post(path, data={"csrf_token": token}),
    )
    assert response.status_code == 200
    # The first decision had allowed the date; the answer does not carry it
    assert shown[0] is True
    assert "12/05/2005" not in response.get_data(as_text=True)
    request_id = response.headers["X-Request-Id"]
    events = list(_log(app).events(0, _log(app).size()))
    (withdrawal,) = [
        e for e in events if e.action == Action.CONSENT_WITHDRAW and e.object_id == reference
    ]
    views = [e for e in events if e.action == Action.CASE_VIEW and e.request_id == request_id]
    # The read recorded its first decision after the withdrawal, then the one it served
    assert [e.seq > withdrawal.seq for e in views] == [True, True]


# -- the case team is people ---------------------------------------------------------------------


def test_a_colleague_not_on_the_team_sees_nothing_until_named(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    reference = refs["followed"]
    newcomer = _new_agent(app, "spip", "nouvelle@spip.example")
    client = _as(app, clock, newcomer)
    page = f"/dossiers/{reference}?finalite=suivi_parcours"
    before = _log(app).size()
    assert client.get(page).status_code == 403
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.rule) == (Action.CASE_VIEW, "deny", "art-3")
    assert reference not in client.get("/dossiers/").get_data(as_text=True)
    # Her colleague on the case names her (a hand-over), and it is recorded by opaque id
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == newcomer.email))
        assert user is not None
        user_id, public_id = user.id, user.public_id
    cpip = _as(app, clock, territory["cpip"])
    before = _log(app).size()
    assert _post(cpip, f"/dossiers/{reference}/equipe", agent=str(user_id)).status_code == 302
    (named,) = _events(app, before)
    assert (named.action, named.rule) == (Action.CASE_TEAM_ADD, public_id)
    assert client.get(page).status_code == 200
    # The référent takes her off again
    conseillere = _as(app, clock, territory["conseillere"])
    removal = f"/dossiers/{reference}/equipe/{public_id}/retirer"
    token = csrf_token(conseillere, f"/dossiers/{reference}")
    assert conseillere.post(removal, data={"csrf_token": token}).status_code == 302
    assert client.get(page).status_code == 403


def test_an_agent_of_another_organisation_cannot_be_named_by_a_team_member(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    outsider = _new_agent(app, "mission_locale", "autre@ml.example")
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user_id = session.scalar(select(User.id).where(User.email == outsider.email))
    cpip = _as(app, clock, territory["cpip"])
    before = _log(app).size()
    _post(cpip, f"/dossiers/{refs['followed']}/equipe", agent=str(user_id))
    (event,) = _events(app, before)
    assert (event.action, event.decision.value) == (Action.CASE_TEAM_ADD, "deny")
    assert _as(app, clock, outsider).get(f"/dossiers/{refs['followed']}").status_code == 403


# -- minors ------------------------------------------------------------------------------------


def _minor_turning_18(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> str:
    """A minor who comes of age in ten days, followed by the PJJ: he and his first parent agreed
    (valid two years); the second parent was not informed (documented exception)."""
    state = app.extensions["maillon"]
    today = clock().date()
    birth = date(today.year - 18, today.month, today.day) + timedelta(days=10)
    with state.session_factory() as session:
        service = state.cases(session)
        educateur = session.scalar(select(User).where(User.email == territory["educateur"].email))
        group = _cases(app)["minor"].group_id
        from hub.models import OperationalGroup

        group_row = session.get(OperationalGroup, group)
        case, _decision, _version = service.open_case(
            group_row, educateur, {"identite.date_naissance": birth.isoformat()}
        )
        demo_consent(service, case, educateur, today, 730, parents=True)
        ctx = service.context(case, educateur)
        service.publish(ctx, {"justice.date_fin_mesure": (today + timedelta(days=90)).isoformat()})
        session.commit()
        return case.reference


def test_the_parents_accord_counts_until_the_18th_birthday_and_no_longer(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    reference = _minor_turning_18(app, clock, territory)
    end = _paris(clock().date() + timedelta(days=90))
    page = f"/dossiers/{reference}?finalite=reperage"
    educateur = _as(app, clock, territory["educateur"])
    # With both accords (and the exception for the second parent), the group sees the date
    assert end in educateur.get(page).get_data(as_text=True)
    # The first parent withdraws: while the young person is a minor, nothing passes any more
    consent_id = _consent_id(app, reference, "parent_1")
    path = f"/dossiers/{reference}/consentement/{consent_id}/retrait"
    assert _post(educateur, path).status_code == 302
    html = educateur.get(page).get_data(as_text=True)
    assert end not in html and "Accord manquant" in html
    # On his 18th birthday his own accord is enough: the minority is judged on the day
    clock.advance(days=10)
    educateur = _as(app, clock, territory["educateur"])
    assert end in educateur.get(page).get_data(as_text=True)


def test_the_consent_form_explains_the_minors_rule_with_the_age(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    educateur = _as(app, clock, territory["educateur"])
    html = (
        educateur.get(f"/dossiers/{refs['minor']}/consentement/accord")
        .get_data(as_text=True)
        .replace("&#39;", "'")
    )
    assert "Règle des mineurs" in html
    age = clock().date().year - 2009 - ((clock().date().month, clock().date().day) < (9, 1))
    assert f"Le jeune a {age} ans aujourd" in html
    assert "accord des titulaires de l'autorité parentale est requis" in html


# -- pages: bad input is refused in French and changes nothing ------------------------------------


def _consent_form(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    today = clock().date()
    data: dict[str, Any] = {
        "grantor": "jeune",
        "decision": "given",
        "purposes": ["suivi_parcours"],
        "categories": ["justice"],
        "recipient_kinds": ["mission_locale"],
        "valid_from": today.isoformat(),
        "valid_until": (today + timedelta(days=100)).isoformat(),
        "evidence_kind": "scan",
        "scan": (SCAN, "formulaire.pdf"),
    }
    data.update(changes)
    if isinstance(data.get("scan"), tuple):  # a fresh file object for each request
        content, name = data["scan"]
        data["scan"] = (io.BytesIO(content), name)
    return data


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({"categories": []}, "consent_no_scope", "Précisez ce que couvre l"),
        (
            {"valid_until": "2000-01-01"},
            "consent_invalid_validity",
            "La fin de validité précède son début",
        ),
        ({"grantor": "parent_1"}, "parent_consent_for_adult", "Le jeune est majeur"),
        ({"scan": (b"MZ not a pdf", "x.exe")}, "evidence_invalid", "PDF, une image"),
        ({"scan": (b"", "")}, "consent_no_evidence", "Joignez le formulaire"),
    ],
)
def test_a_bad_consent_form_is_refused_in_french_and_stores_nothing(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    changes: dict[str, Any],
    code: str,
    says: str,
) -> None:
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{refs['followed']}/consentement/accord"
    token = csrf_token(client, path)
    stored = _count(app, consents_table)
    before = _log(app).size()
    response = client.post(path, data={"csrf_token": token, **_consent_form(clock, **changes)})
    assert response.status_code == 400
    assert says in response.get_data(as_text=True).replace("&#39;", "'")
    assert _count(app, consents_table) == stored
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.rule) == (Action.CONSENT_RECORD, "deny", code)


@pytest.mark.config(consent_evidence_max_bytes=2048)
def test_evidence_over_the_size_limit_is_refused(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{refs['followed']}/consentement/accord"
    token = csrf_token(client, path)
    big = SCAN + b"\0" * 4096
    response = client.post(
        path,
        data={"csrf_token": token, **_consent_form(clock, scan=(big, "grand.pdf"))},
    )
    assert response.status_code == 400
    assert "La pièce dépasse" in response.get_data(as_text=True)


def test_a_consent_form_with_a_signature_drawn_in_person_is_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    import base64

    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{refs['followed']}/consentement/accord"
    token = csrf_token(client, path)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    data = _consent_form(
        clock,
        evidence_kind="signature",
        signature="data:image/png;base64," + base64.b64encode(png).decode(),
    )
    data.pop("scan")
    stored = _count(app, consents_table)
    response = client.post(path, data={"csrf_token": token, **data})
    assert response.status_code == 302
    assert _count(app, consents_table) == stored + 1


def test_people_who_only_review_see_the_consent_but_cannot_record_it(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    coordinator = _as(app, clock, territory["coordinatrice"])
    page = coordinator.get(f"/dossiers/{refs['followed']}/consentement")
    assert page.status_code == 200 and "Retirer cet accord" not in page.get_data(as_text=True)
    before = _log(app).size()
    assert coordinator.get(f"/dossiers/{refs['followed']}/consentement/accord").status_code == 403
    event = _events(app, before)[0]  # then the generic refusal of the 403 page
    assert (event.action, event.decision.value, event.rule) == (
        Action.CONSENT_RECORD,
        "deny",
        "not_case_team",
    )


def test_prior_information_and_its_exception_are_recorded_from_the_page(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["cpip"])
    path = f"/dossiers/{refs['signalled']}/consentement/information"
    # The young person signalled is an adult: no parent is informed
    token = csrf_token(client, path)
    refused = client.post(
        path,
        data={
            "csrf_token": token,
            "subject": "parent_1",
            "method": "courrier",
            "informed_on": clock().date().isoformat(),
        },
    )
    assert refused.status_code == 400 and "majeur" in refused.get_data(as_text=True)
    before = _log(app).size()
    ok = client.post(
        path,
        data={
            "csrf_token": token,
            "subject": "jeune",
            "method": "en_personne",
            "informed_on": clock().date().isoformat(),
            "notice_version": "notice-2026-01",
        },
    )
    assert ok.status_code == 302
    (event,) = _events(app, before)
    assert (event.action, event.object_id) == (Action.CONSENT_INFORMATION, refs["signalled"])
    history = client.get(f"/dossiers/{refs['signalled']}/consentement").get_data(as_text=True)
    assert "notice-2026-01" in history


# -- receipts -----------------------------------------------------------------------------------


def _pdf_streams(pdf: bytes) -> bytes:
    """Every stream of a PDF, inflated where compressed (to look for metadata)."""
    import zlib

    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)\nendstream", pdf, re.S):
        # A compressed stream may itself end with a CR byte: never strip it as an end of
        # line (the inflate would then fail, once in 256 receipts), only try without it.
        data = match.group(1)
        for candidate in (data, data[:-1] if data.endswith(b"\r") else None):
            if candidate is None:
                continue
            try:
                out.append(zlib.decompress(candidate))
                break
            except zlib.error:
                continue
        else:
            out.append(data)
    return b"\n".join(out)


def test_the_receipt_is_an_accessible_pdf_the_dpo_can_look_up(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed: list[tuple[str, str | None]] = []
    real = hub.pdf.html_to_pdf

    def spy(html: str, *, variant: str | None = None) -> bytes:
        printed.append((html, variant))
        return real(html, variant=variant)

    monkeypatch.setattr(hub.pdf, "html_to_pdf", spy)
    reference = refs["followed"]
    consent_id = _consent_id(app, reference)
    client = _as(app, clock, territory["conseillere"])
    receipt_path = f"/dossiers/{reference}/consentement/{consent_id}/recu"
    token = csrf_token(client, f"/dossiers/{reference}/consentement")
    before = _log(app).size()
    response = client.post(receipt_path, data={"csrf_token": token, "langue": "fr"})
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert b"pdfuaid" in _pdf_streams(response.data)  # PDF/UA identification (XMP metadata)
    (event,) = _events(app, before)
    receipt_ref = event.rule
    assert (event.action, event.object_id) == (Action.CONSENT_RECEIPT, reference)
    assert re.fullmatch(r"R-[0-9A-Z]{4}-[0-9A-Z]{4}", receipt_ref)
    assert receipt_ref in response.headers["Content-Disposition"]
    html, variant = printed[-1]
    assert variant == "pdf/ua-1" and 'lang="fr"' in html
    for says in (
        "Mission Locale de Démoville",
        "Date de sortie prévisible",
        "retirer votre accord à tout moment",
        "qui a reçu ou consulté",
        receipt_ref,
        "6 mois après",
    ):
        assert says in html.replace("&#39;", "'"), says
    assert "12/05/2005" not in html and "Mina" not in html
    # In English too
    client.post(receipt_path, data={"csrf_token": token, "langue": "en"})
    english, _variant = printed[-1]
    assert 'lang="en"' in english and "withdraw your consent at any time" in english
    # The DPO finds it by its reference, with the case but never its content
    dpo = _as(app, clock, territory["dpo"])
    found = dpo.get(f"/dpo/consentements?recu={receipt_ref}").get_data(as_text=True)
    assert receipt_ref in found and reference in found and "12/05/2005" not in found


# -- API ----------------------------------------------------------------------------------------


@pytest.fixture
def spip_api(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> Callable[..., Any]:
    from tests.integration.test_api_auth import request_token
    from tests.integration.test_audit_trail import _api_client

    api = _api_client(app)
    client = app.test_client()
    token = request_token(client, api.assertion(clock)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return client.open(path, method=method, headers=headers, **kwargs)

    return call


def test_the_api_reads_consent_and_records_a_withdrawal_asked_at_the_desk(
    app: Flask, spip_api: Callable[..., Any], refs: dict[str, str]
) -> None:
    reference = refs["followed"]
    base = f"/api/v1/dossiers/{reference}/consentement"
    status = spip_api("GET", base)
    body = status.get_json()
    assert status.status_code == 200 and body["status"] == "en_vigueur"
    # The SPIP's system may not see the date of birth: it learns « adult », not the age
    assert body["minor"] is False and body["age"] is None
    assert "2005" not in status.get_data(as_text=True)
    (consent,) = body["consents"]
    assert consent["grantor"] == "jeune" and consent["status"] == "given"
    # A bad body is a 400 with its stable code
    bad = spip_api("POST", f"{base}/{consent['id']}/retrait", json={"requested_by": "voisin"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"
    # The withdrawal, then the same again
    done = spip_api("POST", f"{base}/{consent['id']}/retrait", json={"requested_by": "jeune"})
    assert done.status_code == 200 and done.get_json()["consent"]["status"] == "withdrawn"
    again = spip_api("POST", f"{base}/{consent['id']}/retrait", json={"requested_by": "jeune"})
    assert again.status_code == 409 and again.get_json()["error"] == "already_withdrawn"
    assert "déjà été retiré" in again.get_json()["message"]
    assert spip_api("GET", base).get_json()["status"] == "retire"
    # Nothing there: 404 with its code
    missing = spip_api("POST", f"{base}/999999/retrait", json={"requested_by": "jeune"})
    assert missing.status_code == 404 and missing.get_json()["error"] == "consent_not_found"


def test_the_api_hands_out_a_json_receipt(
    app: Flask, spip_api: Callable[..., Any], refs: dict[str, str]
) -> None:
    reference = refs["followed"]
    consent_id = _consent_id(app, reference)
    response = spip_api("POST", f"/api/v1/dossiers/{reference}/consentement/{consent_id}/recu")
    assert response.status_code == 201
    body = response.get_json()
    assert body["subject"] == {"case_reference": reference}
    assert body["grantor"]["id"] == "jeune" and body["withdrawal"] and body["access"]
    assert {c["id"] for c in body["categories"]} >= {"justice", "identite"}
    english = spip_api(
        "POST", f"/api/v1/dossiers/{reference}/consentement/{consent_id}/recu?langue=en"
    ).get_json()
    assert english["language"] == "en" and "withdraw" in english["withdrawal"]


def test_a_system_whose_organisation_does_not_follow_the_case_is_refused(
    app: Flask, spip_api: Callable[..., Any], refs: dict[str, str]
) -> None:
    response = spip_api("GET", f"/api/v1/dossiers/{refs['minor']}/consentement")
    assert response.status_code == 403 and response.get_json()["error"] == "not_involved"


# -- DPO ----------------------------------------------------------------------------------------


def test_the_dpo_sees_status_and_exceptions_never_content(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    dpo = _as(app, clock, territory["dpo"])
    before = _log(app).size()
    html = dpo.get("/dpo/consentements").get_data(as_text=True)
    (event,) = _events(app, before)
    assert (event.action, event.object_id) == (Action.AUDIT_READ, "dpo.consents_overview")
    # The minor's second parent was not informed: the exception is listed with its case
    exceptions = html.split("contraire à l", 1)[1].split("État par dossier", 1)[0]
    assert refs["minor"] in exceptions
    assert "second titulaire" in exceptions
    # No date of birth, no date of the measure, no justification in clear
    for secret in ("12/05/2005", "01/09/2009", "juge des enfants"):
        assert secret not in html
    assert _as(app, clock, territory["cpip"]).get("/dpo/consentements").status_code == 403


# -- the daily sweep ---------------------------------------------------------------------------


def test_the_sweep_reminds_before_expiry_once_then_notes_the_expiry(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    state = app.extensions["maillon"]

    def sweep() -> tuple[int, int]:
        with app.app_context(), state.session_factory() as session:
            return run_consent_sweep(state.cases(session))

    def notified(kind: str) -> set[str]:
        with state.session_factory() as session:
            rows = session.execute(
                select(User.email)
                .join(Notification, Notification.user_id == User.id)
                .where(Notification.kind == kind)
            )
            return {email for (email,) in rows}

    # The minor's accords end in 25 days: the PJJ educator and the coordinator are reminded
    assert sweep()[0] == 0
    assert notified("consent_expiring") == {
        territory["educateur"].email,
        territory["coordinatrice"].email,
    }
    count = _count(app, Notification.__table__)
    sweep()
    assert _count(app, Notification.__table__) == count  # once per person and consent
    # Once the validity ended, the expiry is noted (recorded, told) and nothing passes
    clock.advance(days=26)
    before = _log(app).size()
    noted, _reminded = sweep()
    assert noted == 2  # the young person's and the first parent's
    actions = [e.action for e in _events(app, before)]
    assert actions.count(Action.CONSENT_EXPIRE) == 2
    assert territory["educateur"].email in notified("consent_expired")
    assert sweep()[0] == 0


# -- nothing lost ------------------------------------------------------------------------------


def test_a_withdrawal_during_an_audit_outage_stands_and_its_event_is_appended_later(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    tmp_path: Path,
) -> None:
    from tests.integration.test_audit_trail import _break_audit_store

    reference = refs["followed"]
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{reference}/consentement/{_consent_id(app, reference)}/retrait"
    token = csrf_token(client, path)
    state = app.extensions["maillon"]
    good_log = state.audit_log
    _break_audit_store(app, tmp_path, "down")
    # The log cannot be written: the person is told (503), the withdrawal — which only
    # restricts — stands, and its event waits in the outbox
    assert client.post(path, data={"csrf_token": token}).status_code == 503
    state.audit_log = good_log
    assert _count(app, AuditOutbox.__table__) == 1
    html = client.get(f"/dossiers/{reference}?finalite=suivi_parcours").get_data(as_text=True)
    assert "12/05/2005" not in html
    # The beat appends it once the outbox row is old enough, exactly once
    before = _log(app).size()
    with app.app_context():
        assert flush_audit_outbox() == 0  # too recent: left to its request
        clock.advance(minutes=1)
        assert flush_audit_outbox() == 1
        assert flush_audit_outbox() == 0
    events = _events(app, before)
    assert [(e.action, e.object_id) for e in events] == [(Action.CONSENT_WITHDRAW, reference)]
    assert _count(app, AuditOutbox.__table__) == 0


def test_dates_are_paris_days(clock: FakeClock) -> None:
    from consent import local_day

    assert local_day(datetime(2026, 6, 30, 22, 30, tzinfo=UTC)) == date(2026, 7, 1)


def test_the_mail_that_announces_a_notification_holds_no_personal_data(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    from hub.tasks import send_notification_mail

    reference = refs["followed"]
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{reference}/consentement/{_consent_id(app, reference)}/retrait"
    _post(client, path)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        ids = list(session.scalars(select(Notification.id)))
    with app.app_context():
        assert {send_notification_mail(i) for i in ids} == {"sent"}
        assert {send_notification_mail(i) for i in ids} == {"skipped"}  # once
    mails = [p.read_text(encoding="utf-8") for p in state.config.mail_outbox.glob("*.eml")]
    assert len(mails) == len(ids) == 3
    for mail in mails:
        assert reference in mail and "/notifications" in mail
        for personal in ("12/05/2005", "2005-05-12", "Mina", "Paul", "Conseil"):
            assert personal not in mail.split("\n\n", 1)[1], personal


def test_the_dpo_reads_an_exceptions_justification_and_the_read_is_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    dpo = _as(app, clock, territory["dpo"])
    overview = dpo.get("/dpo/consentements").get_data(as_text=True)
    link = re.search(r'href="(/dpo/consentements/exception/\d+)"', overview)
    assert link is not None
    before = _log(app).size()
    page = dpo.get(link.group(1)).get_data(as_text=True)
    assert "juge des enfants" in page  # the demo's justification, opened for the DPO only
    (event,) = _events(app, before)
    assert (event.action, event.object_id, event.purpose) == (
        Action.AUDIT_READ,
        refs["minor"],
        "exception",
    )
    # Nobody else reads it: not on the case's consent page, not even the team
    team = _as(app, clock, territory["educateur"])
    history = team.get(f"/dossiers/{refs['minor']}/consentement").get_data(as_text=True)
    assert "juge des enfants" not in history
    assert team.get(link.group(1)).status_code == 403


def test_an_exception_needs_a_fresh_login_and_tells_the_dpo(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    reference = _minor_turning_18(app, clock, territory)
    educateur = _as(app, clock, territory["educateur"])
    path = f"/dossiers/{reference}/consentement/information"
    token = csrf_token(educateur, path)
    data = {
        "csrf_token": token,
        "subject": "tuteur",
        "exception": "y",
        "justification": "Le service gardien est injoignable et l'informer nuirait (exemple).",
    }
    clock.advance(minutes=11)
    stale = educateur.post(path, data=data)
    assert stale.status_code == 302 and "/confirmer-identite" in stale.headers["Location"]
    fresh = _as(app, clock, territory["educateur"])
    data["csrf_token"] = csrf_token(fresh, path)
    assert fresh.post(path, data=data).status_code == 302
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        told = session.scalars(
            select(User.email)
            .join(Notification, Notification.user_id == User.id)
            .where(Notification.kind == "consent_exception")
        ).all()
    assert told == [territory["dpo"].email]


def test_the_exception_cannot_give_back_what_a_parents_withdrawal_took(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    reference = _minor_turning_18(app, clock, territory)
    educateur = _as(app, clock, territory["educateur"])
    page = f"/dossiers/{reference}?finalite=reperage"
    end = _paris(clock().date() + timedelta(days=90))
    withdrawal = (
        f"/dossiers/{reference}/consentement/{_consent_id(app, reference, 'parent_1')}/retrait"
    )
    assert _post(educateur, withdrawal).status_code == 302
    path = f"/dossiers/{reference}/consentement/information"
    response = _post(
        educateur,
        path,
        subject="parent_1",
        exception="y",
        justification="Tentative d'écarter le parent qui vient de retirer son accord.",
    )
    assert response.status_code == 400
    assert "ne peut plus écarter son accord" in response.get_data(as_text=True).replace(
        "&#39;", "'"
    )
    assert end not in educateur.get(page).get_data(as_text=True)


def test_the_age_is_shown_only_to_those_the_charter_shows_the_date_of_birth(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # The SPIP agent sits in the group: for the monthly review he is not shown the minor's
    # date of birth, so neither his age nor the day he comes of age (both give it away)
    cpip = _as(app, clock, territory["cpip"])
    html = cpip.get(f"/dossiers/{refs['minor']}?finalite=revue_mensuelle").get_data(as_text=True)
    assert "01/09/2027" not in html and "Âge aujourd" not in html
    assert "Mineur" in html  # the minors' rule still explains what is missing
    # Reviewing the liaison form, the charter shows the group the date: then the age too
    reperage = cpip.get(f"/dossiers/{refs['minor']}?finalite=reperage").get_data(as_text=True)
    assert "01/09/2009" in reperage and "Âge aujourd" in reperage


def test_the_date_of_birth_cannot_be_moved_back_to_lift_the_parents_accord(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    """A team member cannot make the young person older to drop a parent's withdrawal; the
    date can still be corrected the other way (with the accord), and must be plausible."""
    reference = _minor_turning_18(app, clock, territory)
    educateur = _as(app, clock, territory["educateur"])
    withdrawal = (
        f"/dossiers/{reference}/consentement/{_consent_id(app, reference, 'parent_1')}/retrait"
    )
    assert _post(educateur, withdrawal).status_code == 302
    edit = f"/dossiers/{reference}/informations"
    older = _post(educateur, edit, **{"identite.date_naissance": "1990-01-01"})
    assert older.status_code == 400
    assert "ne peut pas être avancée" in older.get_data(as_text=True)
    end = _paris(clock().date() + timedelta(days=90))
    assert end not in educateur.get(f"/dossiers/{reference}?finalite=reperage").get_data(
        as_text=True
    )
    for implausible in ("1890-01-01", (clock().date() + timedelta(days=2)).isoformat()):
        response = _post(educateur, edit, **{"identite.date_naissance": implausible})
        assert response.status_code == 400, implausible


def test_a_professional_taken_off_the_team_is_not_served_a_read_recorded_after_it(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    reference = refs["followed"]
    cpip = _as(app, clock, territory["cpip"])  # on the team (he signalled the young man)
    conseillere = _as(app, clock, territory["conseillere"])
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        public_id = session.scalar(
            select(User.public_id).where(User.email == territory["cpip"].email)
        )
    removal = f"/dossiers/{reference}/equipe/{public_id}/retirer"
    token = csrf_token(conseillere, f"/dossiers/{reference}")
    # As an agent on the team, he follows the path; as a group member he would still see the
    # review's fields: read for the follow-up, which only the team grants him
    response, _shown = _read_across(
        monkeypatch,
        cpip,
        f"/dossiers/{reference}?finalite=suivi_parcours",
        lambda: conseillere.post(removal, data={"csrf_token": token}),
    )
    html = response.get_data(as_text=True)
    assert "Mina Conseil" not in html  # the référent's name: a follow-up field of the team
    events = list(_log(app).events(0, _log(app).size()))
    (taken_off,) = [
        e for e in events if e.action == Action.CASE_TEAM_REMOVE and e.object_id == reference
    ]
    views = [
        e
        for e in events
        if e.action == Action.CASE_VIEW and e.request_id == response.headers["X-Request-Id"]
    ]
    assert views[0].seq > taken_off.seq and views[-1].decision.value == "deny"


def test_the_case_list_needs_the_role_of_referent_to_list_a_case_as_referent(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # The Mission Locale counsellor is référent of the followed case; without the role (taken
    # away by an administrator) and outside the group, the case is no longer listed
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == territory["conseillere"].email))
        assert user is not None
        user.set_roles({Role.AGENT})
        from hub.models import GroupMembership

        for membership in session.scalars(
            select(GroupMembership).where(GroupMembership.user_id == user.id)
        ):
            session.delete(membership)
        session.commit()
    client = _as(app, clock, territory["conseillere"])
    assert refs["followed"] not in client.get("/dossiers/").get_data(as_text=True)
    assert client.get(f"/dossiers/{refs['followed']}").status_code == 403
