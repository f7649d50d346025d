"""Nobody can exhaust the audit log (issue 9, point 4).

Refusals of anonymous requests are counted per client and minute (one event each, not one per
request) and throttled; a locked store answers 503 within the configured timeout instead of the
60 s database timeout; the store's free space is watched, and a full volume gives 503 with
nothing acknowledged lost.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from audit import merkle
from audit.anomalies import burst_count
from audit.errors import LogUnavailable
from audit.events import Action, Decision, Event, NewEvent
from audit.store import AuditLog
from hub import create_app, refusals
from hub.config import Config
from hub.demo import seed_demo
from hub.extensions import limiter
from hub.models import RefusalCount, User
from hub.refusals import minute_of
from hub.tasks import record_refusal_bursts
from tests.conftest import (
    Account,
    FakeClock,
    csrf_token,
    fresh_code,
    login,
    make_config,
)

AUDIT_LOCK_KEY = 0x4D41494C  # audit.store's advisory lock on PostgreSQL


def _new_events(app: Flask, before: int) -> list[Event]:
    log: AuditLog = app.extensions["maillon"].audit_log
    return list(log.events(before, log.size()))


def _size(app: Flask) -> int:
    return int(app.extensions["maillon"].audit_log.size())


def _bursts(app: Flask) -> list[Event]:
    """Run the beat's task once, as the worker would, and return what it appended."""
    before = _size(app)
    with app.app_context():
        record_refusal_bursts()
    return _new_events(app, before)


def _settle(clock: FakeClock) -> None:
    """Move past the minute and the next one: the beat records a minute once it is settled."""
    clock.advance(minutes=2)


def _count_of(event: Event) -> int:
    assert event.action is Action.ACCESS_REFUSED_BURST
    return burst_count(event)


def _forged_post(client: FlaskClient, **environ: Any) -> Any:
    """A login form posted without its CSRF token (what any script can send)."""
    return client.post("/connexion", data={"email": "x", "password": "y"}, environ_base=environ)


# -- refusals counted per client and minute ---------------------------------------------------


def test_forty_forged_posts_add_two_events_not_forty(app: Flask, clock: FakeClock) -> None:
    # Given an anonymous client posting forged forms, 40 in a row (the attack of issue 9)
    client = app.test_client()
    before = _size(app)
    statuses = [_forged_post(client).status_code for _ in range(40)]
    # Then the first 30 are refused as forged and the rest throttled, with a delay to respect
    assert statuses == [400] * 30 + [429] * 10
    throttled = _forged_post(client)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "60"
    # And only the first refusal has its own event so far, in full
    (first,) = _new_events(app, before)
    assert (first.action, first.purpose, first.decision) == (
        Action.ACCESS_REFUSED,
        "csrf",
        Decision.DENY,
    )
    assert first.actor_user is None and first.ip_hash
    # And nothing more is recorded while the minute lasts, nor just after it
    assert _bursts(app) == []
    clock.advance(minutes=1)
    assert _bursts(app) == []
    # When the minute is settled, the beat records the other 40 as one counted event
    clock.advance(minutes=1)
    (burst,) = _bursts(app)
    assert burst.action is Action.ACCESS_REFUSED_BURST and burst.decision is Decision.DENY
    assert burst.rule == f"count:40/minute:{minute_of(first.time):%Y-%m-%dT%H:%M}Z"
    assert _count_of(burst) == 40 and burst.object_id == ""
    assert burst.ip_hash == first.ip_hash  # the same client, by its keyed hash only
    # And a second run records nothing twice; the counts are gone
    assert _bursts(app) == []
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        assert session.scalars(select(RefusalCount)).all() == []


def test_every_kind_of_anonymous_refusal_is_counted_together(app: Flask, clock: FakeClock) -> None:
    client = app.test_client()
    before = _size(app)
    # A form from another site, a forged form, an invalid activation link, an unknown account,
    # an API call without a token, a token request with a bad grant: all anonymous refusals
    token = csrf_token(client, "/connexion")
    responses = [
        client.post(
            "/langue",
            data={"csrf_token": token, "lang": "en"},
            headers={"Sec-Fetch-Site": "cross-site"},
        ),
        _forged_post(client),
        client.get("/activation/inconnu"),
        client.post(
            "/connexion",
            data={
                "csrf_token": token,
                "email": "nobody@x.invalid",
                "password": "p",
                "code": "000000",
            },
        ),
        client.get("/api/v1/moi"),
        client.post("/api/v1/token", data={"grant_type": "password"}),
    ]
    assert [r.status_code for r in responses] == [403, 400, 404, 200, 401, 400]
    assert [e.action for e in _new_events(app, before)] == [Action.ACCESS_REFUSED]
    _settle(clock)
    (burst,) = _bursts(app)
    assert _count_of(burst) == 5


