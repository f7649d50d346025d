"""The ``maillon`` client end to end against the hub: keystore, directory sync, send, open.

The client talks to the hub through its :class:`~exchange.client.Fetcher`; here the hub's test
client stands in for the network (``tests/integration/test_client_install.py`` runs the same
commands from a fresh virtual environment against a live hub).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange.cli import main
from exchange.client import Response, plan_form
from exchange.directory import Directory, key_added
from exchange.errors import VerificationError
from exchange.keys import DeviceSecrets
from hub.api_auth import parse_public_jwk, public_jwk
from hub.liaison import directory_signer
from hub.models import ApiClient, Case, Organisation
from tests.conftest import Account

SPIP = "SPIP de Démoville"
MISSION_LOCALE = "Mission Locale de Démoville"


@dataclass
class FlaskFetcher:
    """The hub's test client as the client's network."""

    http: FlaskClient

    def __call__(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        answer = self.http.open(path, method=method, data=body, headers=dict(headers))
        try:
            return Response(answer.status_code, answer.get_data(), answer.content_type or "")
        finally:
            answer.close()  # a static file is streamed from an open file


def _api_client(app: Flask, org_name: str, folder: Path) -> tuple[str, Path]:
    key = Ed25519PrivateKey.generate()
    registered = parse_public_jwk(json.dumps(public_jwk(key)))
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(select(Organisation).where(Organisation.name == org_name))
        client = ApiClient(
            organisation=org,
            name="Logiciel",
            public_jwk=registered.to_json(),
            key_id=registered.key_id,
        )
        session.add(client)
        session.commit()
        client_id = client.client_id
    folder.mkdir(parents=True)
    pem = folder / "client.pem"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return client_id, pem


def _workspace(app: Flask, org_name: str, tmp_path: Path, name: str) -> list[str]:
    """A configured client folder with a registered device; the ``--dossier`` arguments."""
    folder = tmp_path / name
    client_id, pem = _api_client(app, org_name, tmp_path / f"{name}-secrets")
    fetcher = FlaskFetcher(app.test_client())
    vkey = directory_signer(app.extensions["maillon"]).verifier().vkey()
    base = ["--dossier", str(folder)]
    init = ["init", "--hub", "http://localhost", "--client-id", client_id, "--client-key", str(pem)]
    assert main([*base, *init, "--directory-key", vkey], fetcher=fetcher) == 0
    assert main([*base, "keys", "create"], fetcher=fetcher) == 0
    assert main([*base, "keys", "register", "--label", "Serveur"], fetcher=fetcher) == 0
    return base


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILLON_PASSPHRASE", "une phrase de passe assez longue")


def _case(app: Flask) -> str:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return str(session.scalar(select(Case.reference).order_by(Case.id).limit(1)))


def test_a_system_sends_a_form_another_opens_it(
    app: Flask, territory: dict[str, Account], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetcher = FlaskFetcher(app.test_client())
    spip = _workspace(app, SPIP, tmp_path, "spip")
    mission_locale = _workspace(app, MISSION_LOCALE, tmp_path, "ml")
    values = {"contact.telephone": "06 12 34 56 78", "justice.statut": "Aménagement de peine"}
    form_file = tmp_path / "fiche.json"
    form_file.write_text(json.dumps(values), encoding="utf-8")
    scan = tmp_path / "jugement.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    capsys.readouterr()
    # When the SPIP's system seals and sends it (after showing who gets what)
    code = main(
        [
            *spip,
            "send",
            "--case",
            _case(app),
            "--purpose",
            "orientation",
            "--yes",
            "--joindre",
            f"justice.statut={scan}",
            str(form_file),
        ],
        fetcher=fetcher,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Fiche envoyée" in out
    assert "Pièce jointe jugement.pdf : avec justice.statut" in out
    form = out.split("Fiche envoyée : ")[1].split(" ")[0]
    # Then the Mission Locale's system lists and opens it
    assert main([*mission_locale, "inbox"], fetcher=fetcher) == 0
    assert form in capsys.readouterr().out
    pieces = tmp_path / "pieces"
    assert main([*mission_locale, "open", form, "--pieces", str(pieces)], fetcher=fetcher) == 0
    opened = json.loads(capsys.readouterr().out)
    assert opened["form"] == form
    assert set(opened["values"]) <= set(values)
    assert all(values[k] == v for k, v in opened["values"].items())
    # The scan came with the field it supports (the charter lets the Mission Locale know it)
    assert "justice.statut" in opened["values"]
    [saved] = opened["files"]
    assert saved["field"] == "justice.statut" and saved["name"] == "jugement.pdf"
    assert Path(saved["saved_as"]).read_bytes() == scan.read_bytes()
    # And nothing of it is stored in clear on the hub
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        from exchange.server.tables import forms

        stored = bytes(session.execute(select(forms.c.envelope)).scalar_one())
    assert b"06 12 34 56 78" not in stored


def test_a_wrong_passphrase_opens_nothing(
    app: Flask, territory: dict[str, Account], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spip = _workspace(app, SPIP, tmp_path, "spip")
    monkeypatch.setenv("MAILLON_PASSPHRASE", "ce n'est pas la bonne phrase")
    assert main([*spip, "keys", "fingerprint"], fetcher=FlaskFetcher(app.test_client())) == 1


def test_a_rigged_hub_offering_its_own_key_stops_the_send(app: Flask) -> None:
    # The directory says Bob's key is K; the hub's answer about recipients names another key.
    signer = directory_signer(app.extensions["maillon"])
    real, fake = DeviceSecrets.generate().public, DeviceSecrets.generate().public
    from datetime import UTC, datetime

    from audit import merkle
    from audit.checkpoint import Checkpoint

    now = datetime(2026, 12, 1, tzinfo=UTC)
    entries = [key_added(real, owner="user:bob", org="o-1", now=now)]
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])
    note = str(signer.sign_checkpoint(Checkpoint(signer.name, 1, root, now)))
    replica = Directory.empty(signer.verifier().vkey()).update(entries, note)
    answer: dict[str, Any] = {
        "case": "C-7K3Q-X9M2",
        "charter": {"id": "c", "version": 1, "digest": "sha256:" + "0" * 64},
        "recipients": [
            {
                "owner": "user:bob",
                "organisation": "o-1",
                "fields": ["a.b"],
                "devices": [fake.key_id],
            }
        ],
    }
    with pytest.raises(VerificationError) as refused:
        plan_form(answer, {"a.b": "x"}, replica, "suivi_parcours")
    assert refused.value.code == "key_not_in_directory"
    # Named with the right key, every key of Bob's the directory holds is sealed to
    answer["recipients"][0]["devices"] = [real.key_id]
    plan = plan_form(answer, {"a.b": "x"}, replica, "suivi_parcours")
    assert [list(v.recipients) for v in plan.views] == [[real]]


def test_a_key_injected_under_a_systems_name_is_caught_at_its_next_sync(
    app: Flask,
    territory: dict[str, Account],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the Mission Locale's system, its own key registered and synced
    fetcher = FlaskFetcher(app.test_client())
    mission_locale = _workspace(app, MISSION_LOCALE, tmp_path, "ml")
    assert main([*mission_locale, "sync"], fetcher=fetcher) == 0
    # When whoever holds the hub adds a key of its own under that system's name
    from hub import liaison

    state = app.extensions["maillon"]
    config = json.loads((tmp_path / "ml" / "config.json").read_text())
    with state.session_factory() as session:
        client = session.scalar(select(ApiClient).where(ApiClient.client_id == config["client_id"]))
        assert client is not None
        intruder = DeviceSecrets.generate().public
        liaison.devices(session, state).register(
            intruder.record(), owner=liaison.client_owner(client), label="Serveur"
        )
        session.commit()
    capsys.readouterr()
    # Then its next sync raises the alarm, and nothing is opened or sent meanwhile
    assert main([*mission_locale, "sync"], fetcher=fetcher) == 1
    err = capsys.readouterr().err
    assert "foreign_key" in err and intruder.key_id in err
    assert main([*mission_locale, "inbox"], fetcher=fetcher) == 0  # listing shows no content


def test_weak_keys_are_refused_at_registration(
    app: Flask, territory: dict[str, Account], tmp_path: Path
) -> None:
    from exchange.encoding import b64e

    folder = tmp_path / "spip"
    client_id, pem = _api_client(app, SPIP, folder)
    from exchange.cli import Workspace

    init = ["init", "--hub", "http://localhost", "--client-id", client_id, "--client-key", str(pem)]
    vkey = directory_signer(app.extensions["maillon"]).verifier().vkey()
    fetcher = FlaskFetcher(app.test_client())
    assert (
        main(["--dossier", str(folder / "ws"), *init, "--directory-key", vkey], fetcher=fetcher)
        == 0
    )
    client = Workspace(folder / "ws", fetcher).client()
    record = DeviceSecrets.generate().public.record()
    record["kem"]["pk"] = b64e(bytes(32))  # all-zero X25519 key: every shared secret is zero
    answer = client.raw("POST", "/api/v1/appareils", json_body={"key": record, "label": "x"})
    assert answer.status == 400 and answer.json()["error"] == "invalid_key"


def test_another_installation_of_the_same_system_is_accepted_once_compared(
    app: Flask,
    territory: dict[str, Account],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fetcher = FlaskFetcher(app.test_client())
    first = _workspace(app, MISSION_LOCALE, tmp_path, "ml")
    config = json.loads((tmp_path / "ml" / "config.json").read_text())
    # A second installation of the same API client, with its own keystore and key
    second_folder = tmp_path / "ml-2"
    init = ["init", "--hub", "http://localhost", "--client-id", config["client_id"]]
    init += ["--client-key", config["client_key"], "--directory-key", config["directory_key"]]
    second = ["--dossier", str(second_folder)]
    assert main([*second, *init], fetcher=fetcher) == 0
    assert main([*second, "keys", "create"], fetcher=fetcher) == 0
    assert main([*second, "keys", "register"], fetcher=fetcher) == 0
    other_key = json.loads((second_folder / "config.json").read_text())["own_keys"][0]
    capsys.readouterr()
    # The first one takes it for a foreign key until someone compares and accepts it
    assert main([*first, "sync"], fetcher=fetcher) == 1
    assert "foreign_key" in capsys.readouterr().err
    assert main([*first, "keys", "trust", other_key, "--yes"], fetcher=fetcher) == 0
    assert main([*first, "sync"], fetcher=fetcher) == 0
    # Running init again keeps what it knows of its own keys
    assert main([*first, *init], fetcher=fetcher) == 0
    assert main([*first, "sync"], fetcher=fetcher) == 0
