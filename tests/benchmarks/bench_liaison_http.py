"""Sealed liaison forms over HTTP (DESIGN §11, issue 10 point 10), gunicorn with 2 sync workers.

``POST /api/v1/fiches`` of a 10-recipient form by the SPIP's system — bearer token, envelope
read and verified, charter × consent × case team for the sender and every recipient device,
ciphertext stored, durable audit append, recipients' notifications queued — against the bare
Flask endpoint of :mod:`tests.benchmarks.hello_app` under the same gunicorn settings, loaded by
the same client threads in the same run. Target: ≥ 40 % of the baseline's requests/s (and,
reported, p99 ≤ 3× the baseline's p99).

Every form can be sent once (its id is the idempotency key): each round's forms are sealed
before the round, more than the previous rounds' rate needs; a round ends at its time or when
its forms run out, and its rate is the forms accepted over the time taken. The hub runs on the
embedded stores (SQLite, Celery's SQLite broker) with rate limiting off (``bench_env``). The
loads alternate in short rounds (hello, forms, hello, …); each figure is the median rate over
the rounds, printed with the per-round values and ratios. No assertion on time anywhere.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlencode

from tests.benchmarks.bench_http import BIN, ROOT, _get, _load
from tests.benchmarks.common import Result, percentile, ratios, spread
from tests.benchmarks.liaison_territory import Territory, bench_env, prepare, sealed_forms
from tests.http_helpers import free_port


@contextmanager
def _served(apps: Mapping[str, int], env: dict[str, str], var: Path) -> Iterator[None]:
    """Serve each app on its loopback port with 2 sync gunicorn workers (the settings of
    bench_http), all started and stopped together, until the block ends. A failure inside the
    block is raised again with the end of the servers' logs (the directory is temporary)."""
    with ExitStack() as stack:
        servers: list[subprocess.Popen[bytes]] = []
        for number, (app, port) in enumerate(apps.items()):
            log = stack.enter_context((var / f"gunicorn-{number}.log").open("wb"))
            servers.append(
                subprocess.Popen(
                    [
                        str(BIN / "gunicorn"),
                        "-w",
                        "2",
                        "-k",
                        "sync",
                        "-b",
                        f"127.0.0.1:{port}",
                        app,
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            deadline = time.monotonic() + 60
            for server, (app, port) in zip(servers, apps.items(), strict=True):
                while True:
                    try:
                        _get(port, "/", {})
                        break
                    except OSError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise RuntimeError(f"{app} did not start: see {var}") from None
                        time.sleep(0.1)
            try:
                yield
            except RuntimeError as error:
                tails = [
                    f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:]
                    for path in sorted(var.glob("gunicorn-*.log"))
                ]
                raise RuntimeError("\n".join([str(error), *tails])) from error
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)


def _token(port: int, territory: Territory) -> dict[str, str]:
    """A fresh access token of the sender's API client, through the real token endpoint."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/api/v1/token",
        body=urlencode(territory.token_form(f"http://127.0.0.1:{port}/api/v1/token")),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"no access token: {body}")
    return {"Authorization": f"Bearer {body['access_token']}"}


def _post(port: int, data: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST", "/api/v1/fiches", body=data, headers={**headers, "Content-Type": "application/json"}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def _send_load(
    port: int, forms: list[bytes], headers: dict[str, str], *, seconds: float, clients: int = 4
) -> tuple[float, list[float]]:
    """Forms accepted per second and per-request latencies of ``clients`` threads sending
    ``forms`` (each once) for at most ``seconds``."""
    pool = list(reversed(forms))
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[int] = []

    def work(index: int) -> None:
        while time.perf_counter() < stop:
            with lock:
                if not pool:
                    return
                data = pool.pop()
            start = time.perf_counter()
            status = _post(port, data, headers)
            latencies[index].append(time.perf_counter() - start)
            if status != 201:
                failures.append(status)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"POST /api/v1/fiches answered {sorted(set(failures))}")
    flat = [x for per in latencies for x in per]
    return len(flat) / elapsed, flat


def run(quick: bool) -> list[Result]:
    """Measure sending a sealed 10-recipient form over HTTP against hello-world."""
    seconds = 0.3 if quick else 5.0
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-liaison-http-") as tmp:
        var = Path(tmp) / "var"
        hub_port, hello_port = free_port(), free_port()
        env = bench_env(var, hub_port)
        territory = prepare(env)
        territory.dispose()  # the served hub opens its own engines on the same files
        apps = {"hub:create_app()": hub_port, "tests.benchmarks.hello_app:app": hello_port}
        with _served(apps, env, var):
            headers = _token(hub_port, territory)
            warm_rate, _ = _send_load(
                hub_port, sealed_forms(territory, 20), headers, seconds=seconds
            )
            _load(hello_port, "/", {}, seconds=seconds / 5)  # warm up
            rates: dict[str, list[float]] = {"hello": [], "forms": []}
            lat: dict[str, list[float]] = {"hello": [], "forms": []}
            best = warm_rate
            for _round in range(rounds):
                measured, latencies = _load(hello_port, "/", {}, seconds=seconds)
                rates["hello"].append(measured)
                lat["hello"].extend(latencies)
                # Twice what the fastest round so far needed: a round rarely runs out.
                forms = sealed_forms(territory, max(20, int(2 * best * seconds)))
                headers = _token(hub_port, territory)
                measured, latencies = _send_load(hub_port, forms, headers, seconds=seconds)
                rates["forms"].append(measured)
                lat["forms"].extend(latencies)
                best = max(best, measured)
    hello, sent = (statistics.median(rates[k]) for k in ("hello", "forms"))
    for name in ("hello", "forms"):
        print(f"  {name:<5} req/s per round: " + ", ".join(f"{r:,.1f}" for r in rates[name]))
    print(f"  ratio per round: {spread(ratios(rates['forms'], rates['hello']))}")
    n = f"median, {rounds} rounds"
    recipients = territory.recipients
    return [
        Result(f"POST /api/v1/fiches, {recipients} recipients, HTTP ({n})", sent,
               "req/s", "hello-world, same gunicorn settings", hello, "≥ 40 % of baseline",
               min_ratio=0.40, rounds=tuple(rates["forms"]), baseline_rounds=tuple(rates["hello"])),
        Result("POST /api/v1/fiches, p99", percentile(lat["forms"], 99) * 1e3, "ms",
               "hello-world p99", percentile(lat["hello"], 99) * 1e3, "≤ 3× baseline",
               higher_is_better=False, max_ratio=3.0),
    ]  # fmt: skip
