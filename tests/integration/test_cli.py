"""Command-line administration: the same services as the web, clear errors, nothing half done."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from joserfc.jwk import OKPKey
from jwt.algorithms import ECAlgorithm
from sqlalchemy import func, select

from audit.events import Action
from hub.api_auth import public_jwk
from hub.models import ApiClient, User
from tests.conftest import Account
from tests.integration.test_api_auth import foreign_jwk, private_key, rfc7638


def test_demo_writes_its_accounts_privately(app: Flask, tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    result = app.test_cli_runner().invoke(args=["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    roles = {r for a in data["accounts"] for r in a["roles"]}
    assert roles == {"agent", "referent", "group_member", "coordinator", "dpo", "admin"}
    assert all(a["password"] and a["totp_secret"] for a in data["accounts"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_invite_unknown_organisation_fails_clearly_and_creates_nobody(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=[
            "user",
            "invite",
            "--name",
            "X Y",
            "--email",
            "x@y.example",
            "--org",
            "Nulle part",
            "--role",
            "agent",
        ]
    )
    assert result.exit_code != 0 and "Organisation inconnue." in result.output
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        assert session.scalar(select(User).where(User.email == "x@y.example")) is None


def test_cli_acts_are_recorded_as_the_operator(app: Flask, territory: dict[str, Account]) -> None:
    log = app.extensions["maillon"].audit_log
    before = log.size()
    result = app.test_cli_runner().invoke(args=["user", "unlock", territory["cpip"].email])
    assert result.exit_code == 0
    (event,) = log.events(before, log.size())
    assert event.action == Action.ADMIN_USER_UNLOCK and event.actor_user == "cli"


def test_api_client_registration_takes_a_public_key_only(
    app: Flask, tmp_path: Path, territory: dict[str, Account]
) -> None:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "private.jwk"
    private.write_text(json.dumps({**public_jwk(key), "d": "AAAA"}))
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "api-client",
            "register",
            "--org",
            "SPIP de Démoville",
            "--name",
            "Logiciel",
            "--jwk",
            str(private),
        ]
    )
    assert result.exit_code != 0 and "Clé refusée" in result.output
    public = tmp_path / "public.jwk"
    public.write_text(json.dumps(public_jwk(key)))
    result = runner.invoke(
        args=[
            "api-client",
            "register",
            "--org",
            "SPIP de Démoville",
            "--name",
            "Logiciel",
            "--jwk",
            str(public),
        ]
    )
    assert result.exit_code == 0
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        client = session.scalar(
            select(ApiClient).where(ApiClient.client_id == result.output.strip())
        )
        assert (
            client is not None and client.key_id == OKPKey.import_key(public_jwk(key)).thumbprint()
        )


def _register_api_client(app: Flask, jwk_file: Path) -> Result:
    return app.test_cli_runner().invoke(
        args=[
            "api-client",
            "register",
            "--org",
            "SPIP de Démoville",
            "--name",
            "Logiciel",
            "--jwk",
            str(jwk_file),
        ]
    )


@pytest.mark.parametrize("kind", ["Ed25519", "P-256", "RSA-3072"])
def test_api_client_registration_takes_each_accepted_key_type(
    app: Flask, tmp_path: Path, territory: dict[str, Account], kind: str
) -> None:
    # Given the public JWK a partner's JOSE library exports, with the partner's own kid
    jwk = {**foreign_jwk(private_key(kind)), "kid": "cle-logiciel-2026"}
    path = tmp_path / "public.jwk"
    path.write_text(json.dumps(jwk))
    # When it is registered
    result = _register_api_client(app, path)
    # Then the client holds the key alone, named by its RFC 7638 thumbprint
    assert result.exit_code == 0, result.output
    with app.extensions["maillon"].session_factory() as session:
        client = session.scalar(
            select(ApiClient).where(ApiClient.client_id == result.output.strip())
        )
        assert client is not None and client.key_id == rfc7638(jwk)
        stored = json.loads(client.public_jwk)
        assert "kid" not in stored and stored["kty"] == jwk["kty"]


REFUSED_KEY_FILES = {
    "RSA of 2048 bits": (
        lambda: json.dumps(foreign_jwk(private_key("RSA-2048"))).encode(),
        "Clé refusée : clé RSA de 2048 bits ; il en faut de 3072 à 8192.",
    ),
    "private RSA key": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "d": "AQ", "p": "AQ"}).encode(),
        "Clé refusée : ce JWK contient une partie privée (d, p). Enregistrez la clé publique "
        "seule : la clé privée ne quitte jamais l'organisation.",
    ),
    "P-384 key": (
        lambda: json.dumps(
            ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
        ).encode(),
        "Clé refusée : type de clé non accepté (EC P-384). Sont acceptées les clés publiques "
        "Ed25519 (OKP), P-256 (EC) et RSA de 3072 bits au moins.",
    ),
    "RSA key marked RS256": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "alg": "RS256"}).encode(),
        "Clé refusée : le JWK se déclare pour un autre usage (« use », « key_ops » ou « alg ») ; "
        "une clé RSA n'est acceptée que pour signer en PS256.",
    ),
    "a PEM file": (
        lambda: b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
        "Clé refusée : le fichier n'est pas une clé JWK (JSON).",
    ),
    "bytes in no UTF encoding": (
        lambda: b"\xff\xfe\xfa{",
        "Clé refusée : le fichier n'est pas une clé JWK (JSON).",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_KEY_FILES))
def test_api_client_registration_refuses_other_keys_clearly_and_registers_nothing(
    app: Flask, tmp_path: Path, territory: dict[str, Account], case: str
) -> None:
    content, message = REFUSED_KEY_FILES[case]
    path = tmp_path / "key.jwk"
    path.write_bytes(content())
    with app.extensions["maillon"].session_factory() as session:
        before = session.scalar(select(func.count()).select_from(ApiClient))
    result = _register_api_client(app, path)
    assert result.exit_code != 0 and message in result.output
    with app.extensions["maillon"].session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiClient)) == before


def test_demo_run_again_keeps_the_passwords_and_totp_secrets(app: Flask, tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "--out", str(out)]).exit_code == 0
    first = {a["email"]: a for a in json.loads(out.read_text())["accounts"]}
    assert runner.invoke(args=["demo", "--out", str(out)]).exit_code == 0
    second = {a["email"]: a for a in json.loads(out.read_text())["accounts"]}
    assert {e: (a["password"], a["totp_secret"]) for e, a in first.items()} == {
        e: (a["password"], a["totp_secret"]) for e, a in second.items()
    }
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        admin = session.scalar(select(User).where(User.email == "admin@demoville.example"))
        assert admin is not None
        assert admin.totp_secret == first["admin@demoville.example"]["totp_secret"]
        assert state.accounts(session).passwords.verify(
            admin.password_hash, first["admin@demoville.example"]["password"]
        )
    # A file that is not a previous run's: fresh credentials, no crash
    out.write_text("not json")
    assert runner.invoke(args=["demo", "--out", str(out)]).exit_code == 0
    third = {a["email"]: a for a in json.loads(out.read_text())["accounts"]}
    assert (
        third["admin@demoville.example"]["password"] != first["admin@demoville.example"]["password"]
    )


def test_demo_code_answers_without_building_the_app(tmp_path: Path) -> None:
    """A Flask plugin command: it works even where no application could be built, which is
    what makes it instant (no database, audit log, blueprints or password hasher)."""
    import os
    import subprocess
    import sys

    from hub import totp

    secret = totp.new_secret()
    accounts = tmp_path / "demo-accounts.json"
    accounts.write_text(
        json.dumps({"accounts": [{"email": "admin@demoville.example", "totp_secret": secret}]})
    )
    env = {**os.environ, "MAILLON_VAR_DIR": str(tmp_path), "MAILLON_ENV": "development"}
    flask = [sys.executable, "-m", "flask", "--app", "no_such_app_module"]
    done = subprocess.run(
        [*flask, "demo-code", "admin@demoville.example"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    code = done.stdout.strip()
    assert len(code) == 6 and code.isdigit()
    unknown = subprocess.run(
        [*flask, "demo-code", "nobody@demoville.example"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 1 and "inconnu" in unknown.stderr


def test_make_run_serves_on_the_port_asked_and_links_follow() -> None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    plan = subprocess.run(
        ["make", "-n", "-C", str(root), "run", "PORT=5101"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line for line in plan.splitlines() if "flask --app hub" in line]
    assert len(commands) == 3  # init-db, demo, serve
    assert all(
        'MAILLON_BASE_URL="${MAILLON_BASE_URL:-http://127.0.0.1:5101}"' in c for c in commands
    )
    assert commands[-1].endswith("serve --port 5101")


def test_the_demo_is_seeded_as_people_act_and_the_log_shows_it(app: Flask, tmp_path: Path) -> None:
    state = app.extensions["maillon"]
    log = state.audit_log
    before = log.size()
    result = app.test_cli_runner().invoke(args=["demo", "--out", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    events = list(log.events(before, log.size()))
    with state.session_factory() as session:
        names = {u.public_id: u.email.split("@")[0] for u in session.scalars(select(User))}
    acts = [(e.action, names.get(e.actor_user or "", "")) for e in events]
    assert (Action.CHARTER_PUBLISH, "coordinatrice") in acts
    signers = {who for action, who in acts if action is Action.CHARTER_SIGN}
    assert signers == {"cpip", "conseillere", "educateur", "coordinatrice"}
    created = [e for e in events if e.action is Action.CASE_CREATE]
    assert len(created) == 3 and all(e.rule and e.charter_version for e in created)
    assert (Action.CASE_REFERENT, "coordinatrice") in acts
    # Run again: nothing new happened, so nothing new is recorded
    size = log.size()
    assert (
        app.test_cli_runner().invoke(args=["demo", "--out", str(tmp_path / "d.json")]).exit_code
        == 0
    )
    assert log.size() == size
