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

from exchange.keys import DeviceSecrets
from exchange.server.tables import recovery_backups
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
