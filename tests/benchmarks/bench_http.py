"""HTTP figures (DESIGN §11) under gunicorn with 2 sync workers, on the embedded stores.

- audited read of a case through the API (``GET /api/v1/dossiers/<ref>``) — bearer token
  check, need-to-know context, charter view decision with the publishers' kinds and the group's
  meetings, decryption of the granted values, durable audit append, JSON — against a bare Flask
  endpoint under the same gunicorn settings, loaded by the same client in the same run.
  Target: ≥ 35 % of the baseline's requests/s;
- the same read as an HTML page for a logged-in référent (session, CSRF-protected forms, page
  rendering), reported against the same baseline.

Both servers run as subprocesses on loopback ports; the load comes from client threads in this
process. The machine is shared and its speed drifts, so the three loads alternate in short rounds
(hello, API, page, hello, …); each figure is the median rate over the rounds, and the per-round
rates and ratios (median and range) are printed beside it. No assertion on time anywhere.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import totp
from hub.api_auth import ASSERTION_TYPE, public_jwk
from tests.benchmarks.common import Result, percentile, ratios, spread
from tests.http_helpers import Browser, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@contextmanager
def _gunicorn(app: str, env: dict[str, str], log: Path, port: int) -> Iterator[int]:
    """Serve ``app`` with 2 sync workers on loopback ``port`` until the block ends."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}", app],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(port, "/", {})
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(f"{app} did not start: see {log}") from None
                    time.sleep(0.2)
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def _login(port: int, account: dict[str, str]) -> dict[str, str]:
    """The headers of a session of ``account``, opened through the real login form."""
    browser = Browser(port)
    _status, _headers, page = browser.request("GET", "/connexion")
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
    assert match, "no CSRF token on the login page"
    browser.request(
        "POST",
        "/connexion",
        {
            "csrf_token": match.group(1),
            "email": account["email"],
            "password": account["password"],
            "code": totp.code_at(account["totp_secret"], datetime.now(UTC)),
        },
    )
    return browser.cookie_header()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _api_token(port: int, env: dict[str, str], var: Path) -> dict[str, str]:
    """Register an API client for the SPIP (which follows the demo's first case) and get an
    access token through a signed client assertion (RFC 7523)."""
    key = Ed25519PrivateKey.generate()
    jwk_file = var / "client.jwk"
    jwk_file.write_text(json.dumps(public_jwk(key)))
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "hub", "api-client", "register",
         "--org", "SPIP de Démoville", "--name", "Banc d'essai", "--jwk", str(jwk_file)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    client_id = done.stdout.strip().splitlines()[-1]
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"http://127.0.0.1:{port}/api/v1/token",
        "exp": now + 120,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    signing_input = (
        f"{_b64(json.dumps({'alg': 'Ed25519', 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps(claims).encode())}"
    )
    assertion = f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/api/v1/token",
        body=urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            }
        ),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = json.loads(connection.getresponse().read())
    connection.close()
    return {"Authorization": f"Bearer {body['access_token']}"}


def _load(
    port: int, path: str, headers: dict[str, str], *, seconds: float, clients: int = 4
) -> tuple[float, list[float]]:
    """Requests per second and per-request latencies of ``clients`` threads for ``seconds``."""
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[int] = []

    def work(index: int) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status = _get(port, path, headers)
            latencies[index].append(time.perf_counter() - start)
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{path} answered {sorted(set(failures))}")
    flat = [x for per in latencies for x in per]
    return len(flat) / elapsed, flat


def run(quick: bool) -> list[Result]:
    """Measure the audited case read (API and page) against hello-world over HTTP."""
    seconds = 0.3 if quick else 5.0
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        var = Path(tmp)
        hub_port, hello_port = free_port(), free_port()
        env = {
            **os.environ,
            "MAILLON_VAR_DIR": str(var),
            "MAILLON_ENV": "development",
            "MAILLON_BASE_URL": f"http://127.0.0.1:{hub_port}",
        }
        flask = [str(BIN / "flask"), "--app", "hub"]
        subprocess.run([*flask, "init-db"], env=env, cwd=ROOT, check=True, capture_output=True)
        out = var / "demo.json"
        subprocess.run(
            [*flask, "demo", "--out", str(out)], env=env, cwd=ROOT, check=True, capture_output=True
        )
        accounts = {a["email"]: a for a in json.loads(out.read_text())["accounts"]}
        reference = _first_case(var)
        with (
            _gunicorn("hub:create_app()", env, var / "hub.log", hub_port),
            _gunicorn("tests.benchmarks.hello_app:app", env, var / "hello.log", hello_port),
        ):
            api = (
                f"/api/v1/dossiers/{reference}?finalite=suivi_parcours",
                _api_token(hub_port, env, var),
            )
            page = (
                f"/dossiers/{reference}?finalite=suivi_parcours",
                _login(hub_port, accounts["conseillere@demoville.example"]),
            )
            for path, headers in (api, page):
                if _get(hub_port, path, headers) != 200:
                    raise RuntimeError(f"{path} was refused")
                _load(hub_port, path, headers, seconds=seconds / 5)  # warm up
            _load(hello_port, "/", {}, seconds=seconds / 5)
            rates: dict[str, list[float]] = {"hello": [], "api": [], "page": []}
            lat: dict[str, list[float]] = {"hello": [], "api": [], "page": []}
            for _round in range(rounds):
                for name, (port, path, headers) in {
                    "hello": (hello_port, "/", {}),
                    "api": (hub_port, *api),
                    "page": (hub_port, *page),
                }.items():
                    measured, latencies = _load(port, path, headers, seconds=seconds)
                    rates[name].append(measured)
                    lat[name].extend(latencies)
    hello, api_rate, page_rate = (statistics.median(rates[k]) for k in ("hello", "api", "page"))
    api_ratios = ratios(rates["api"], rates["hello"])
    page_ratios = ratios(rates["page"], rates["hello"])
    for name in ("hello", "api", "page"):
        print(f"  {name:<5} req/s per round: " + ", ".join(f"{r:,.0f}" for r in rates[name]))
    print(f"  ratio per round: API {spread(api_ratios)}, page {spread(page_ratios)}")
    n = f"median of {rounds} rounds"
    return [
        Result(f"audited case read, API, over HTTP ({n})", api_rate, "req/s",
               "hello-world, same gunicorn settings", hello, "≥ 35 % of baseline",
               min_ratio=0.35, rounds=tuple(rates["api"]), baseline_rounds=tuple(rates["hello"])),
        Result("audited case read, API, p99", percentile(lat["api"], 99) * 1e3, "ms",
               "hello-world p99", percentile(lat["hello"], 99) * 1e3, "reported",
               higher_is_better=False),
        Result(f"audited case read, HTML page, over HTTP ({n})", page_rate, "req/s",
               "hello-world, same gunicorn settings", hello, "reported",
               rounds=tuple(rates["page"]), baseline_rounds=tuple(rates["hello"])),
    ]  # fmt: skip


def _first_case(var: Path) -> str:
    import sqlite3

    with sqlite3.connect(var / "maillon.sqlite") as conn:
        row = conn.execute("SELECT reference FROM cases ORDER BY id LIMIT 1").fetchone()
    return str(row[0])
