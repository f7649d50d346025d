"""Fixtures for the audit tests: a controllable clock, signing keys, and audit logs on SQLite
(always) and PostgreSQL (when ``MAILLON_TEST_POSTGRES_URL`` is set; required when ``CI=true``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.checkpoint import Cosigner, NoteSigner
from audit.events import Action, NewEvent
from audit.store import AuditLog, make_audit_engine

POSTGRES_URL_VAR = "MAILLON_TEST_POSTGRES_URL"


class Clock:
    """A manual clock: every reading advances by ``step`` so events get distinct times."""

    def __init__(self, start: datetime, step: timedelta = timedelta(milliseconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        current = self.now
        self.now += self.step
        return current

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner("maillon.test/audit", Ed25519PrivateKey.generate())


@pytest.fixture
def cosigner() -> Cosigner:
    return Cosigner("dpo.test/witness", Ed25519PrivateKey.generate())


def _postgres_url() -> str | None:
    url = os.environ.get(POSTGRES_URL_VAR)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {POSTGRES_URL_VAR} is not set: PostgreSQL tests must run in CI")
    pytest.skip(f"{POSTGRES_URL_VAR} not set")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Engine]]:
    """Makes engines on one fresh audit database (each call: a new engine, same database)."""
    made: list[Engine] = []
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"

        def factory() -> Engine:
            made.append(make_audit_engine(url))
            return made[-1]

        yield factory
    else:
        base = _postgres_url()
        assert base is not None
        # One schema per test keeps tests independent without creating databases.
        schema = f"audit_test_{uuid.uuid4().hex[:12]}"
        admin = make_audit_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

        def factory() -> Engine:
            made.append(
                make_audit_engine(base, connect_args={"options": f"-csearch_path={schema}"})
            )
            return made[-1]

        yield factory
        for engine in made:
            engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
        return
    for engine in made:
        engine.dispose()


@pytest.fixture
def engine(engine_factory: Callable[[], Engine]) -> Engine:
    return engine_factory()


@pytest.fixture
def log(engine: Engine, clock: Clock) -> AuditLog:
    audit_log = AuditLog(engine, clock=clock)
    audit_log.create_schema()
    return audit_log


def view(i: int, *, user: str = "u-0001", org: str = "org-ml-93") -> NewEvent:
    """A typical audited read of a case."""
    return NewEvent(
        action=Action.CASE_VIEW,
        actor_user=user,
        actor_org=org,
        object_type="case",
        object_id=f"C-{i:04d}",
        purpose="suivi.parcours",
        decision="allow",  # type: ignore[arg-type]
        rule="art.5",
        charter_version="1",
        request_id=f"req-{i}",
    )
