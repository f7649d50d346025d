"""The relay's routes for people in the browser (``/echange/…``): the person's session, a CSRF
token in a header, a fresh login for keys and backups; a person acts on their own devices only,
and the hub keeps one recovery backup, and none once no device is left."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit.events import Action
from exchange.directory import Directory
from exchange.envelope import CharterRef, ViewPlan, seal
from exchange.keys import DeviceSecrets
from exchange.server.tables import recovery_backups
from hub.models import Case, User
from tests.conftest import Account, FakeClock, csrf_token, login

BACKUP = json.dumps(
    {"format": "maillon/recovery/1", "kdf": {"name": "pbkdf2-sha256", "iterations": 600000,
     "salt": "AAAAAAAAAAAAAAAAAAAAAA"}, "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA"}
).encode()  # fmt: skip


def _headers(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRFToken": csrf_token(client, "/appareils"), "Content-Type": "application/json"}


def _register(client: FlaskClient, headers: dict[str, str]) -> Any:
    key = DeviceSecrets.generate().public
    return client.post(
        "/echange/appareils", data=json.dumps({"key": key.record(), "label": "Poste"}),
        headers=headers,
    )  # fmt: skip


def _backups(app: Flask) -> int:
    with app.extensions["maillon"].session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(recovery_backups)) or 0)


def test_without_a_session_the_routes_answer_401_in_json(
    client: FlaskClient, territory: dict[str, Account]
) -> None:
    for path in ("/echange/appareils", "/echange/sauvegarde", "/echange/fiches"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.get_json()["error"] == "unauthorized"


def test_a_person_registers_a_device_and_keeps_one_backup_only_just_after_logging_in(
    app: Flask, client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["conseillere"])
    headers = _headers(client)
    # Without the CSRF header, nothing
    no_csrf = {"Content-Type": "application/json"}
    assert _register(client, no_csrf).status_code == 400
    assert client.put("/echange/sauvegarde", data=BACKUP, headers=no_csrf).status_code == 400
    # With it, just after the login: a device, then its backup (a new one replaces the old)
    registered = _register(client, headers)
    assert registered.status_code == 201, registered.get_json()
    key_id = registered.get_json()["key_id"]
    for _ in range(2):
        assert client.put("/echange/sauvegarde", data=BACKUP, headers=headers).status_code == 201
    assert _backups(app) == 1
    assert client.get("/echange/sauvegarde").get_data() == BACKUP
    # Past the fresh-login window: neither a new device, nor the backup (offline guessing)
    clock.advance(minutes=11)
    client.get("/appareils")  # the session itself is still alive
    headers = _headers(client)
    late = _register(client, headers)
    assert late.status_code == 401 and late.get_json()["error"] == "reauth_required"
    assert client.get("/echange/sauvegarde").get_json()["error"] == "reauth_required"
    # Revoking the last device forgets the backup: it would restore only a revoked key
    revoked = client.post(f"/echange/appareils/{key_id}/revocation", headers=headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked"]
    assert _backups(app) == 0


def test_a_person_cannot_revoke_another_persons_device(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["conseillere"])
    key_id = _register(client, _headers(client)).get_json()["key_id"]
    client.post("/deconnexion", data={"csrf_token": csrf_token(client, "/compte")})
    login(client, clock, territory["cpip"])
    refused = client.post(f"/echange/appareils/{key_id}/revocation", headers=_headers(client))
    assert refused.status_code == 403 and refused.get_json()["error"] == "not_owner"
    page = client.post(
        f"/appareils/{key_id}/revocation",
        data={"csrf_token": csrf_token(client, "/appareils"), "motif": "perte"},
        follow_redirects=True,
    )
    assert "pas la vôtre" in page.get_data(as_text=True)


def test_a_lost_device_is_revoked_without_the_rotation_grace(
    app: Flask, client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["conseillere"])
    key_id = _register(client, _headers(client)).get_json()["key_id"]
    client.post(
        f"/appareils/{key_id}/revocation",
        data={"csrf_token": csrf_token(client, "/appareils"), "motif": "perte"},
    )
    entries = client.get("/echange/annuaire/entrees").get_json()["entries"]
    last = json.loads(base64.urlsafe_b64decode(entries[-1] + "=" * (-len(entries[-1]) % 4)))
    assert last["type"] == "key.revoke" and last["device"] == key_id
    assert last["reason"] == "admin"  # never opens again (docs/envelope.md, step 11)


# -- every route of the people's side records what it should ------------------------------------

RECORDED: dict[str, list[Action]] = {
    "echange.directory": [Action.API_READ],
    "echange.directory_entries": [Action.API_READ],
    "echange.devices": [Action.API_READ],  # GET; the POST registers: KEY_REGISTER
    "echange.revoke_device": [Action.KEY_REVOKE],
    "echange.recovery_backup": [Action.API_READ],  # GET; the PUT keeps one: KEY_BACKUP
    "echange.recipients": [Action.API_READ],
    "echange.send_form": [Action.FORM_SEND],
    "echange.inbox": [Action.API_READ],
    "echange.deliver": [Action.FORM_DELIVER],
    "echange.opened": [Action.FORM_OPEN],
    "echange.violation": [Action.FORM_VIOLATION],
    # The pages: their own keys are no one else's data; a case's catalogue, the list of forms
    # and a form's metadata are reads.
    "fiches.devices_page": [],
    "fiches.revoke_page": [Action.KEY_REVOKE],
    "fiches.compose": [Action.API_READ],
    "fiches.inbox_page": [Action.API_READ],
    "fiches.read_page": [Action.API_READ],
}


class Person:
    """A person in their browser, as the page's script talks to the hub."""

    def __init__(self, app: Flask, clock: FakeClock, account: Account) -> None:
        self.http = app.test_client()
        login(self.http, clock, account)
        self.headers = _headers(self.http)
        self.device = DeviceSecrets.generate()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.http.open(path, method=method, headers=self.headers, **kwargs)


