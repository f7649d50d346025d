"""A partner's IT installs the ``maillon`` client alone and exchanges a sealed form with a live hub.

The client is the base distribution (``pip install maillon``: cryptography and joserfc only);
the hub's server dependencies are the ``server`` extra (docs/client.md). Here, in a fresh
virtual environment (packages from PyPI, the project from this tree), the client is installed
without them, then two partner systems set up their folders, register device keys, and one
sends a form the other opens, over HTTP, against a hub served by ``flask run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import create_engine, select

from hub.api_auth import public_jwk
from hub.models import Case
from tests.http_helpers import flask_run, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What a client install must not pull in (import names and distribution names).
SERVER_ONLY = ("flask", "sqlalchemy", "celery", "weasyprint", "psycopg", "redis", "gunicorn")
PASSPHRASE = "une phrase de passe assez longue"


@dataclass
class Hub:
    """A hub served on loopback, seeded like the demo, with two registered API clients."""

    base_url: str
    env: dict[str, str]
    database_url: str
    directory_key: str
    clients: dict[str, tuple[str, Path]]  # organisation → (client_id, private key PEM)


def _run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the client installed (from this tree)."""
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # Not editable: the client gets a copy, as a partner's IT would from a release.
    _run([str(venv / "bin/pip"), "install", "--quiet", str(ROOT)], env, cwd=venv.parent)
    return venv


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """``flask run`` on the embedded store, seeded as an operator would."""
    tmp = tmp_path_factory.mktemp("hub")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    database_url = f"sqlite:///{tmp / 'var' / 'maillon.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLON_")}
    env.update(
        MAILLON_ENV="development",
        MAILLON_VAR_DIR=str(tmp / "var"),
        MAILLON_DATABASE_URL=database_url,
        MAILLON_BASE_URL=base_url,
        MAILLON_ARGON2_TIME_COST="1",
        MAILLON_ARGON2_MEMORY_KIB="1024",
    )
    flask = [str(BIN / "flask"), "--app", "hub"]
    _run([*flask, "init-db"], env)
    _run([*flask, "demo", "--out", str(tmp / "demo-accounts.json")], env)
    clients: dict[str, tuple[str, Path]] = {}
    for org in ("SPIP de Démoville", "Mission Locale de Démoville"):
        key = Ed25519PrivateKey.generate()
        jwk, pem = tmp / f"{len(clients)}.jwk", tmp / f"{len(clients)}.pem"
        jwk.write_text(json.dumps(public_jwk(key)), encoding="utf-8")
        pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        register = ["api-client", "register", "--org", org, "--name", "Logiciel", "--jwk", str(jwk)]
        clients[org] = (_run([*flask, *register], env).split()[-1], pem)
    directory_key = _run([*flask, "directory-key"], env).strip()
    with flask_run(env, port, tmp / "server.log", "/healthz"):
        yield Hub(base_url, env, database_url, directory_key, clients)


def test_the_client_installs_without_the_servers_dependencies(client_venv: Path) -> None:
    python = str(client_venv / "bin/python")
    installed = _run([str(client_venv / "bin/pip"), "list", "--format=json"], dict(os.environ))
    names = {p["name"].lower() for p in json.loads(installed)}
    assert {"cryptography", "joserfc", "maillon"} <= names
    assert not names & {"flask", "sqlalchemy", "celery", "weasyprint", "psycopg", "redis"}
    for module in SERVER_ONLY:
        found = subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True, timeout=60, check=False
        )
        assert found.returncode != 0, f"{module} is importable in the client's environment"
    # Its commands start: the exchange client, the offline verifiers
    for command in (["maillon", "--help"], ["python", "-m", "audit.verify", "--help"]):
        _run(
            [str(client_venv / "bin" / command[0]), *command[1:]], dict(os.environ), cwd=client_venv
        )


def _maillon(venv: Path, folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLON_")}
    env["MAILLON_PASSPHRASE"] = PASSPHRASE
    return _run(
        [str(venv / "bin/maillon"), "--dossier", str(folder), *args], env, cwd=folder.parent
    )


def test_two_partners_exchange_a_sealed_form_with_the_client_alone(
    client_venv: Path, hub: Hub, tmp_path: Path
) -> None:
    folders = {}
    for org, (client_id, pem) in hub.clients.items():
        folder = tmp_path / org.split()[0].lower()
        init = ["init", "--hub", hub.base_url, "--client-id", client_id, "--client-key", str(pem)]
        _maillon(client_venv, folder, *init, "--directory-key", hub.directory_key)
        _maillon(client_venv, folder, "keys", "create")
        _maillon(client_venv, folder, "keys", "register", "--label", "Serveur")
        folders[org] = folder
    engine = create_engine(hub.database_url)
    with engine.connect() as connection:
        reference = str(connection.scalar(select(Case.reference).order_by(Case.id).limit(1)))
    engine.dispose()
    values = {"contact.telephone": "06 98 76 54 32", "justice.statut": "Libération conditionnelle"}
    form_file = tmp_path / "fiche.json"
    form_file.write_text(json.dumps(values), encoding="utf-8")
    spip, mission_locale = folders["SPIP de Démoville"], folders["Mission Locale de Démoville"]
    # When the SPIP's system seals and sends it
    send = ["send", "--case", reference, "--purpose", "orientation", "--yes", str(form_file)]
    sent = _maillon(client_venv, spip, *send)
    form = sent.split("Fiche envoyée : ")[1].split()[0]
    # Then the Mission Locale's system lists it and opens it, with the fields it may see
    assert form in _maillon(client_venv, mission_locale, "inbox")
    opened = json.loads(_maillon(client_venv, mission_locale, "open", form))
    assert opened["form"] == form and opened["values"]
    assert all(values[k] == v for k, v in opened["values"].items())
