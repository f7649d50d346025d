"""Talking HTTP to a hub served in a subprocess (gunicorn, `flask serve`): tests and benchmarks."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@contextmanager
def flask_run(env: Mapping[str, str], port: int, log: Path, probe: str) -> Iterator[None]:
    """``flask --app hub run`` on loopback ``port`` (output in ``log``), until ``probe`` (a path)
    answers; stopped on exit. ``RuntimeError`` with the log's tail if it does not start."""
    command = [str(BIN / "flask"), "--app", "hub", "run", "--no-reload"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(
                            "the hub did not start:\n" + log.read_text()[-3000:]
                        ) from None
                    time.sleep(0.2)
            yield
        finally:
            server.terminate()
            server.wait(timeout=30)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """Just enough of a browser: keeps cookies, sends ``headers`` (e.g. what nginx would add)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = dict(headers or {})
        self.cookies: dict[str, str] = {}

    def cookie_header(self) -> dict[str, str]:
        """The ``Cookie`` header of this browser's session (for load generators)."""
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """Status, lower-cased headers and text of one request (cookies kept)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(self.headers)
        if self.cookies:
            headers.update(self.cookie_header())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        text = response.read().decode("utf-8", errors="replace")
        result = (response.status, {k.lower(): v for k, v in response.getheaders()}, text)
        connection.close()
        return result