def test_a_logged_in_person_refusals_keep_one_event_each(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Someone who logged in answers for what they do: each refusal is its own event
    client = app.test_client()
    login(client, clock, territory["cpip"])
    before = _size(app)
    for _ in range(5):
        assert client.get("/admin/").status_code == 403
    events = _new_events(app, before)
    assert [e.action for e in events] == [Action.ACCESS_REFUSED] * 5
    assert {e.actor_user for e in events} != {None}


def test_refused_logins_of_an_account_are_counted_per_account(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Given wrong codes for one existing account, from many addresses
    before = _size(app)
    for n in range(6):
        response = login(
            app.test_client(), clock, territory["cpip"], code="000000", REMOTE_ADDR=f"203.0.113.{n}"
        )
        assert response.status_code == 200
    # Then the first has its own event naming the account, the rest are counted for it
    (first,) = _new_events(app, before)
    assert first.action is Action.AUTH_LOGIN_REFUSED and first.object_id
    _settle(clock)
    (burst,) = _bursts(app)
    assert (burst.object_type, burst.object_id, burst.purpose) == ("user", first.object_id, "login")
    assert _count_of(burst) == 5 and burst.ip_hash == ""


@pytest.mark.config(anonymous_refusals_per_minute=3)
def test_a_throttled_wrong_password_still_counts_towards_the_lockout(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = app.test_client()
    statuses = [
        login(client, clock, territory["cpip"], code="000000").status_code for _ in range(10)
    ]
    assert statuses[-1] == 429  # past the budget of refusals
    # The eleventh try, with the right code, is refused: the account is locked all the same
    assert login(client, clock, territory["cpip"]).status_code in (200, 429)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == territory["cpip"].email))
        assert user is not None and user.locked_until is not None


def test_forged_forms_in_a_logged_in_person_name_are_counted(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Another page of the same site (a sibling sub-domain gets the Lax cookie) posts forms in
    # the person's name: they did not send them, so they do not grow the log one by one
    client = app.test_client()
    login(client, clock, territory["cpip"])
    token = csrf_token(client, "/compte")
    before = _size(app)
    for _ in range(5):
        response = client.post(
            "/langue",
            data={"lang": "en", "csrf_token": token},
            headers={"Sec-Fetch-Site": "same-site"},
        )
        assert response.status_code == 403
    for _ in range(5):
        assert client.post("/langue", data={"lang": "en"}).status_code == 400  # no CSRF token
    (first,) = _new_events(app, before)
    assert first.purpose == "cross_site"
    _settle(clock)
    (burst,) = _bursts(app)
    assert _count_of(burst) == 9


@pytest.mark.config(anonymous_refusal_clients_per_minute=3)
def test_rotating_addresses_cannot_flood_either(app: Flask, clock: FakeClock) -> None:
    # Given more distinct clients in a minute than the cap
    client = app.test_client()
    before = _size(app)
    for n in range(8):
        for _ in range(2):
            assert _forged_post(client, REMOTE_ADDR=f"198.51.100.{n}").status_code == 400
    # Then only the first three clients have an event of their own
    firsts = _new_events(app, before)
    assert len(firsts) == 3 and len({e.ip_hash for e in firsts}) == 3
    # And after the minute: one counted event per one of them, one for all the others
    _settle(clock)
    bursts = _bursts(app)
    per_client = [b for b in bursts if b.purpose != "all_clients"]
    (shared,) = [b for b in bursts if b.purpose == "all_clients"]
    assert [_count_of(b) for b in per_client] == [1, 1, 1]
    assert {b.ip_hash for b in per_client} == {e.ip_hash for e in firsts}
    assert (_count_of(shared), shared.ip_hash) == (10, "")  # 5 clients x 2 refusals


def test_an_ipv6_client_is_its_64_network(app: Flask, clock: FakeClock) -> None:
    client = app.test_client()
    before = _size(app)
    for n in range(40):
        response = _forged_post(client, REMOTE_ADDR=f"2001:db8:1:2::{n:x}")
        assert response.status_code == (400 if n < 30 else 429)  # one budget for the network
    assert len(_new_events(app, before)) == 1
    assert _forged_post(client, REMOTE_ADDR="2001:db8:1:3::1").status_code == 400  # another one
    assert len(_new_events(app, before)) == 2


def test_an_api_client_with_a_valid_token_is_not_throttled_with_the_others(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from tests.integration.test_api_auth import get_token, register_client

    client = app.test_client()
    access_token = get_token(client, register_client(app, Ed25519PrivateKey.generate()), clock)
    for _ in range(35):
        client.get("/api/v1/moi")  # without a token, from the same address
    assert client.get("/api/v1/moi").status_code == 429
    ok = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {access_token}"})
    assert ok.status_code == 200


def test_a_refusal_the_log_cannot_take_is_503_and_still_counted(
    app: Flask, clock: FakeClock, tmp_path: Path
) -> None:
    state = app.extensions["maillon"]
    good = state.audit_log
    state.audit_log = AuditLog(_unwritable_engine(tmp_path), clock=state.clock, write_timeout=1)
    client = app.test_client()
    assert _forged_post(client).status_code == 503
    state.audit_log = good
    assert _forged_post(client).status_code == 400  # the minute's first event was not written
    _settle(clock)
    (burst,) = _bursts(app)
    assert _count_of(burst) == 2


def test_a_first_refusal_failing_after_the_beat_took_its_minute_is_still_counted(
    app: Flask, clock: FakeClock
) -> None:
    # The first refusal's row is written, the beat takes the minute (nothing left to count),
    # then that refusal's append fails: it must be counted again, for the next run
    state = app.extensions["maillon"]
    minute = minute_of(clock())
    client = "a" * 64
    with app.app_context(), state.session_factory() as session:
        assert refusals._count(session, client, minute)
        clock.advance(minutes=5)
        assert refusals.record_bursts(session, clock()) == 0
        refusals._unrecord(session, client, minute)
        session.commit()
    (burst,) = _bursts(app)
    assert _count_of(burst) == 1 and burst.ip_hash == client


def test_a_refusal_that_cannot_be_counted_is_503_and_appends_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = app.extensions["maillon"]

    def broken() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    monkeypatch.setattr(state, "session_factory", broken)
    client = app.test_client()
    before = _size(app)
    for n in range(20):
        assert _forged_post(client, REMOTE_ADDR=f"198.51.100.{n}").status_code == 503
    assert _size(app) == before  # never one event per refusal, whatever happens


def test_a_rate_limit_store_failure_does_not_break_refusals(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: Any) -> bool:
        raise ConnectionError("redis down")

    monkeypatch.setattr(limiter.limiter, "hit", down)
    client = app.test_client()
    assert [_forged_post(client).status_code for _ in range(3)] == [400, 400, 400]


def _unwritable_engine(tmp_path: Path) -> Any:
    from audit.store import make_audit_engine

    return make_audit_engine(f"sqlite:///{tmp_path}/missing/directory/audit.sqlite")


def test_the_dpo_anomalies_weigh_a_counted_burst(app: Flask, clock: FakeClock) -> None:
    from audit.anomalies import refusal_bursts

    client = app.test_client()
    before = _size(app)
    for _ in range(12):
        _forged_post(client)
    _settle(clock)
    _bursts(app)
    # Two events (the first refusal, then the count of the eleven others) weigh twelve
    findings = refusal_bursts(_new_events(app, before))
    (finding,) = [f for f in findings if f.actor_user is None]
    assert finding.count == 12


# -- fail fast on a locked store ---------------------------------------------------------------


@pytest.fixture
def audit_locked(app: Flask, config: Config, request: pytest.FixtureRequest) -> Iterator[None]:
    """The audit store held by someone else for the whole test (another process's stalled
    writer): SQLite's write lock, the appenders' turn lock, or PostgreSQL's advisory lock."""
    how = request.param
    url = config.audit_database_url
    if url.startswith("postgresql"):
        if how != "database lock":
            pytest.skip("the turn lock file exists only for the embedded store")
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text(f"SELECT pg_advisory_lock({AUDIT_LOCK_KEY})"))
            yield
            conn.execute(text(f"SELECT pg_advisory_unlock({AUDIT_LOCK_KEY})"))
        engine.dispose()
        return
    path = url.removeprefix("sqlite:///")
    if how == "database lock":
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
        holder.close()
        return
    fd = os.open(f"{path}.append-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@pytest.mark.config(audit_write_timeout_seconds=1)
@pytest.mark.parametrize("audit_locked", ["database lock", "turn lock"], indirect=True)
def test_a_locked_audit_store_answers_503_fast_and_changes_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], audit_locked: None
) -> None:
    client = app.test_client()
    answered: list[Any] = []
    started = time.monotonic()
    # In a thread: if the timeout did not work, the test fails instead of hanging
    attempt = threading.Thread(
        target=lambda: answered.append(login(client, clock, territory["cpip"]))
    )
    attempt.start()
    attempt.join(timeout=30)
    elapsed = time.monotonic() - started
    assert not attempt.is_alive(), "the request waited for the lock"
    # Then the person gets 503 after about the configured second, not the 60 s database
    # timeout (bounded loosely: the machine is shared)
    assert answered[0].status_code == 503
    assert elapsed < 5
    assert client.get("/").status_code == 302  # no session was opened
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == territory["cpip"].email))
        assert user is not None and user.last_login_at is None


