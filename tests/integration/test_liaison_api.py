"""Sealed liaison forms between organisation systems, through the hub's API.

The SPIP's software and the Mission Locale's each register a device key, keep a verified replica
of the key directory, and exchange a form on a case both follow: the hub checks and relays it
without being able to read it, refuses what the charter, the consent or the directory forbid,
and records every step.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.events import Action, Decision
from exchange.directory import Directory
from exchange.envelope import CharterRef, ViewPlan, open_form, seal
from exchange.keys import DeviceSecrets
from hub.api_auth import parse_public_jwk, public_jwk
from hub.models import ApiClient, Case, Organisation
from tests.conftest import Account, FakeClock
from tests.integration.test_api_auth import Client, get_token

SPIP = "SPIP de Démoville"
MISSION_LOCALE = "Mission Locale de Démoville"


@dataclass
class System:
    """An organisation's software: its API client, a device, a directory replica."""

    http: FlaskClient
    token: str
    device: DeviceSecrets
    replica: Directory | None = None
    api: Client | None = None  # to get a new token once the clock moved far

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.http.open(path, method=method, headers=headers, **kwargs)

    def sync(self) -> Directory:
        head = self.call("GET", "/api/v1/annuaire").get_json()
        replica = self.replica or Directory.empty(head["vkey"])
        page = self.call(
            "GET", f"/api/v1/annuaire/entrees?debut={replica.size}&fin={head['size']}"
        ).get_json()
        entries = [base64.urlsafe_b64decode(e + "==") for e in page["entries"]]
        self.replica = replica.update(entries, head["checkpoint"])
        return self.replica


def _system(app: Flask, clock: FakeClock, org_name: str) -> System:
    key = Ed25519PrivateKey.generate()
    registered = parse_public_jwk(json.dumps(public_jwk(key)))
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(select(Organisation).where(Organisation.name == org_name))
        client = ApiClient(
            organisation=org,
            name=f"Logiciel {org_name}",
            public_jwk=registered.to_json(),
            key_id=registered.key_id,
        )
        session.add(client)
        session.commit()
        api = Client(client.client_id, key, registered.key_id)
    http = app.test_client()
    system = System(http, get_token(http, api, clock), DeviceSecrets.generate(), api=api)
    response = system.call(
        "POST", "/api/v1/appareils", json={"key": system.device.public.record(), "label": "Serveur"}
    )
    assert response.status_code == 201, response.get_json()
    return system


def _followed_case(app: Flask) -> str:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return str(session.scalar(select(Case.reference).order_by(Case.id).limit(1)))