def test_every_route_of_the_browser_side_records_exactly_what_it_should(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    log = app.extensions["maillon"].audit_log
    paul = Person(app, clock, territory["cpip"])
    mina = Person(app, clock, territory["conseillere"])
    with app.extensions["maillon"].session_factory() as session:
        reference = str(session.scalar(select(Case.reference).order_by(Case.id).limit(1)))
        paul_id = session.scalar(
            select(User.public_id).where(User.email == "cpip@demoville.example")
        )
    walked: set[str] = set()

    def recorded(endpoint: str, method: str, path: str, by: Person = paul, **kw: Any) -> Any:
        before = log.size()
        response = by.call(method, path, **kw)
        assert response.status_code in (200, 201, 302), (endpoint, response.get_data()[:300])
        events = [e.action for e in log.events(before, log.size())]
        expected = RECORDED[endpoint]
        if method in ("POST", "PUT") and endpoint in ("echange.devices", "echange.recovery_backup"):
            expected = [Action.KEY_REGISTER if endpoint == "echange.devices" else Action.KEY_BACKUP]
        assert events == expected, endpoint
        walked.add(endpoint)
        return response

    # Pages first
    recorded("fiches.devices_page", "GET", "/appareils")
    recorded("fiches.compose", "GET", f"/dossiers/{reference}/fiche")
    recorded("fiches.inbox_page", "GET", "/fiches")
    # Both register a device (Paul's spare is revoked twice over: API and page)
    for person in (paul, mina):
        body = json.dumps({"key": person.device.public.record(), "label": "Poste"})
        recorded("echange.devices", "POST", "/echange/appareils", by=person, data=body)
    recorded("echange.devices", "GET", "/echange/appareils")
    recorded("echange.recovery_backup", "PUT", "/echange/sauvegarde", data=BACKUP)
    recorded("echange.recovery_backup", "GET", "/echange/sauvegarde")
    for revoke in ("echange.revoke_device", "fiches.revoke_page"):
        spare = DeviceSecrets.generate().public
        recorded("echange.devices", "POST", "/echange/appareils",
                 data=json.dumps({"key": spare.record(), "label": "Secours"}))  # fmt: skip
        path = f"/appareils/{spare.key_id}/revocation"
        if revoke == "echange.revoke_device":
            recorded(revoke, "POST", "/echange" + path)
        else:
            token = csrf_token(paul.http, "/appareils")
            recorded(revoke, "POST", path, data={"csrf_token": token, "motif": "remplacement"})
    # Paul seals to Mina's device, as his page does
    head = recorded("echange.directory", "GET", "/echange/annuaire").get_json()
    page = recorded("echange.directory_entries", "GET", "/echange/annuaire/entrees").get_json()
    entries = [base64.urlsafe_b64decode(e + "=" * (-len(e) % 4)) for e in page["entries"]]
    replica = Directory.empty(head["vkey"]).update(entries, head["checkpoint"])
    answer = recorded(
        "echange.recipients",
        "GET",
        f"/echange/dossiers/{reference}/destinataires?finalite=suivi_parcours"
        "&champs=logement.situation",
    ).get_json()
    mina_owner = next(r for r in answer["recipients"] if "Mina Conseil" in r["label"])
    charter = answer["charter"]
    envelope = seal(
        secrets=paul.device, user=f"user:{paul_id}", org=_org(app, "cpip"),
        case=reference, charter=CharterRef(charter["id"], charter["version"], charter["digest"]),
        consent=None, purpose="suivi_parcours", directory=replica.note, now=clock(),
        views=[ViewPlan({"logement.situation": "en foyer"},
                        [replica.key(k) for k in mina_owner["devices"]])],
    ).to_bytes()  # fmt: skip
    sent = recorded("echange.send_form", "POST", "/echange/fiches", data=envelope)
    form = sent.get_json()["form"]
    key_id = mina.device.public.key_id
    recorded("echange.inbox", "GET", "/echange/fiches", by=mina)
    recorded("fiches.read_page", "GET", f"/fiches/{form}", by=mina)
    recorded("echange.deliver", "GET", f"/echange/fiches/{form}?appareil={key_id}", by=mina)
    ack = json.dumps({"appareil": key_id})
    recorded("echange.opened", "POST", f"/echange/fiches/{form}/ouverture", by=mina, data=ack)
    report = json.dumps({"appareil": key_id, "code": "fields_mismatch"})
    recorded("echange.violation", "POST", f"/echange/fiches/{form}/violation", by=mina, data=report)
    assert walked == set(RECORDED)
    people_side = {
        r.endpoint
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith(("echange.", "fiches."))
    }
    assert people_side == set(RECORDED)


def _org(app: Flask, who: str) -> str:
    with app.extensions["maillon"].session_factory() as session:
        user = session.scalar(select(User).where(User.email == f"{who}@demoville.example"))
        assert user is not None
        return str(user.organisation.public_id)
