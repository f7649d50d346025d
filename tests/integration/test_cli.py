"""Command-line administration: the same services as the web, clear errors, nothing half done."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit.events import Action
from hub.api_auth import public_jwk
from hub.models import ApiClient, User
from tests.conftest import Account


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
