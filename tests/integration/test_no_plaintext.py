"""No plaintext on the server (issue 10, point 8).

An organisation's system seals liaison forms whose values carry a random marker and sends them
through a hub running as in production — gunicorn with ``deploy/gunicorn.conf.py`` (two
workers), a Celery worker (prefork, as the systemd unit), PostgreSQL for the main and the audit
stores (fresh databases), Redis for the broker and the rate limits, an SMTP relay for the mail —
and the receiving system lists, fetches and opens them over real HTTP with the ``maillon``
client (:mod:`exchange.cli`, :class:`exchange.client.HttpFetcher`). The people of the case's
group hold device keys too, so each form has several views and they are notified: the worker
mails them. Then the marker is looked for in everything the server side holds:

- the database files: every file of PostgreSQL's data directory after a ``CHECKPOINT``
  (``base/``, ``pg_wal/``, the server's log…), and every row of every table of the main and
  audit databases read back through SQL (a value PostgreSQL compressed in TOAST would not be
  in the files as such, but is in the rows);
- the broker: the task messages while they wait in the queue (their base64 bodies decoded),
  then every key of the broker's and the rate limiter's Redis databases (read as its type, and
  ``DUMP``-ed), an uncompressed RDB snapshot of the server (``redis-cli --rdb``, diskless) and
  the memory of ``redis-server``;
- the logs (gunicorn's and the worker's output) and every file under the hub's directory;
- the outbox: the ``audit_outbox`` and ``notifications`` rows, asserted on explicitly, and the
  mails the relay received (raw and decoded);
- the memory of gunicorn's master and workers and of the Celery worker's processes, every
  readable region of ``/proc/<pid>/mem``, while they are alive and after they served the forms
  and ran the tasks.

A second test does the same with the embedded set-up of ``make run`` (development settings,
still under gunicorn): SQLite stores in WAL mode (the ``.sqlite``, ``-wal`` and ``-shm``
files, searched while the processes run and after they stopped), the SQLite broker (kombu keeps
delivered messages in its table) and mail written to ``var/outbox``.

The marker is looked for as UTF-8 and also as UTF-16 and UTF-32, which is not pointless for
memory: CPython stores a ``str`` holding a character beyond U+00FF with two or four bytes per
character, so a process that decoded a form into a string would hold the marker in those
encodings only (the form's values contain such characters on purpose). Its base64 forms (three
alignments, both alphabets) cover plaintext base64-encoded on the way, as Celery does with task
bodies. Everything else is looked for as UTF-8.

The test can fail, and its controls show it:

- a scratch process holding a control string as bytes, in strings stored as UCS-2 and UCS-4,
  and base64-encoded, is dumped with the same reader: every encoding is found;
- what the hub keeps in clear by design is found where it lands: the label of the receiving
  system's device key (the "canary") in PostgreSQL's heap files and WAL, in the SQLite files
  while the processes run, in the rows; the form ids (routing metadata) in the main and audit
  stores and the notifications;
- the gunicorn workers' memory holds every form id (URLs and answers they served), the
  worker's the case reference (it wrote it into the mails), and every process dumped the hub's
  secret key: the dumps read live memory where served data lands;
- the queued task messages, decoded, name exactly the notifications created: the broker was
  searched while it held them; a canary key set in the broker's database is found in its
  ``DUMP``, in the RDB snapshot and in ``redis-server``'s memory;
- the logs show the worker ran the tasks; the relay or the outbox holds one mail per
  notification.

Putting the marker in the device label instead of the canary (a value the hub stores in clear)
makes both tests fail, naming a gunicorn worker's heap, PostgreSQL's WAL and table file, the
SQLite WAL while running and the ``exchange_devices`` row. Not searched: PostgreSQL's own
processes' memory, the kernel's page cache, and nginx (not part of these set-ups).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from flask import Flask
from sqlalchemy import Engine, create_engine, inspect, select, text

from exchange.cli import main as maillon
from exchange.client import HttpFetcher, Response
from exchange.keys import DeviceSecrets
from hub import create_app, migrate
from hub.api_auth import parse_public_jwk, public_jwk
from hub.config import load_config
from hub.demo import GROUP_NAME, seed_demo
from hub.keys import load_server_key
from hub.liaison import devices, directory_signer, user_owner
from hub.models import ApiClient, AuditOutbox, Case, Notification, OperationalGroup, Organisation
from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    _create_database,
    _drop_database,
    require_service,
)
from tests.http_helpers import free_port
from tests.load.stack import Process, group_members

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SPIP = "SPIP de Démoville"
MISSION_LOCALE = "Mission Locale de Démoville"
PASSPHRASE = "une phrase de passe assez longue"
PUBLIC_HOST = "maillon.test"
FORMS = 3
# Redis databases this test may claim (the suite uses 0 and 1, `make load` 12 and 13).
REDIS_DBS = (*range(2, 12), 14, 15)
REDIS_CLAIM = "maillon:test-no-plaintext:claim"
CHUNK = 64 * 1024 * 1024
WAIT_SECONDS = 45.0


# -- what is looked for ----------------------------------------------------------------------


def _base64_cores(data: bytes) -> dict[str, bytes]:
    """The base64 text ``data`` always yields, whatever precedes it (three alignments, both
    alphabets): the quads that hold only bytes of ``data``."""
    cores: dict[str, bytes] = {}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        core = encoded[4 if shift else 0 : 4 * ((shift + len(data)) // 3)]
        cores[f"base64/{shift}"] = core
        cores[f"base64url/{shift}"] = core.translate(bytes.maketrans(b"+/", b"-_"))
    return cores


@dataclass(frozen=True)
class Needle:
    """A string looked for: as UTF-8, or in every encoding it could take on the server."""

    name: str
    value: str
    every_encoding: bool = False

    @property
    def forms(self) -> dict[str, bytes]:
        """Encoding name → bytes (identical byte strings once)."""
        found = {"utf-8": self.value.encode("utf-8")}
        if self.every_encoding:
            for encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):
                found[encoding] = self.value.encode(encoding)
            for name, core in _base64_cores(found["utf-8"]).items():
                if core not in found.values():
                    found[name] = core
        return found


@dataclass(frozen=True)
class Hit:
    """One needle found: where, and in which encoding."""

    needle: str
    category: str
    place: str
    encoding: str


@dataclass
class Scan:
    """Every place searched (bytes per category) and every needle found."""

    needles: list[Needle]
    hits: list[Hit] = field(default_factory=list)
    searched: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._patterns = [(n.name, e, b) for n in self.needles for e, b in n.forms.items()]

    def add(self, needle: Needle) -> None:
        """Look for ``needle`` too from now on."""
        self.needles.append(needle)
        self._patterns.extend((needle.name, e, b) for e, b in needle.forms.items())

    @property
    def overlap(self) -> int:
        """How much of a chunk to carry into the next (a needle may straddle both)."""
        return max(len(b) for _n, _e, b in self._patterns)

    def search(self, category: str, place: str, data: bytes) -> None:
        """Look for every needle in ``data``, which came from ``place``."""
        self.searched[category] += len(data)
        where = (category, place)
        seen = {(h.needle, h.encoding) for h in self.hits if (h.category, h.place) == where}
        for name, encoding, pattern in self._patterns:
            if (name, encoding) not in seen and pattern in data:
                self.hits.append(Hit(name, category, place, encoding))

    def found_in(self, category: str) -> list[Hit]:
        """Hits in ``category``."""
        return [h for h in self.hits if h.category == category]

    def found(self, needle: str, category: str | None = None) -> list[Hit]:
        """Hits of ``needle`` (in ``category``)."""
        return [
            h
            for h in self.hits
            if h.needle == needle and (category is None or h.category == category)
        ]

    def file(self, category: str, path: Path) -> None:
        """Search one file (gone or unreadable files are skipped: PostgreSQL and SQLite create
        and remove temporary files at any time)."""
        try:
            with path.open("rb") as handle:
                offset, tail = 0, b""
                while chunk := handle.read(CHUNK):
                    self.search(category, f"{path}@{offset}", tail + chunk)
                    self.searched[category] -= len(tail)
                    tail = chunk[-self.overlap :]
                    offset += len(chunk)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return

    def tree(self, category: str, root: Path) -> int:
        """Search every regular file under ``root``; how many were read."""
        count = 0
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                self.file(category, path)
                count += 1
        return count

    def process(self, category: str, pid: int) -> int:
        """Search the whole readable memory of process ``pid``; bytes read."""
        read = 0
        maps = Path(f"/proc/{pid}/maps").read_text()
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            for line in maps.splitlines():
                parts = line.split(maxsplit=5)
                start, end = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5] if len(parts) > 5 else "[anonymous]"
                if "r" not in parts[1] or name in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                    continue
                address, tail = start, b""
                while address < end:
                    size = min(CHUNK, end - address)
                    try:
                        memory.seek(address)
                        chunk = memory.read(size)
                    except (OSError, ValueError, OverflowError):
                        break  # an unreadable region (I/O error on a guard or device page)
                    if not chunk:
                        break
                    self.search(category, f"pid {pid} {name} {address:#x}", tail + chunk)
                    self.searched[category] -= len(tail)
                    read += len(chunk)
                    tail = chunk[-self.overlap :]
                    address += len(chunk)
        return read


def _values(value: object) -> bytes:
    """A database value as the bytes to search."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def _scan_rows(scan: Scan, category: str, engine: Engine) -> dict[str, int]:
    """Search every row of every table of ``engine`` (read back through SQL, so values stored
    compressed are searched as they are); rows per table."""
    counts: dict[str, int] = {}
    inspector = inspect(engine)
    schemas = [
        s
        for s in inspector.get_schema_names()
        if s not in ("information_schema", "pg_catalog", "pg_toast")
    ]
    with engine.connect() as connection:
        for schema in schemas:
            for table in inspector.get_table_names(schema=schema):
                quoted = f'"{schema}"."{table}"' if engine.dialect.name != "sqlite" else table
                rows = connection.execute(text(f"SELECT * FROM {quoted}")).all()
                counts[table] = len(rows)
                data = b"\x1f".join(_values(v) for row in rows for v in row)
                scan.search(category, f"{engine.url.database} table {table}", data)
    return counts


