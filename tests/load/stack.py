"""A production-like Maillon on loopback, for the load and crash tests.

What ``deploy/README.md`` describes, minus nginx and TLS: gunicorn with ``deploy/gunicorn.conf.py``
and ``MAILLON_ENV=production``, PostgreSQL with a main database and a separate audit database,
Redis as the Celery broker and the shared rate-limit storage, a Celery worker (prefork, as the
systemd unit) and one beat. The clients play nginx: they send ``X-Forwarded-Proto: https`` and
``X-Forwarded-For`` (``MAILLON_TRUSTED_PROXIES=1``), each simulated person from their own address.

The databases are created under unique names on the server of ``MAILLON_TEST_POSTGRES_URL`` and
dropped afterwards; Redis uses two numbered databases of ``MAILLON_TEST_REDIS_URL`` (12 and 13
by default, emptied first), away from the test suite's 0 and 1. Every process is started in its
own session so that the crash test can kill -9 a whole group (master and children) by its id.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import redis
from sqlalchemy import create_engine, make_url, text

from tests.load.clients import BASE_URL, FORWARDED_HOST

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class StackError(Exception):
    """The stack could not be set up or a process did not come up."""


def run_dir(kind: str) -> Path:
    """A new directory for one run's logs, CSV files and seed file (under ``var/load/``)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = ROOT / "var" / "load" / f"{stamp}-{kind}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def service_urls() -> tuple[str, str]:
    """PostgreSQL and Redis URLs from the environment (``source .ci/services.sh`` sets them)."""
    postgres = os.environ.get("MAILLON_TEST_POSTGRES_URL", "")
    redis_url = os.environ.get("MAILLON_TEST_REDIS_URL", "")
    if not postgres or not redis_url:
        raise StackError(
            "MAILLON_TEST_POSTGRES_URL and MAILLON_TEST_REDIS_URL must be set: "
            "`source .ci/services.sh` starts throw-away servers and sets both "
            "(`make load` does it for you when they are missing)."
        )
    return postgres, redis_url


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> int:
    """The status of a GET on loopback ``port`` (raises ``OSError`` when nothing answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "GET", path, headers={"Host": FORWARDED_HOST, "X-Forwarded-Proto": "https"}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@dataclass
class Process:
    """A long-running child in its own session (process group id = its pid)."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        """Start (or restart) the process, appending to its log."""
        self._out = self.log.open("ab")
        self._out.write(f"\n=== start {datetime.now(UTC).isoformat()} ===\n".encode())
        self._out.flush()
        self.popen = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def kill_group(self) -> int:
        """SIGKILL the whole process group (the master and every child it forked); returns how
        many processes were in it."""
        if self.popen is None:
            return 0
        members = group_members(self.popen.pid)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self._close()
        return len(members)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        # Children that outlived their master (none expected) go with the group.
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def group_members(pgid: int) -> list[int]:
    """Pids of the processes whose process group is ``pgid`` (from /proc)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, …
            found.append(int(entry.name))
    return found


