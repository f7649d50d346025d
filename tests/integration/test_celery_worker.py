"""A real Celery worker delivers the invitation mail: SQLite broker (embedded) and Redis (production)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from hub.config import Config
from hub.models import Invitation, Organisation
from tests.conftest import REDIS_URL, Account, FakeClock, login, post_form, require_service

pytestmark = pytest.mark.slow


def _worker_env(config: Config) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILLON_ENV="testing",
        MAILLON_VAR_DIR=str(config.var_dir),
        MAILLON_DATABASE_URL=config.database_url,
        MAILLON_AUDIT_DATABASE_URL=config.audit_database_url,
        MAILLON_BROKER_URL=config.broker_url,
        MAILLON_SERVER_KEY_FILE=str(config.server_key_file),
        MAILLON_BASE_URL=config.base_url,
    )
    return env


@pytest.fixture
def worker(app: Flask) -> Iterator[subprocess.Popen[bytes]]:
    config: Config = app.extensions["maillon"].config
    log = (config.var_dir / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hub.worker",
            "worker",
            "--pool=solo",
            "-Q",
            "maillon",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=_worker_env(config),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _wait_for_mail(outbox: Path, seconds: float = 45) -> list[Path]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sorted(outbox.glob("*.eml")) if outbox.exists() else []
        if found:
            return found
        time.sleep(0.2)
    return []


def _invite(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(
            select(Organisation).where(Organisation.name == "Mission Locale de Démoville")
        )
        assert org is not None
        org_id = org.id
    response = post_form(
        admin,
        "/admin/utilisateurs/nouveau",
        name="Wendy Worker",
        email="wendy@ml.example",
        organisation=str(org_id),
        roles=["agent"],
    )
    assert response.status_code == 302


def _assert_delivered(app: Flask, worker: subprocess.Popen[bytes]) -> None:
    config: Config = app.extensions["maillon"].config
    mails = _wait_for_mail(config.mail_outbox)
    log = (config.var_dir / "worker.log").read_text(errors="replace")
    assert mails, f"the worker delivered nothing; worker log:\n{log[-3000:]}"
    assert b"wendy@ml.example" in mails[0].read_bytes()
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        invitation = session.scalar(select(Invitation))
        assert (
            invitation is not None and invitation.mail_sent_at is not None and invitation.token_hash
        )
    assert worker.poll() is None


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_embedded_worker_delivers_through_the_sqlite_broker(
    app: Flask, clock: FakeClock, territory: dict[str, Account], worker: subprocess.Popen[bytes]
) -> None:
    _invite(app, clock, territory)
    _assert_delivered(app, worker)


@pytest.mark.redis
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.config(broker_url=REDIS_URL or "redis://not-configured")
def test_production_worker_delivers_through_redis(
    app: Flask, clock: FakeClock, territory: dict[str, Account], request: pytest.FixtureRequest
) -> None:
    require_service(REDIS_URL, "Redis (MAILLON_TEST_REDIS_URL)")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    assert app.extensions["maillon"].config.broker_url == REDIS_URL
    worker = request.getfixturevalue("worker")
    _invite(app, clock, territory)
    _assert_delivered(app, worker)


def _alerts_through_worker(app: Flask, worker: subprocess.Popen[bytes]) -> None:
    """The beat's entry, sent as the beat sends it: the worker sweeps, notifies and mails."""
    celery = app.extensions["celery"]
    entry = celery.conf.beat_schedule["alert-sweep"]
    assert entry["task"] == "hub.tasks.alert_sweep"
    celery.send_task(entry["task"])
    config: Config = app.extensions["maillon"].config
    mails = _wait_for_mail(config.mail_outbox)
    log = (config.var_dir / "worker.log").read_text(errors="replace")
    assert mails, f"the worker sent no alert; worker log:\n{log[-3000:]}"
    bodies = b"".join(m.read_bytes() for m in mails)
    assert b"/notifications" in bodies
    assert b"2005-05-12" not in bodies
    assert worker.poll() is None


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_embedded_worker_runs_the_alert_sweep(
    app: Flask, territory: dict[str, Account], worker: subprocess.Popen[bytes]
) -> None:
    _alerts_through_worker(app, worker)


@pytest.mark.redis
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.config(broker_url=REDIS_URL or "redis://not-configured")
def test_production_worker_runs_the_alert_sweep(
    app: Flask, territory: dict[str, Account], request: pytest.FixtureRequest
) -> None:
    require_service(REDIS_URL, "Redis (MAILLON_TEST_REDIS_URL)")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    _alerts_through_worker(app, request.getfixturevalue("worker"))