@pytest.fixture
def systems(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> tuple[System, System]:
    return _system(app, clock, SPIP), _system(app, clock, MISSION_LOCALE)


def _plan(
    sender: System, reference: str, fields: list[str]
) -> tuple[dict[str, Any], list[ViewPlan], str]:
    """Ask the hub who may receive what, check every key against the verified directory."""
    replica = sender.sync()
    for purpose in ("suivi_parcours", "orientation", "revue_mensuelle", "reperage"):
        answer = sender.call(
            "GET",
            f"/api/v1/dossiers/{reference}/destinataires?finalite={purpose}&champs={','.join(fields)}",
        ).get_json()
        plans = [
            ViewPlan(
                {f: f"valeur de {f}" for f in r["fields"]},
                [replica.key(key_id) for key_id in r["devices"]],
            )
            for r in answer["recipients"]
            if r["devices"]
        ]
        if plans:
            return answer, plans, purpose
    raise AssertionError("nobody may receive these fields on the demo case")


def _seal(
    sender: System, answer: dict[str, Any], plans: list[ViewPlan], purpose: str, now: datetime
) -> bytes:
    charter = answer["charter"]
    head = sender.call("GET", "/api/v1/annuaire").get_json()
    me = sender.call("GET", "/api/v1/moi").get_json()
    return seal(
        secrets=sender.device,
        user=f"client:{me['client_id']}",
        org=me["organisation"]["id"],
        case=answer["case"],
        charter=CharterRef(charter["id"], charter["version"], charter["digest"]),
        consent=None,
        purpose=purpose,
        directory=head["checkpoint"],
        views=plans,
        now=now,
    ).to_bytes()


E2E_FIELDS = ["contact.telephone", "justice.statut", "justice.service_suivi", "identite.nom"]


def test_a_form_goes_from_one_system_to_another_unread_by_the_hub(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    reference = _followed_case(app)
    answer, plans, purpose = _plan(spip, reference, E2E_FIELDS)
    assert any(mission_locale.device.public in p.recipients for p in plans)
    data = _seal(spip, answer, plans, purpose, clock())
    # When the SPIP's software sends it
    sent = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert sent.status_code == 201, sent.get_json()
    form = sent.get_json()["form"]
    # Then a retry is the same form, not stored twice; other bytes under the same id conflict
    again = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert (again.status_code, again.get_json()["stored"]) == (200, False)
    # And the Mission Locale's software finds it, fetches it and opens it
    inbox = mission_locale.call("GET", "/api/v1/fiches").get_json()["forms"]
    assert [f["form"] for f in inbox] == [form]
    key_id = mission_locale.device.public.key_id
    fetched = mission_locale.call("GET", f"/api/v1/fiches/{form}?appareil={key_id}")
    assert fetched.status_code == 200
    replica = mission_locale.sync()
    opened = open_form(
        fetched.get_data(),
        secrets=mission_locale.device,
        sender_key=replica.key(spip.device.public.key_id),
    )
    mine = next(p for p in plans if mission_locale.device.public in p.recipients)
    assert opened.values == dict(mine.values)
    replica.check_peer(opened.manifest.directory)  # same directory as the sender saw
    ack = mission_locale.call("POST", f"/api/v1/fiches/{form}/ouverture", json={"appareil": key_id})
    assert ack.status_code == 200
    # And the hub holds no plaintext of it
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        from exchange.server.tables import forms

        stored = session.execute(select(forms.c.envelope)).scalar_one()
    for value in mine.values.values():
        assert str(value).encode() not in bytes(stored)
    # And every step is in the audit log
    log = state.audit_log
    actions = [(e.action, e.decision) for e in log.events(0, log.size())]
    for action in (Action.KEY_REGISTER, Action.FORM_SEND, Action.FORM_DELIVER, Action.FORM_OPEN):
        assert (action, Decision.ALLOW) in actions or (action, Decision.NONE) in actions


def test_a_form_to_someone_not_entitled_is_refused_naming_field_and_recipient(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    reference = _followed_case(app)
    answer, plans, purpose = _plan(spip, reference, E2E_FIELDS)
    refused_field = "identite.convictions"  # never shared under the charter-type
    widened = [ViewPlan({**p.values, refused_field: "x"}, p.recipients) for p in plans]
    data = _seal(spip, answer, widened, purpose, clock())
    log = app.extensions["maillon"].audit_log
    before = log.size()
    response = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert response.status_code == 403
    body = response.get_json()
    assert body["error"] == "form_refused"
    assert any(r["field"] == refused_field and r.get("article") for r in body["refusals"])
    # Nothing was stored, and the refusal is recorded
    assert mission_locale.call("GET", "/api/v1/fiches").get_json()["forms"] == []
    (refusal,) = log.events(before, before + 1)
    assert (refusal.action, refusal.decision) == (Action.FORM_SEND_REFUSED, Decision.DENY)
    assert refusal.object_id == reference and refusal.rule == "form_refused"


def test_a_form_signed_by_a_device_that_is_not_the_callers_is_refused(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    response = mission_locale.call(
        "POST", "/api/v1/fiches", data=data, content_type="application/json"
    )
    assert (response.status_code, response.get_json()["error"]) == (403, "sender_device")


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda d: d[: len(d) // 2], 400, "invalid_json"),
        (
            lambda d: d.replace(b'"format":"maillon/fiche/1"', b'"format":"x"'),
            400,
            "unknown_version",
        ),
        (lambda d: d[:-10] + bytes([d[-10] ^ 1]) + d[-9:], 400, None),
    ],
)
def test_bad_envelopes_get_a_stable_code_and_store_nothing(
    app: Flask,
    clock: FakeClock,
    systems: tuple[System, System],
    mutate: Any,
    status: int,
    code: str | None,
) -> None:
    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = mutate(_seal(spip, answer, plans, purpose, clock()))
    response = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert response.status_code in (status, 422)
    if code:
        assert response.get_json()["error"] == code
    assert mission_locale.call("GET", "/api/v1/fiches").get_json()["forms"] == []


def test_a_revoked_recipient_key_is_refused(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    key_id = mission_locale.device.public.key_id
    assert mission_locale.call("POST", f"/api/v1/appareils/{key_id}/revocation").status_code == 200
    response = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert response.status_code == 403
    assert any(
        r["code"] == "recipient_key" and r["device"] == key_id
        for r in response.get_json()["refusals"]
    )


# What each call of the liaison API records, exactly (tests/integration/test_audit_trail.py
# counts these endpoints as covered).
RECORDED: dict[str, list[Action]] = {
    "api.liaison.directory": [Action.API_READ],
    "api.liaison.directory_entries": [Action.API_READ],
    "api.liaison.devices": [Action.API_READ],  # GET; the POST registers: KEY_REGISTER
    "api.liaison.revoke_device": [Action.KEY_REVOKE],
    "api.liaison.recipients": [Action.API_READ],
    "api.liaison.send_form": [Action.FORM_SEND],
    "api.liaison.inbox": [Action.API_READ],
    "api.liaison.deliver": [Action.FORM_DELIVER],
    "api.liaison.opened": [Action.FORM_OPEN],
    "api.liaison.violation": [Action.FORM_VIOLATION],
}


def test_every_call_records_exactly_what_it_should(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    log = app.extensions["maillon"].audit_log
    reference = _followed_case(app)
    key_id = mission_locale.device.public.key_id
    spare = DeviceSecrets.generate().public

    def recorded(endpoint: str, method: str, path: str, by: System = spip, **kw: Any) -> Any:
        before = log.size()
        response = by.call(method, path, **kw)
        assert response.status_code in (200, 201), (endpoint, response.get_json())
        events = list(log.events(before, log.size()))
        expected = RECORDED[endpoint]
        if (endpoint, method) == ("api.liaison.devices", "POST"):
            expected = [Action.KEY_REGISTER]
        assert [e.action for e in events] == expected, endpoint
        deny = endpoint == "api.liaison.violation"
        assert all((e.decision == Decision.DENY) == deny for e in events), endpoint
        return response

    recorded("api.liaison.directory", "GET", "/api/v1/annuaire")
    recorded("api.liaison.directory_entries", "GET", "/api/v1/annuaire/entrees?debut=0")
    recorded("api.liaison.devices", "GET", "/api/v1/appareils")
    recorded("api.liaison.devices", "POST", "/api/v1/appareils", json={"key": spare.record()})
    recorded("api.liaison.revoke_device", "POST", f"/api/v1/appareils/{spare.key_id}/revocation")
    answer, plans, purpose = _plan(spip, reference, E2E_FIELDS)  # calls recipients unchecked
    recorded(
        "api.liaison.recipients",
        "GET",
        f"/api/v1/dossiers/{reference}/destinataires?finalite={purpose}&champs=identite.nom",
    )
    data = _seal(spip, answer, plans, purpose, clock())
    sent = recorded(
        "api.liaison.send_form",
        "POST",
        "/api/v1/fiches",
        data=data,
        content_type="application/json",
    )
    form = sent.get_json()["form"]
    recorded("api.liaison.inbox", "GET", "/api/v1/fiches", by=mission_locale)
    recorded(
        "api.liaison.deliver", "GET", f"/api/v1/fiches/{form}?appareil={key_id}", by=mission_locale
    )
    ack = {"appareil": key_id}
    recorded(
        "api.liaison.opened",
        "POST",
        f"/api/v1/fiches/{form}/ouverture",
        by=mission_locale,
        json=ack,
    )
    recorded(
        "api.liaison.violation",
        "POST",
        f"/api/v1/fiches/{form}/violation",
        by=mission_locale,
        json={**ack, "code": "fields_mismatch"},
    )
    endpoints = {
        r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("api.liaison.")
    }
    assert endpoints == set(RECORDED)


def test_forms_past_their_retention_are_destroyed_and_the_destruction_recorded(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    from exchange.server.tables import form_recipients, forms
    from hub.tasks import destroy_expired_forms

    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    form = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    form_id = form.get_json()["form"]
    state = app.extensions["maillon"]
    with app.app_context():
        assert destroy_expired_forms.run() == 0  # within retention: kept
    # When the retention (365 days by default) has passed
    clock.advance(days=366)
    log = state.audit_log
    before = log.size()
    with app.app_context():
        assert destroy_expired_forms.run() == 1
    # Then nothing of it remains, the destruction is recorded, and fetching it finds nothing
    with state.session_factory() as session:
        assert session.execute(select(forms)).all() == []
        assert session.execute(select(form_recipients)).all() == []
    (event,) = log.events(before, log.size())
    assert (event.action, event.object_type, event.rule) == (
        Action.RETENTION_DESTROY,
        "form",
        "count:1",
    )
    assert mission_locale.api is not None
    mission_locale.token = get_token(mission_locale.http, mission_locale.api, clock)
    key_id = mission_locale.device.public.key_id
    fetched = mission_locale.call("GET", f"/api/v1/fiches/{form_id}?appareil={key_id}")
    assert (fetched.status_code, fetched.get_json()["error"]) == (404, "form_unknown")


def test_two_sends_of_one_form_at_once_store_it_once_and_answer_both(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    import threading

    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        http = app.test_client()
        barrier.wait()
        response = http.post(
            "/api/v1/fiches",
            data=data,
            content_type="application/json",
            headers={"Authorization": f"Bearer {spip.token}"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # One stored it, the other is told it was (never a 500); one row, and both recorded
    assert sorted(statuses) == [200, 201]
    assert len(mission_locale.call("GET", "/api/v1/fiches").get_json()["forms"]) == 1


def test_a_violation_report_names_a_sender_fault_and_opens_nothing(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    form = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    form_id = form.get_json()["form"]
    key_id = mission_locale.device.public.key_id
    log = app.extensions["maillon"].audit_log
    # Free text, or a code that is no proof against the sender: refused, nothing recorded
    for code in ("Jean.Dupont.ne.le.2008-03-01", "MoïseDupont", "key_revoked", ""):
        before = log.size()
        refused = mission_locale.call(
            "POST", f"/api/v1/fiches/{form_id}/violation", json={"appareil": key_id, "code": code}
        )
        assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_request")
        assert log.size() == before
    # A listed code is recorded with the form, and the form stays unopened
    reported = mission_locale.call(
        "POST",
        f"/api/v1/fiches/{form_id}/violation",
        json={"appareil": key_id, "code": "fields_mismatch"},
    )
    assert reported.status_code == 200
    (event,) = log.events(log.size() - 1, log.size())
    assert (event.action, event.rule) == (Action.FORM_VIOLATION, f"fields_mismatch:{form_id}")
    (row,) = mission_locale.call("GET", "/api/v1/fiches").get_json()["forms"]
    assert not row["opened"]
    # A retried send is recorded as such; a malformed id in a URL is never written to the log
    before = log.size()
    spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    (retry,) = log.events(before, log.size())
    assert (retry.action, retry.rule) == (Action.FORM_SEND, f"retry:{form_id}")
    before = log.size()
    mission_locale.call("GET", f"/api/v1/fiches/Jean.Dupont.2008?appareil={key_id}")
    (denied,) = log.events(before, log.size())
    assert (denied.object_id, denied.rule) == ("unreadable", "form_unknown")


def test_a_form_citing_a_directory_without_its_signing_key_is_refused(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    from exchange.server.tables import directory_checkpoints

    spip, _mission_locale = systems
    # The SPIP's software switches to a new device key (entry 2 of the directory)
    spip.device = DeviceSecrets.generate()
    registered = spip.call("POST", "/api/v1/appareils", json={"key": spip.device.public.record()})
    assert registered.status_code == 201
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        older = session.execute(
            select(directory_checkpoints.c.note).where(directory_checkpoints.c.size == 2)
        ).scalar_one()
    me = spip.call("GET", "/api/v1/moi").get_json()
    charter = answer["charter"]
    data = seal(
        secrets=spip.device,
        user=f"client:{me['client_id']}",
        org=me["organisation"]["id"],
        case=answer["case"],
        charter=CharterRef(charter["id"], charter["version"], charter["digest"]),
        consent=None,
        purpose=purpose,
        directory=older,  # signed by the hub, but before the new key was published
        views=plans,
        now=clock(),
    ).to_bytes()
    response = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    assert response.status_code == 403
    assert {r["code"] for r in response.get_json()["refusals"]} == {"sender_key_unseen"}


def test_violation_reports_are_bounded_per_system(
    app: Flask, clock: FakeClock, systems: tuple[System, System]
) -> None:
    spip, mission_locale = systems
    answer, plans, purpose = _plan(spip, _followed_case(app), E2E_FIELDS)
    data = _seal(spip, answer, plans, purpose, clock())
    form_id = spip.call("POST", "/api/v1/fiches", data=data, content_type="application/json")
    report = {"appareil": mission_locale.device.public.key_id, "code": "fields_mismatch"}
    path = f"/api/v1/fiches/{form_id.get_json()['form']}/violation"
    statuses = [mission_locale.call("POST", path, json=report).status_code for _ in range(31)]
    assert statuses[:30] == [200] * 30 and statuses[30] == 429
