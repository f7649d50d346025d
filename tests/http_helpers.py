"""Talking HTTP to a hub served in a subprocess (gunicorn, `flask serve`): tests and benchmarks."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlencode


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