def _kombu_bodies(raw: bytes) -> list[bytes]:
    """The decoded bodies of the Celery messages in ``raw`` (kombu's JSON envelope with a
    base64 body, possibly inside the Redis transport's ``unacked`` entries)."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return []
    bodies: list[bytes] = []

    def walk(node: object) -> None:
        """Collect the bodies of the messages within ``node``."""
        if isinstance(node, dict):
            if "body" in node and isinstance(node.get("properties"), dict):
                body = str(node["body"])
                encoding = node["properties"].get("body_encoding")
                try:
                    bodies.append(base64.b64decode(body) if encoding == "base64" else body.encode())
                except ValueError:
                    bodies.append(body.encode())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return bodies


def _queued_tasks(payloads: list[bytes]) -> list[tuple[str, list[Any]]]:
    """(task name, positional arguments) of Celery messages as the broker holds them."""
    tasks: list[tuple[str, list[Any]]] = []
    for raw in payloads:
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        tasks.append((str(message["headers"]["task"]), list(body[0])))
    return tasks


def _mail_parts(raw: bytes) -> bytes:
    """A mail as sent and with every text part decoded (quoted-printable or base64 would cut
    or hide a string in the raw bytes)."""
    message = message_from_bytes(raw, policy=policy.default)
    parts = [raw]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()).encode("utf-8"))
    return b"\n".join(parts)


# -- the server side's plumbing ---------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for :mod:`smtplib` to hand over a message."""

    server: SmtpRelay

    def handle(self) -> None:
        """One SMTP session: greet, accept every command, keep what DATA carries."""
        self.wfile.write(b"220 relay ESMTP\r\n")
        while line := self.rfile.readline(65536):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-relay\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 end with <CRLF>.<CRLF>\r\n")
                lines: list[bytes] = []
                while (row := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    lines.append(row[1:] if row.startswith(b".") else row)
                with self.server.lock:
                    self.server.messages.append(b"".join(lines))
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.wfile.write(b"250 OK\r\n")
            else:
                self.wfile.write(b"502 not implemented\r\n")


class SmtpRelay(socketserver.ThreadingTCPServer):
    """The mail relay of the production set-up, on loopback: keeps every message received."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """Where it listens."""
        return int(self.server_address[1])

    def received(self) -> list[bytes]:
        """The messages so far."""
        with self.lock:
            return list(self.messages)


@dataclass(frozen=True)
class NginxFetcher:
    """The client's network: :class:`HttpFetcher` to gunicorn's loopback port, with what nginx
    adds in front of it (public host, https, the client's address)."""

    http: HttpFetcher
    headers: Mapping[str, str]

    def __call__(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """See :class:`exchange.client.Fetcher`."""
        return self.http(method, path, body=body, headers={**headers, **self.headers})


@dataclass
class Deployment:
    """One hub under test: its environment, processes and where its files are."""

    workdir: Path
    env: dict[str, str]
    port: int
    base_url: str
    forwarded: bool
    web: Process
    worker: Process
    stopped: set[str] = field(default_factory=set)

    @property
    def var_dir(self) -> Path:
        """The hub's ``MAILLON_VAR_DIR``."""
        return Path(self.env["MAILLON_VAR_DIR"])

    def fetcher(self, address: str) -> NginxFetcher:
        """The network of a system at ``address``."""
        headers = (
            {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": address}
            if self.forwarded
            else {}
        )
        return NginxFetcher(HttpFetcher(f"http://127.0.0.1:{self.port}"), headers)

    def stop(self) -> None:
        """Stop the worker and gunicorn (SIGTERM to each process group, then SIGKILL), each
        once and only if it was started."""
        for process in (self.worker, self.web):
            if process.popen is not None and process.name not in self.stopped:
                self.stopped.add(process.name)
                process.stop(timeout=20)


def _server_env(workdir: Path, **values: str) -> dict[str, str]:
    """The hub's environment: this one without the client's or the suite's variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAILLON_", "PYTEST_")) and k != "CI"
    }
    env.update(
        PYTHONPATH=str(ROOT),
        MAILLON_SECRET_KEY=uuid.uuid4().hex * 2,
        MAILLON_IP_HASH_KEY=uuid.uuid4().hex * 2,
        MAILLON_DATA_KEY=uuid.uuid4().hex * 2,
        MAILLON_SERVER_KEY_FILE=str(workdir / "var" / "server-key.pem"),
        MAILLON_VAR_DIR=str(workdir / "var"),
        MAILLON_WEB_WORKERS="2",
        # Cheap hashing: the seeding hashes the demo's passwords; nobody logs in here.
        MAILLON_ARGON2_TIME_COST="1",
        MAILLON_ARGON2_MEMORY_KIB="1024",
        MAILLON_ARGON2_PARALLELISM="1",
    )
    env.update(values)
    return env


def _processes(workdir: Path) -> tuple[Process, Process]:
    """gunicorn as deployed, and the Celery worker as its systemd unit (one child, no gossip
    nor mingle: it starts in a second)."""
    web = Process(
        "web",
        [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"), "hub:create_app()"],
        workdir / "gunicorn.log",
    )
    worker = Process(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hub.worker",
            "worker",
            "-Q",
            "maillon",
            "--loglevel=INFO",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
        ],
        workdir / "celery-worker.log",
    )
    return web, worker


def _wait_until(what: str, check: Callable[[], bool], logs: list[Path]) -> None:
    """Poll ``check`` until it holds; fail with the end of ``logs`` after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    pytest.fail(f"{what} did not happen within {WAIT_SECONDS:.0f} s\n{tails}")


def _start_web(hub: Deployment) -> None:
    """Start gunicorn and wait until ``/healthz`` answers 200 (database, audit, broker up)."""
    hub.web.start(hub.env)
    headers = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"} if hub.forwarded else {}
    fetch = HttpFetcher(f"http://127.0.0.1:{hub.port}", timeout=5)

    def up() -> bool:
        """Whether gunicorn answers that the hub is healthy."""
        if not hub.web.running:
            pytest.fail("gunicorn exited:\n" + hub.web.log.read_text(errors="replace")[-3000:])
        try:
            return fetch("GET", "/healthz", body=None, headers=headers).status == 200
        except OSError:
            return False

    _wait_until("gunicorn answering /healthz", up, [hub.web.log])


# -- the territory ----------------------------------------------------------------------------


@dataclass
class Territory:
    """What the seeding made: the case, the systems' credentials, the directory key."""

    app: Flask
    case: str
    vkey: str
    clients: dict[str, tuple[str, Path]]  # organisation → (client id, private key file)

    def dispose(self) -> None:
        """Close the seeding app's database and broker connections."""
        state = self.app.extensions["maillon"]
        state.engine.dispose()
        state.audit_engine.dispose()
        self.app.extensions["celery"].close()


def _seed(env: dict[str, str], secrets_dir: Path) -> Territory:
    """Migrate, seed the demo, register the two systems' API clients, and give each person
    of the case's group a device key (so that they receive the forms and are notified)."""
    load_server_key(Path(env["MAILLON_SERVER_KEY_FILE"]), create=True)
    app = create_app(load_config(env))
    state = app.extensions["maillon"]
    migrate.upgrade(state.engine)
    state.audit_log.create_schema()
    with state.session_factory() as session:
        seed_demo(session, state.accounts(session), now=state.clock(), vault=state.vault)
        session.commit()
        clients: dict[str, tuple[str, Path]] = {}
        for index, name in enumerate((SPIP, MISSION_LOCALE)):
            key = Ed25519PrivateKey.generate()
            registered = parse_public_jwk(json.dumps(public_jwk(key)))
            client = ApiClient(
                organisation=session.scalar(select(Organisation).where(Organisation.name == name)),
                name="Logiciel métier",
                public_jwk=registered.to_json(),
                key_id=registered.key_id,
            )
            session.add(client)
            session.flush()
            pem = secrets_dir / f"client-{index}.pem"
            pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
            clients[name] = (client.client_id, pem)
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
        assert group is not None and group.coordinator is not None
        people = {m.user.id: m.user for m in group.memberships} | {
            group.coordinator.id: group.coordinator
        }
        directory = devices(session, state)
        for person in people.values():
            directory.register(
                DeviceSecrets.generate().public.record(),
                owner=user_owner(person),
                label="Poste de travail",
            )
        directory.log.checkpoint()
        session.commit()
        # The demo's followed case: its référent, the group and the Mission Locale take part.
        case = session.scalar(
            select(Case.reference)
            .where(Case.status == "suivi", Case.referent_id.is_not(None))
            .order_by(Case.id)
            .limit(1)
        )
        assert case is not None, "the demo has a followed case"
    vkey = directory_signer(state).verifier().vkey()
    state.engine.dispose()
    state.audit_engine.dispose()
    return Territory(app, case, vkey, clients)


def _cli(fetcher: NginxFetcher, folder: Path, *args: str) -> str:
    """Run ``maillon --dossier FOLDER ARGS`` through ``fetcher``; its standard output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = maillon(["--dossier", str(folder), *args], fetcher=fetcher)
    assert code == 0, f"maillon {' '.join(args)}: {code}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue()


@dataclass
class Exchange:
    """What the systems did: the forms sent and what the receiver read in them."""

    forms: list[str]
    opened: dict[str, dict[str, str]]


def _exchange(
    hub: Deployment, territory: Territory, client_dir: Path, marker: str, canary: str
) -> Exchange:
    """The SPIP's system sends FORMS sealed forms carrying ``marker``; the Mission Locale's
    system (its device labelled with ``canary``) lists and opens them."""
    folders: dict[str, tuple[Path, NginxFetcher]] = {}
    for number, name in enumerate((SPIP, MISSION_LOCALE)):
        client_id, pem = territory.clients[name]
        folder = client_dir / f"system-{number}"
        fetcher = hub.fetcher(f"198.51.100.{number + 10}")
        _cli(
            fetcher,
            folder,
            "init",
            "--hub",
            hub.base_url,
            "--client-id",
            client_id,
            "--client-key",
            str(pem),
            "--directory-key",
            territory.vkey,
        )
        _cli(fetcher, folder, "keys", "create")
        label = f"Serveur {canary}" if name == MISSION_LOCALE else "Serveur APPI"
        _cli(fetcher, folder, "keys", "register", "--label", label)
        folders[name] = (folder, fetcher)
    sender, receiver = folders[SPIP], folders[MISSION_LOCALE]
    forms: list[str] = []
    for number in range(FORMS):
        # Characters beyond U+00FF (— ’ €) and beyond the BMP (📞) on purpose: a process that
        # decoded these values would hold the marker in UTF-16 or UTF-32.
        values = {
            "contact.telephone": f"📞 06 12 34 56 7{number} {marker}",
            "contact.adresse": f"12 rue de l’Église {marker} Démoville",
            "justice.statut": f"Aménagement de peine — {marker}",
            "justice.obligations": f"{marker}",
            "logement.situation": f"Hébergé chez un tiers, loyer 300 € {marker}",
            "parcours.etapes": f"Étape {number} : {marker} " + "x" * 3000,
            "parcours.compte_rendu": f"Compte rendu {number}\n{marker}\n" + marker * 40,
        }
        source = client_dir / f"fiche-{number}.json"
        source.write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")
        out = _cli(
            sender[1],
            sender[0],
            "send",
            "--case",
            territory.case,
            "--purpose",
            "suivi_parcours",
            "--yes",
            str(source),
        )
        found = re.search(r"Fiche envoyée : (f-[a-z2-7]+)", out)
        assert found, out
        forms.append(found.group(1))
    inbox = json.loads(_cli(receiver[1], receiver[0], "inbox"))
    assert {entry["form"] for entry in inbox} >= set(forms)
    opened: dict[str, dict[str, str]] = {}
    for form in forms:
        opened[form] = json.loads(_cli(receiver[1], receiver[0], "open", form))["values"]
    return Exchange(forms, opened)


# -- the run ----------------------------------------------------------------------------------


def _notifications(app: Flask) -> list[Notification]:
    """The notifications in the hub's database, oldest first."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def _scan_memory(scan: Scan, hub: Deployment) -> dict[str, list[int]]:
    """Dump the memory of every process of gunicorn and of the worker; pids per group."""
    assert hub.web.popen is not None and hub.worker.popen is not None
    pids = {
        "web": group_members(hub.web.popen.pid),
        "worker": group_members(hub.worker.popen.pid),
    }
    assert len(pids["web"]) >= 3, f"gunicorn's master and two workers expected: {pids}"
    assert len(pids["worker"]) >= 2, f"Celery's main process and its child expected: {pids}"
    for group, members in pids.items():
        for pid in members:
            assert scan.process(f"memory:{group}:{pid}", pid) > 0
    return pids


def _scan_files(scan: Scan, hub: Deployment, when: str) -> None:
    """The logs, and every file under the hub's directory (SQLite stores, outbox, keys…)."""
    for log in (hub.web.log, hub.worker.log):
        scan.file(f"logs {when}", log)
    scan.tree(f"hub files {when}", hub.var_dir)


def _run(
    hub: Deployment,
    scan: Scan,
    territory: Territory,
    client_dir: Path,
    *,
    canary: str,
    pending: Callable[[], list[bytes]],
    mails: Callable[[], list[bytes]],
) -> tuple[Exchange, dict[str, list[int]]]:
    """Send and open the forms, search the queued tasks, let the worker mail the people, then
    dump the processes' memory and search the hub's files while everything still runs."""
    marker = scan.needles[0].value
    scan.add(Needle("case reference", territory.case))
    _start_web(hub)
    done = _exchange(hub, territory, client_dir, marker, canary)
    # The forms carried the marker: the receiving system read it in every value it opened.
    for form, values in done.opened.items():
        assert values and all(marker in v for v in values.values()), (form, values)
    for form in done.forms:
        scan.add(Needle(form, form))
    notified = _notifications(territory.app)
    assert len(notified) >= FORMS, "the people the forms were sealed to are notified"
    assert {n.dedupe_key for n in notified} == {f"form:{f}" for f in done.forms}

    # The broker while the notification tasks wait in the queue (no worker yet).
    waiting = pending()
    for number, raw in enumerate(waiting):
        scan.search("broker queue", f"queued message {number}", raw)
        for body in _kombu_bodies(raw):
            scan.search("broker queue", f"queued message {number} (decoded body)", body)
    queued = _queued_tasks(waiting)
    mail_tasks = [args[0] for task, args in queued if task == "hub.tasks.send_notification_mail"]
    assert sorted(mail_tasks) == sorted(n.id for n in notified), queued

    hub.worker.start(hub.env)
    celery = territory.app.extensions["celery"]
    # Two of the beat's every-minute tasks too: the worker reads the audit store and outbox.
    celery.send_task("hub.tasks.sign_checkpoint")
    celery.send_task("hub.tasks.flush_audit_outbox")

    def worked() -> bool:
        """Whether every notification was mailed and both beat tasks ran."""
        log = hub.worker.log.read_text(errors="replace")
        return (
            all(n.mailed_at is not None for n in _notifications(territory.app))
            and len(mails()) >= len(notified)
            and all(
                re.search(rf"{re.escape(task)}\[[^\]]+\] succeeded", log)
                for task in ("hub.tasks.sign_checkpoint", "hub.tasks.flush_audit_outbox")
            )
        )

    _wait_until("the worker mailing every notification", worked, [hub.worker.log, hub.web.log])
    pids = _scan_memory(scan, hub)
    # The files as they are while the processes run (SQLite's -wal and -shm files among them).
    _scan_files(scan, hub, "while running")
    return done, pids


def _assert_no_marker(
    scan: Scan,
    hub: Deployment,
    territory: Territory,
    done: Exchange,
    pids: dict[str, list[int]],
    mails: list[bytes],
) -> None:
    """What both set-ups must show: the common controls, then the marker nowhere."""
    # The logs were read and tell of the work done.
    assert "hub.tasks.send_notification_mail" in hub.worker.log.read_text(errors="replace")
    assert "Booting worker" in hub.web.log.read_text(errors="replace")
    # Every process dumped holds the hub's secret key: its live memory was read.
    read = {h.category for h in scan.found("secret key")}
    for group, members in pids.items():
        for pid in members:
            assert f"memory:{group}:{pid}" in read, f"the memory of {group} {pid} was not read"
    # The mails: one per notification, naming the case by its pseudonymous reference.
    notified = _notifications(territory.app)
    assert len(mails) == len(notified)
    for number, raw in enumerate(mails):
        decoded = _mail_parts(raw)
        assert territory.case.encode() in decoded
        scan.search("outbox mail", f"mail {number}", decoded)
    # The outbox and notification rows, explicitly (the database scans read them too).
    state = territory.app.extensions["maillon"]
    with state.session_factory() as session:
        staged = list(session.scalars(select(AuditOutbox)))
    for row in staged:
        scan.search("outbox rows", f"audit_outbox {row.id}", row.event.encode())
    for note in notified:
        columns = [getattr(note, c.key) for c in Notification.__table__.columns]
        row = b"\x1f".join(_values(value) for value in columns)
        scan.search("notification rows", f"notification {note.id}", row)
        assert note.kind == "form_received" and note.mailed_at is not None
    assert {h.needle for h in scan.found_in("notification rows")} >= set(done.forms)
    # The web workers' memory holds what they served in clear (the form ids of the URLs and
    # answers), so the marker would be there had they ever held it in clear.
    web = {h.needle for h in scan.hits if h.category.startswith("memory:web:")}
    assert web >= set(done.forms), web
    # The worker's too (the case reference it wrote into the mails).
    worker = {h.needle for h in scan.hits if h.category.startswith("memory:worker:")}
    assert "case reference" in worker, worker
    # And the marker: nowhere.
    leaks = scan.found("marker")
    assert not leaks, "plaintext of the forms found on the server:\n" + "\n".join(
        f"  {h.category}: {h.place} ({h.encoding})" for h in leaks[:50]
    )


def _scratch_control() -> None:
    """The memory reader finds a string a live process holds, in every encoding CPython may
    hold it in: bytes, a ``str`` stored as UCS-2 and one stored as UCS-4, and base64."""
    control = uuid.uuid4().hex
    scan = Scan([Needle("control", control, every_encoding=True)])
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import base64, sys, time\n"
            "text = sys.stdin.readline().strip()\n"
            "held = [text.encode(), '\\u2014 ' + text, '\\U0001f4de ' + text,"
            " base64.b64encode(b'ab' + text.encode())]\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert probe.stdin is not None and probe.stdout is not None
        probe.stdin.write(control.encode() + b"\n")
        probe.stdin.flush()
        assert probe.stdout.readline() == b"ready\n"
        assert scan.process("memory:scratch", probe.pid) > 0
    finally:
        probe.kill()
        probe.wait(timeout=10)
        for stream in (probe.stdin, probe.stdout):
            if stream is not None:
                stream.close()
    encodings = {h.encoding for h in scan.found("control")}
    assert {"utf-8", "utf-16-le", "utf-32-le", "base64/2"} <= encodings, encodings


def _needles(hub_secret: str) -> tuple[Scan, str]:
    """A scan for the marker (first, in every encoding), the canary and the hub's secret key
    (as UTF-8), once the memory reader proved itself on a scratch process; and the canary."""
    _scratch_control()
    canary = uuid.uuid4().hex
    scan = Scan(
        [
            Needle("marker", uuid.uuid4().hex, every_encoding=True),
            Needle("canary", canary),
            Needle("secret key", hub_secret),
        ]
    )
    return scan, canary


def _report(scan: Scan, started: float) -> None:
    """What was searched and where the controls were found (shown with ``pytest -s``)."""
    total = sum(scan.searched.values())
    print(f"\nno plaintext: {total / 1e6:.0f} MB searched in {time.monotonic() - started:.1f} s")
    for category, size in sorted(scan.searched.items()):
        controls = sorted({h.needle for h in scan.found_in(category)} - {"marker"})
        print(f"  {category}: {size / 1e6:.1f} MB; controls found: {', '.join(controls) or '-'}")


@pytest.fixture
def client_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The systems' side: keystores, directory replicas and the forms in clear (never
    searched: it is not the server's)."""
    monkeypatch.setenv("MAILLON_PASSPHRASE", PASSPHRASE)
    folder = tmp_path / "client"
    folder.mkdir()
    return folder


# -- PostgreSQL, Redis, SMTP ------------------------------------------------------------------


def _pgdata(admin: Engine) -> Path:
    """The PostgreSQL server's data directory (``MAILLON_PGDATA``, else asked to the server)."""
    configured = os.environ.get("MAILLON_PGDATA")
    if configured:
        return Path(configured)
    with admin.connect() as connection:
        return Path(str(connection.execute(text("SHOW data_directory")).scalar_one()))


@contextlib.contextmanager
def _redis_databases(count: int) -> Iterator[list[str]]:
    """``count`` empty numbered Redis databases, claimed for this run and emptied after."""
    import redis

    base = REDIS_URL.rsplit("/", 1)[0]
    claimed: list[str] = []
    try:
        for number in REDIS_DBS:
            if len(claimed) == count:
                break
            url = f"{base}/{number}"
            with redis.Redis.from_url(url) as client:
                # The claim key stays until the end: a concurrent run passes this one by.
                if client.dbsize() == 0 and client.set(REDIS_CLAIM, "1", nx=True, ex=600):
                    claimed.append(url)
        assert len(claimed) == count, "no free Redis database"
        yield claimed
    finally:
        for url in claimed:
            with redis.Redis.from_url(url) as client:
                client.flushdb()


def _redis_keys(client: Any, scan: Scan, category: str) -> int:
    """Search every key of ``client``'s database, read as its type (Celery messages decoded)
    and ``DUMP``-ed; how many keys."""
    keys = 0
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        parts: list[bytes] = [key]
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            for name, value in client.hgetall(key).items():
                parts.extend((name, value))
        elif kind == b"set":
            parts.extend(client.smembers(key))
        elif kind == b"zset":
            parts.extend(member for member, _score in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            for entry_id, values in client.xrange(key):
                parts.append(entry_id)
                for name, value in values.items():
                    parts.extend((name, value))
        place = f"db {client.connection_pool.connection_kwargs.get('db')} key {key!r}"
        for number, part in enumerate(parts):
            scan.search(category, f"{place} [{number}]", part)
            for body in _kombu_bodies(part):
                scan.search(category, f"{place} [{number}] (decoded body)", body)
        dumped = client.dump(key)
        if dumped is not None:
            scan.search(f"{category} DUMP", place, dumped)
        keys += 1
    return keys


def _redis_server_pid(client: Any) -> int | None:
    """The pid of ``redis-server`` when it runs on this machine."""
    pid = int(client.info("server")["process_id"])
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return pid if "redis" in Path(exe).name else None


@dataclass
class RedisScan:
    """Which of the optional Redis searches could run."""

    snapshot: bool
    memory: bool


def _scan_redis(scan: Scan, urls: list[str], workdir: Path, canary: str) -> RedisScan:
    """Every key of the broker's and the rate limiter's databases, an uncompressed RDB
    snapshot of the whole server and the server's memory, with a canary key as control."""
    import redis

    with redis.Redis.from_url(urls[0]) as broker:
        broker.set("maillon:test-no-plaintext:canary", f"control value {canary}")
        saved = {
            name: broker.config_get(name)[name]
            for name in ("rdbcompression", "repl-diskless-sync", "repl-diskless-sync-delay")
        }
        done = RedisScan(snapshot=False, memory=False)
        try:
            # Uncompressed, so that a value in a DUMP or the snapshot is its own bytes (LZF
            # would break a string into literal runs).
            broker.config_set("rdbcompression", "no")
            for url in urls:
                with redis.Redis.from_url(url) as client:
                    assert _redis_keys(client, scan, "redis keys") > 0
            cli = shutil.which("redis-cli")
            # Diskless only: the snapshot streams to us, the server writes no file of its own.
            if cli and saved["repl-diskless-sync"] == "yes":
                broker.config_set("repl-diskless-sync-delay", "0")
                where = broker.connection_pool.connection_kwargs
                snapshot = workdir / "redis-snapshot.rdb"
                subprocess.run(
                    [
                        cli,
                        "-h",
                        str(where.get("host", "127.0.0.1")),
                        "-p",
                        str(where.get("port", 6379)),
                        "--rdb",
                        str(snapshot),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
                scan.file("redis snapshot", snapshot)
                snapshot.unlink()
                done.snapshot = True
            pid = _redis_server_pid(broker)
            if pid is not None:
                scan.process("redis-server memory", pid)
                done.memory = True
        finally:
            for name, value in saved.items():
                broker.config_set(name, value)
            broker.delete("maillon:test-no-plaintext:canary")
    return done


@pytest.mark.postgres
@pytest.mark.redis
def test_no_plaintext_in_the_production_stack(tmp_path: Path, client_dir: Path) -> None:
    """PostgreSQL, Redis and an SMTP relay; gunicorn and a Celery worker as deployed."""
    require_service(POSTGRES_URL, "PostgreSQL (MAILLON_TEST_POSTGRES_URL)")
    require_service(REDIS_URL, "Redis (MAILLON_TEST_REDIS_URL)")
    import redis

    started = time.monotonic()
    workdir = tmp_path / "server"
    (workdir / "var").mkdir(parents=True)
    secrets_dir = tmp_path / "client-secrets"
    secrets_dir.mkdir()
    suffix = uuid.uuid4().hex[:8]
    names = (f"maillon_noplain_{suffix}", f"maillon_noplain_audit_{suffix}")
    with contextlib.ExitStack() as cleanup:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        cleanup.callback(admin.dispose)
        pgdata = _pgdata(admin)
        # Searched as files: the server must run on this machine, its files readable here.
        assert (pgdata / "PG_VERSION").is_file(), f"PostgreSQL's data directory: {pgdata}?"
        assert os.access(pgdata / "base", os.R_OK | os.X_OK), f"{pgdata} unreadable: run as root"
        for name in names:
            cleanup.callback(_drop_database, POSTGRES_URL, name)
        main_url = _create_database(POSTGRES_URL, names[0])
        audit_url = _create_database(POSTGRES_URL, names[1])
        relay = SmtpRelay()
        relay.thread.start()
        cleanup.callback(relay.server_close)
        cleanup.callback(relay.shutdown)
        broker_url, ratelimit_url = cleanup.enter_context(_redis_databases(2))
        port = free_port()
        env = _server_env(
            workdir,
            MAILLON_ENV="production",
            MAILLON_BASE_URL=f"https://{PUBLIC_HOST}",
            MAILLON_DATABASE_URL=main_url,
            MAILLON_AUDIT_DATABASE_URL=audit_url,
            MAILLON_BROKER_URL=broker_url,
            MAILLON_RATELIMIT_STORAGE_URL=ratelimit_url,
            MAILLON_TRUSTED_PROXIES="1",
            MAILLON_MAIL_SERVER="127.0.0.1",
            MAILLON_MAIL_PORT=str(relay.port),
            MAILLON_MAIL_USE_TLS="false",
            MAILLON_BIND=f"127.0.0.1:{port}",
        )
        web, worker = _processes(workdir)
        hub = Deployment(workdir, env, port, f"https://{PUBLIC_HOST}", True, web, worker)
        cleanup.callback(hub.stop)
        scan, canary = _needles(env["MAILLON_SECRET_KEY"])
        territory = _seed(env, secrets_dir)
        cleanup.callback(territory.dispose)

        def pending() -> list[bytes]:
            """The messages waiting in the worker's queue (a Redis list)."""
            with redis.Redis.from_url(broker_url) as client:
                return list(client.lrange("maillon", 0, -1))

        done, pids = _run(
            hub,
            scan,
            territory,
            client_dir,
            canary=canary,
            pending=pending,
            mails=relay.received,
        )
        optional = _scan_redis(scan, [broker_url, ratelimit_url], workdir, canary)
        hub.stop()
        _scan_files(scan, hub, "after stop")
        with admin.connect() as connection:
            connection.execute(text("CHECKPOINT"))
        assert scan.tree("postgresql files", pgdata) > 0
        counts: dict[str, dict[str, int]] = {}
        for name, url in (("main", main_url), ("audit", audit_url)):
            engine = create_engine(url)
            try:
                counts[name] = _scan_rows(scan, f"postgresql {name} rows", engine)
            finally:
                engine.dispose()
        assert counts["main"]["exchange_forms"] == FORMS
        assert counts["audit"]["audit_events"] + counts["audit"]["audit_tail"] > 0
        _assert_no_marker(scan, hub, territory, done, pids, relay.received())

        # Controls: what the hub keeps in clear by design is found where it lands.
        pg_files = [h.place for h in scan.found("canary", "postgresql files")]
        assert any("/base/" in p for p in pg_files), f"the device label in the heap: {pg_files}"
        assert any("/pg_wal/" in p for p in pg_files), f"the device label in the WAL: {pg_files}"
        assert scan.found("canary", "postgresql main rows")
        for form in done.forms:
            categories = {h.category for h in scan.found(form)}
            assert {
                "postgresql files",
                "postgresql main rows",
                "postgresql audit rows",
            } <= categories, (form, categories)
        assert scan.found("canary", "redis keys") and scan.found("canary", "redis keys DUMP")
        assert not optional.snapshot or scan.found("canary", "redis snapshot")
        assert not optional.memory or scan.found("canary", "redis-server memory")
        _report(scan, started)


# -- SQLite, embedded -------------------------------------------------------------------------


def test_no_plaintext_in_the_embedded_stack(tmp_path: Path, client_dir: Path) -> None:
    """SQLite stores in WAL mode, the SQLite broker and mail files, as ``make run``."""
    started = time.monotonic()
    workdir = tmp_path / "server"
    var = workdir / "var"
    var.mkdir(parents=True)
    secrets_dir = tmp_path / "client-secrets"
    secrets_dir.mkdir()
    port = free_port()
    env = _server_env(
        workdir,
        MAILLON_ENV="development",
        MAILLON_BASE_URL=f"http://127.0.0.1:{port}",
        MAILLON_BIND=f"127.0.0.1:{port}",
    )
    web, worker = _processes(workdir)
    hub = Deployment(workdir, env, port, env["MAILLON_BASE_URL"], False, web, worker)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(hub.stop)
        scan, canary = _needles(env["MAILLON_SECRET_KEY"])
        territory = _seed(env, secrets_dir)
        cleanup.callback(territory.dispose)
        config = territory.app.extensions["maillon"].config
        stores = {
            "main": var / "maillon.sqlite",
            "audit": var / "audit.sqlite",
            "broker": Path(config.broker_url.split("///", 1)[1]),
        }

        def pending() -> list[bytes]:
            """The messages waiting in the worker's queue (visible rows of kombu's table)."""
            engine = create_engine(f"sqlite:///{stores['broker']}")
            try:
                with engine.connect() as connection:
                    rows = connection.execute(
                        text(
                            "SELECT m.payload FROM kombu_message m JOIN kombu_queue q"
                            " ON m.queue_id = q.id WHERE q.name = 'maillon' AND m.visible"
                        )
                    ).scalars()
                    return [str(r).encode() for r in rows]
            finally:
                engine.dispose()

        def mails() -> list[bytes]:
            """The mails written to the outbox."""
            return [p.read_bytes() for p in sorted(config.mail_outbox.glob("*.eml"))]

        done, pids = _run(
            hub,
            scan,
            territory,
            client_dir,
            canary=canary,
            pending=pending,
            mails=mails,
        )
        running = {h.place for h in scan.found("canary", "hub files while running")}
        # The stores were in WAL mode when their files were searched, just now.
        assert (var / "maillon.sqlite-wal").is_file() and (var / "audit.sqlite-wal").is_file()
        hub.stop()
        _scan_files(scan, hub, "after stop")
        counts: dict[str, dict[str, int]] = {}
        for name, path in stores.items():
            engine = create_engine(f"sqlite:///{path}")
            try:
                counts[name] = _scan_rows(scan, f"sqlite {name} rows", engine)
            finally:
                engine.dispose()
        assert counts["main"]["exchange_forms"] == FORMS
        assert counts["broker"]["kombu_message"] > 0
        _assert_no_marker(scan, hub, territory, done, pids, mails())

        # Controls: the device label and the form ids, kept in clear, are in the files.
        assert any("/maillon.sqlite" in p for p in running), running
        assert scan.found("canary", "sqlite main rows")
        for form in done.forms:
            places = [h.place for h in scan.found(form) if h.category.startswith("hub files")]
            assert any("/maillon.sqlite" in p for p in places), (form, places)
            assert any("/audit.sqlite" in p for p in places), (form, places)
        _report(scan, started)
