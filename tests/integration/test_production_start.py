"""Gunicorn with the production settings, against PostgreSQL and Redis: /healthz and a real login.

Runs the same commands an operator runs (deploy/README.md): keys generate, init-db, org create,
user invite, then gunicorn with deploy/gunicorn.conf.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import totp
from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    _create_database,
    _drop_database,
    require_service,
)
from tests.http_helpers import Browser as _Browser
from tests.http_helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7", "Host": "maillon.test"}


def Browser(port: int) -> _Browser:
    """A browser behind the nginx of the production setup."""
    return _Browser(port, FORWARDED)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    require_service(POSTGRES_URL, "PostgreSQL (MAILLON_TEST_POSTGRES_URL)")
    require_service(REDIS_URL, "Redis (MAILLON_TEST_REDIS_URL)")
    suffix = uuid.uuid4().hex[:8]
    main, audit = f"maillon_prod_{suffix}", f"maillon_prod_audit_{suffix}"
    env = dict(os.environ)
    env.update(
        MAILLON_ENV="production",
        MAILLON_BASE_URL="https://maillon.test",
        MAILLON_SECRET_KEY=uuid.uuid4().hex * 2,
        MAILLON_IP_HASH_KEY=uuid.uuid4().hex * 2,
        MAILLON_DATA_KEY=uuid.uuid4().hex * 2,
        MAILLON_DATABASE_URL=_create_database(POSTGRES_URL, main),
        MAILLON_AUDIT_DATABASE_URL=_create_database(POSTGRES_URL, audit),
        MAILLON_BROKER_URL=REDIS_URL,
        MAILLON_RATELIMIT_STORAGE_URL=REDIS_URL.rsplit("/", 1)[0] + "/1",
        MAILLON_SERVER_KEY_FILE=str(tmp_path / "server-key.pem"),
        MAILLON_VAR_DIR=str(tmp_path / "var"),
        MAILLON_TRUSTED_PROXIES="1",
        MAILLON_MAIL_SERVER="127.0.0.1",
    )
    port = free_port()
    env["MAILLON_BIND"] = f"127.0.0.1:{port}"
    env["MAILLON_WEB_WORKERS"] = "2"
    gunicorn = None
    log = (tmp_path / "gunicorn.log").open("wb")
    try:
        flask = [str(BIN / "flask"), "--app", "hub"]
        run = {"env": env, "check": True, "capture_output": True, "text": True, "cwd": ROOT}
        subprocess.run([sys.executable, "-m", "hub.keys", env["MAILLON_SERVER_KEY_FILE"]], **run)  # type: ignore[call-overload]
        subprocess.run([*flask, "init-db"], **run)  # type: ignore[call-overload]
        gunicorn = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "-c",
                str(ROOT / "deploy/gunicorn.conf.py"),
                "hub:create_app()",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _, _ = Browser(port).request("GET", "/healthz")
                if status in (200, 503):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(
                "gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:]
            )
        yield env, port
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        log.close()
        _drop_database(POSTGRES_URL, main)
        _drop_database(POSTGRES_URL, audit)


def test_gunicorn_in_production_serves_healthz_and_a_full_login(
    production: tuple[dict[str, str], int],
) -> None:
    env, port = production
    # Health: database, audit store and Redis broker all reachable
    status, headers, body = Browser(port).request("GET", "/healthz")
    assert status == 200, body
    assert json.loads(body) == {
        "status": "ok",
        # PostgreSQL audit store: its disk is the database operators' to watch
        "checks": {"database": "ok", "audit": "ok", "broker": "ok", "audit_space": "unknown"},
    }
    assert headers["strict-transport-security"].startswith("max-age=")

    # An operator creates an organisation and invites a person from the CLI
    flask = [str(BIN / "flask"), "--app", "hub"]
    run = {"env": env, "check": True, "capture_output": True, "text": True, "cwd": ROOT}
    subprocess.run([*flask, "org", "create", "SPIP de Production", "--kind", "spip"], **run)  # type: ignore[call-overload]
    invited = subprocess.run(  # type: ignore[call-overload]
        [
            *flask,
            "user",
            "invite",
            "--name",
            "Paule Prod",
            "--email",
            "paule@spip.example",
            "--org",
            "SPIP de Production",
            "--role",
            "agent",
        ],
        **run,
    )
    link = re.search(r"https://maillon\.test(/activation/\S+)", invited.stdout).group(1)  # type: ignore[union-attr]

    # The person activates the account through gunicorn
    browser = Browser(port)
    status, headers, page = browser.request("GET", link)
    assert status == 200 and "__Host-maillon" in browser.cookies
    secret = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")  # type: ignore[union-attr]
    password = "un mot de passe de production"
    now = datetime.now(UTC)
    status, _, page = browser.request(
        "POST",
        link,
        {
            "csrf_token": _csrf(page),
            "password": password,
            "password_again": password,
            "code": totp.code_at(secret, now),
        },
    )
    assert status == 200 and "Votre compte est activé" in page, page[-1500:]
    status, _, page = browser.request("GET", "/")
    status, _, _ = browser.request("POST", "/deconnexion", {"csrf_token": _csrf(page)})
    assert status == 302

    # And logs in again with password and the next TOTP code
    fresh = Browser(port)
    status, _, page = fresh.request("GET", "/connexion")
    status, headers, _ = fresh.request(
        "POST",
        "/connexion",
        {
            "csrf_token": _csrf(page),
            "email": "paule@spip.example",
            "password": password,
            "code": totp.code_at(secret, now + timedelta(seconds=totp.INTERVAL)),
        },
    )
    assert status == 302 and headers["location"] == "/"
    status, _, page = fresh.request("GET", "/")
    assert status == 200 and "Paule Prod" in page