class Stack:
    """Databases, secrets and processes of one production-like hub."""

    def __init__(
        self,
        workdir: Path,
        *,
        web_workers: int | None = None,
        redis_dbs: tuple[int, int] = (12, 13),
    ) -> None:
        self.workdir = workdir
        self.postgres_url, redis_url = service_urls()
        base = redis_url.rsplit("/", 1)[0]
        self.broker_url = f"{base}/{redis_dbs[0]}"
        self.ratelimit_url = f"{base}/{redis_dbs[1]}"
        suffix = uuid.uuid4().hex[:8]
        self.databases = (f"maillon_load_{suffix}", f"maillon_load_audit_{suffix}")
        self.port = free_port()
        self.env: dict[str, str] = {
            **os.environ,
            "MAILLON_ENV": "production",
            "MAILLON_BASE_URL": BASE_URL,
            "MAILLON_SECRET_KEY": uuid.uuid4().hex * 2,
            "MAILLON_IP_HASH_KEY": uuid.uuid4().hex * 2,
            "MAILLON_DATA_KEY": uuid.uuid4().hex * 2,
            "MAILLON_BROKER_URL": self.broker_url,
            "MAILLON_RATELIMIT_STORAGE_URL": self.ratelimit_url,
            "MAILLON_SERVER_KEY_FILE": str(workdir / "server-key.pem"),
            "MAILLON_VAR_DIR": str(workdir / "var"),
            "MAILLON_TRUSTED_PROXIES": "1",
            # Nothing is mailed during a load (no invitation, no alert is due); production
            # start-up still demands a server.
            "MAILLON_MAIL_SERVER": "127.0.0.1",
            "MAILLON_BIND": f"127.0.0.1:{self.port}",
            "PYTHONPATH": str(ROOT),
        }
        if web_workers is not None:
            self.env["MAILLON_WEB_WORKERS"] = str(web_workers)
        celery = [sys.executable, "-m", "celery", "-A", "hub.worker"]
        self.web = Process(
            "web",
            [
                str(BIN / "gunicorn"),
                "-c",
                str(ROOT / "deploy/gunicorn.conf.py"),
                "hub:create_app()",
            ],
            workdir / "gunicorn.log",
        )
        # As deploy/systemd/maillon-worker.service and maillon-beat.service.
        self.worker = Process(
            "worker",
            [*celery, "worker", "-Q", "maillon", "--loglevel=INFO", "--concurrency=2"],
            workdir / "celery-worker.log",
        )
        self.beat = Process(
            "beat",
            [
                *celery,
                "beat",
                "--loglevel=INFO",
                f"--schedule={workdir / 'var' / 'celerybeat-schedule'}",
            ],
            workdir / "celery-beat.log",
        )
        self._created = False

    # -- set-up and tear-down -------------------------------------------------------------

    def create(self) -> None:
        """Create both databases, empty the Redis databases, make the server key, migrate."""
        admin = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        urls = []
        with admin.connect() as connection:
            for name in self.databases:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                urls.append(
                    make_url(self.postgres_url)
                    .set(database=name)
                    .render_as_string(hide_password=False)
                )
        admin.dispose()
        self._created = True
        self.env["MAILLON_DATABASE_URL"], self.env["MAILLON_AUDIT_DATABASE_URL"] = urls
        for url in (self.broker_url, self.ratelimit_url):
            client = redis.Redis.from_url(url)
            client.flushdb()
            client.close()
        (self.workdir / "var").mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "hub.keys", self.env["MAILLON_SERVER_KEY_FILE"]],
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        self.flask("init-db", quiet=True)

    def seed(self, out: Path, *, partners: int, dpos: int, cases: int, api_clients: int) -> None:
        """Seed the demo territory and the load's people, cases and API clients into ``out``."""
        done = subprocess.run(
            [
                sys.executable, "-m", "tests.load.seed", "--out", str(out),
                "--partners", str(partners), "--dpos", str(dpos),
                "--cases", str(cases), "--api-clients", str(api_clients),
            ],
            env=self.env, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"seeding failed:\n{done.stdout}\n{done.stderr[-4000:]}")
        print(done.stdout.strip(), flush=True)

    def flask(self, *args: str, quiet: bool = False) -> str:
        """Run ``flask --app hub ARGS`` against this stack; its standard output."""
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "hub", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        if not quiet:
            print(done.stdout.strip(), flush=True)
        return done.stdout

    def destroy(self) -> None:
        """Drop both databases."""
        if not self._created:
            return
        admin = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in self.databases:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    # -- processes ------------------------------------------------------------------------

    def start_web(self, timeout: float = 90.0) -> float:
        """Start gunicorn and wait until ``/healthz`` answers 200; seconds it took."""
        began = time.monotonic()
        self.web.start(self.env)
        wait_until_up(self.port, "/healthz", self.web, timeout)
        return time.monotonic() - began

    def start_workers(self) -> None:
        """Start the Celery worker and beat."""
        self.worker.start(self.env)
        self.beat.start(self.env)

    def stop(self) -> None:
        """Stop every process of the stack (SIGTERM, then SIGKILL)."""
        for process in (self.web, self.worker, self.beat):
            process.stop()

    # -- after a run ----------------------------------------------------------------------

    def verify_audit(self, into: Path) -> tuple[bool, str]:
        """Export the audit log (``flask --app hub audit export``) and check it offline with
        ``python -m audit.verify DIR --key VKEY``; whether it verified, and what it printed."""
        out = self.flask("audit", "export", "--out", str(into), quiet=True)
        match = re.search(r"--key '([^']+)'", out)
        if match is None:
            return False, f"no verifier key in the export's output:\n{out}"
        done = subprocess.run(
            [sys.executable, "-m", "audit.verify", str(into), "--key", match.group(1)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return done.returncode == 0, (out + done.stdout + done.stderr).strip()

    def log_problems(self) -> dict[str, list[str]]:
        """Lines of the process logs that tell of an error (tracebacks, ERROR, CRITICAL)."""
        pattern = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|unexpected error|WORKER TIMEOUT")
        found: dict[str, list[str]] = {}
        for process in (self.web, self.worker, self.beat):
            if not process.log.exists():
                continue
            lines = process.log.read_text(errors="replace").splitlines()
            hits = [line for line in lines if pattern.search(line)]
            if hits:
                found[process.name] = hits
        return found


def wait_until_up(port: int, path: str, process: Process, timeout: float) -> None:
    """Poll ``path`` until it answers 200; :class:`StackError` if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            raise StackError(f"{process.name} exited: see {process.log}")
        try:
            if http_get(port, path, timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise StackError(f"{process.name} did not answer {path} within {timeout:.0f} s: {process.log}")


@contextmanager
def hello_server(workdir: Path, env: dict[str, str]) -> Iterator[int]:
    """The hello-world baseline under the same gunicorn settings; yields its port."""
    port = free_port()
    process = Process(
        "hello",
        [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "deploy/gunicorn.conf.py"),
            "tests.benchmarks.hello_app:app",
        ],
        workdir / "hello.log",
    )
    process.start({**env, "MAILLON_BIND": f"127.0.0.1:{port}"})
    try:
        wait_until_up(port, "/", process, 60)
        yield port
    finally:
        process.stop()


def dump_json(path: Path, data: object) -> None:
    """Write ``data`` as indented JSON (results, for the record)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