@pytest.mark.config(audit_write_timeout_seconds=1)
# The lock is held with sqlite3 (PostgreSQL's locks are covered by the test above).
@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_requests_go_on_once_the_lock_is_released(
    app: Flask, clock: FakeClock, territory: dict[str, Account], config: Config
) -> None:
    path = config.audit_database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("ROLLBACK")).start()
    # A short stall (shorter than the timeout) is waited out: the login goes through
    response = login(app.test_client(), clock, territory["cpip"])
    assert response.status_code == 302
    holder.close()


# -- free space ------------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs volume (real ENOSPC), unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small volume here: {done.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _append_until(log: AuditLog, stop: Any, acknowledged: list[Event], *, batch: int = 200) -> None:
    """Append batches of events, keeping every acknowledged one, until ``stop()``."""
    for _ in range(100_000):
        if stop():
            return
        acknowledged.extend(
            log.append_many(
                [
                    NewEvent(
                        action=Action.CASE_VIEW,
                        actor_user="u-filler",
                        actor_org="o-filler",
                        object_type="case",
                        object_id=f"C-FILL-{len(acknowledged) + i:06d}",
                        purpose="suivi_parcours",
                        decision=Decision.ALLOW,
                    )
                    for i in range(batch)
                ]
            )
        )
    raise AssertionError("the volume never filled")


