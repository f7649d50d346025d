"""Fixtures shared by the whole suite.

The ``app`` fixture runs each test against SQLite and, when ``MAILLON_TEST_POSTGRES_URL`` is
set, PostgreSQL too. In CI (``CI=true``) a test that needs a missing service fails instead of
skipping, so a green CI always means both backends ran.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from hub import create_app, totp
from hub.config import Argon2Params, Config
from hub.db import Base, make_engine
from hub.demo import seed_demo
from hub.keys import load_server_key
from hub.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("MAILLON_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("MAILLON_TEST_REDIS_URL", "")


def require_service(url: str, name: str) -> None:
    """Skip (locally) or fail (in CI) when a service URL is not configured."""
    if url:
        return
    message = f"{name} is not configured for this run"
    if IN_CI:
        pytest.fail(f"{message}: CI must provide it (see .ci/run)")
    pytest.skip(message)


class FakeClock:
    """A controllable clock, injected into the hub instead of the wall clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)
        return self.now


def make_config(var_dir: Path, **overrides: Any) -> Config:
    """A testing configuration with random secrets and cheap Argon2 parameters."""
    var_dir.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "env": "testing",
        "secret_key": secrets.token_urlsafe(32),
        "database_url": f"sqlite:///{var_dir / 'maillon.sqlite'}",
        "audit_database_url": f"sqlite:///{var_dir / 'audit.sqlite'}",
        "broker_url": f"sqla+sqlite:///{var_dir / 'broker.sqlite'}",
        "server_key_file": var_dir / "server-key.pem",
        "ip_hash_key": secrets.token_bytes(32),
        "data_key": secrets.token_bytes(32),
        "base_url": "http://localhost",
        "var_dir": var_dir,
        # Cheap hashing keeps the suite fast; production parameters are tested in unit tests.
        "argon2": Argon2Params(time_cost=1, memory_cost=1024, parallelism=1),
    }
    values.update(overrides)
    return Config(**values)


# -- databases -----------------------------------------------------------------------------


@dataclass
class PostgresDatabases:
    """One migrated main database and one audit database for this test session."""

    main_url: str
    audit_url: str
    tables: list[str] = field(default_factory=list)


def _create_database(server_url: str, name: str) -> str:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(server_url: str, name: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Fresh PostgreSQL databases for the session, migrated once."""
    require_service(POSTGRES_URL, "PostgreSQL (MAILLON_TEST_POSTGRES_URL)")
    suffix = uuid.uuid4().hex[:10]
    names = (f"maillon_test_{suffix}", f"maillon_audit_test_{suffix}")
    main_url = _create_database(POSTGRES_URL, names[0])
    audit_url = _create_database(POSTGRES_URL, names[1])
    engine = make_engine(main_url)
    upgrade(engine)
    engine.dispose()
    yield PostgresDatabases(main_url, audit_url, [t.name for t in Base.metadata.sorted_tables])
    for name in names:
        _drop_database(POSTGRES_URL, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "maillon.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs against."""
    return str(request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database (migration tests), on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
        yield engine
        engine.dispose()
        return
    require_service(POSTGRES_URL, "PostgreSQL (MAILLON_TEST_POSTGRES_URL)")
    name = f"maillon_empty_{uuid.uuid4().hex[:10]}"
    url = _create_database(POSTGRES_URL, name)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    _drop_database(POSTGRES_URL, name)


@pytest.fixture
def clock() -> FakeClock:
    """The hub's clock for this test."""
    return FakeClock()


@pytest.fixture(scope="session")
def server_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One server key for the session, as in production: the shared PostgreSQL audit log then
    holds checkpoints signed by a single key."""
    path = tmp_path_factory.mktemp("keys") / "server-key.pem"
    load_server_key(path, create=True)
    return path


@pytest.fixture
def config(
    tmp_path: Path, db_backend: str, request: pytest.FixtureRequest, server_key_file: Path
) -> Iterator[Config]:
    """A testing configuration on the selected backend."""
    var_dir = tmp_path / "var"
    marker = request.node.get_closest_marker("config")
    overrides: dict[str, Any] = {"server_key_file": server_key_file}
    overrides.update(marker.kwargs if marker else {})
    if db_backend == "sqlite":
        var_dir.mkdir()
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, var_dir / "maillon.sqlite")
        yield make_config(var_dir, **overrides)
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    yield make_config(
        var_dir,
        database_url=databases.main_url,
        audit_database_url=databases.audit_url,
        **overrides,
    )
    engine = make_engine(databases.main_url)
    with engine.begin() as connection:
        names = ", ".join(f'"{t}"' for t in databases.tables)
        # The consent tables refuse TRUNCATE (append-only); the test superuser empties them
        # between tests with triggers disabled for this one session.
        connection.execute(text("SET session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def app(config: Config, clock: FakeClock) -> Iterator[Flask]:
    """The hub, on the selected backend, with a fake clock."""
    application = create_app(config)
    application.extensions["maillon"].set_clock(clock)
    application.extensions["maillon"].audit_log.create_schema()
    yield application
    state = application.extensions["maillon"]
    state.engine.dispose()
    state.audit_engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like client (cookies kept)."""
    return app.test_client()


# -- people --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A demo account with its clear credentials."""

    email: str
    password: str
    totp_secret: str
    roles: list[str]
    organisation: str


@pytest.fixture
def territory(app: Flask, clock: FakeClock) -> dict[str, Account]:
    """The demo territory; accounts keyed by a short name (admin, dpo, cpip, conseillere…)."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        created = seed_demo(session, state.accounts(session), now=clock(), vault=state.vault)
        session.commit()
    accounts: dict[str, Account] = {}
    for a in created:
        key = a.email.split("@", 1)[0]
        accounts[key] = Account(a.email, a.password, a.totp_secret, a.roles, a.organisation)
    return accounts


_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on ``path``."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def fresh_code(clock: FakeClock, secret: str) -> str:
    """Advance to the next TOTP step and return its code (each step is accepted once)."""
    clock.advance(seconds=totp.INTERVAL)
    return totp.code_at(secret, clock())


def login(
    client: FlaskClient,
    clock: FakeClock,
    account: Account,
    *,
    code: str | None = None,
    **environ: str,
) -> Any:
    """Log in through the real form (CSRF included); returns the response. ``environ``: WSGI
    values of the post (e.g. ``REMOTE_ADDR``)."""
    token = csrf_token(client, "/connexion")
    return client.post(
        "/connexion",
        data={
            "csrf_token": token,
            "email": account.email,
            "password": account.password,
            "code": code if code is not None else fresh_code(clock, account.totp_secret),
        },
        environ_base=environ,
    )


def post_form(client: FlaskClient, form_path: str, action: str | None = None, **data: Any) -> Any:
    """Submit a form found on ``form_path`` (to ``action``, default the same path) with CSRF."""
    token = csrf_token(client, form_path)
    return client.post(action or form_path, data={"csrf_token": token, **data})