def test_a_filling_volume_warns_then_503_and_nothing_is_lost(
    small_volume: Path, tmp_path: Path, sqlite_template: Path, server_key_file: Path
) -> None:
    # Given a hub whose audit store lives on a 3 MiB volume, warning under 1 MiB
    import shutil

    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(sqlite_template, var / "maillon.sqlite")
    config = make_config(
        var,
        audit_database_url=f"sqlite:///{small_volume / 'audit.sqlite'}",
        server_key_file=server_key_file,
        audit_free_space_warn_mb=1,
        audit_write_timeout_seconds=1,
        broker_url=f"sqla+sqlite:///{var / 'broker.sqlite'}",
    )
    app = create_app(config)
    state = app.extensions["maillon"]
    clock = FakeClock()
    state.set_clock(clock)
    state.audit_log.create_schema()
    with state.session_factory() as session:
        created = seed_demo(session, state.accounts(session), now=clock(), vault=state.vault)
        session.commit()
    dpo = next(a for a in created if "dpo" in a.roles)
    client = app.test_client()
    try:
        log = state.audit_log
        state.audit_log.append(NewEvent(action=Action.AUDIT_READ))
        old_size, old_root = log.size(), log.root()
        health = client.get("/healthz").get_json()
        assert (health["status"], health["checks"]["audit_space"]) == ("ok", "ok")
        # When the log grows until less than 1 MiB is left
        acknowledged: list[Event] = []
        _append_until(state.audit_log, lambda: state.audit_space()[0] == "low", acknowledged)
        # Then /healthz warns (still 200: the hub works) and the DPO console says so
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.get_json()["status"] == "warning"
        assert response.get_json()["checks"]["audit_space"] == "low"
        token = csrf_token(client, "/connexion")
        client.post(
            "/connexion",
            data={
                "csrf_token": token,
                "email": dpo.email,
                "password": dpo.password,
                "code": fresh_code(clock, dpo.totp_secret),
            },
        )
        page = client.get("/dpo/").get_data(as_text=True)
        assert "Espace disque du journal presque épuisé" in page
        # When it grows on until the volume is full
        with pytest.raises(LogUnavailable):
            _append_until(state.audit_log, lambda: False, acknowledged)
        with pytest.raises(LogUnavailable):  # to the last event that fits
            _append_until(state.audit_log, lambda: False, acknowledged, batch=1)
        # Then audited pages answer 503 (fail closed)
        assert client.get("/dpo/").status_code == 503
        # And every acknowledged event is there, as acknowledged, and the log still verifies:
        # the tree holds exactly the stored events and extends the tree of before the fill
        size = log.size()
        stored = {e.seq: e for e in log.events(0, size)}
        assert all(stored[e.seq] == e for e in acknowledged)
        assert merkle.root_from_leaf_hashes([stored[i].leaf_hash() for i in range(size)]) == (
            log.root()
        )
        merkle.verify_consistency(
            old_size, size, old_root, log.root(), log.consistency_proof(old_size)
        )
        # When room is made (the operators grow the volume: here, a remount), pages come back
        subprocess.run(
            ["mount", "-o", "remount,size=8m", str(small_volume)],
            check=True,
        )
        assert client.get("/dpo/").status_code == 200
        assert log.size() > size
    finally:
        state.engine.dispose()
        state.audit_engine.dispose()
