"""Real-browser tests: headless Debian Chromium driven by Selenium through ``chromium-driver``.

apt installs the browser and its driver together (``.ci/services.sh``), so their versions stay
matched without Selenium Manager downloading anything. Locally the tests skip when Chromium is
missing; in CI they fail (docs/browser.md).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.browser


def _require_chromium() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    message = "chromium and chromium-driver are not installed"
    if IN_CI:
        pytest.fail(f"{message}: CI must provide them (see .ci/services.sh)")
    pytest.skip(message)


def chromium_options(
    profile: Path | None = None, *, width: int = 1280, javascript: bool = True
) -> webdriver.ChromeOptions:
    """Headless Chromium as the tests run it; ``profile`` keeps IndexedDB across restarts."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_argument("--headless=new")
    options.add_argument("--no-sandbox")  # containers run the tests as root
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--disable-gpu")
    options.add_argument(f"--window-size={width},900")
    options.add_argument("--lang=fr-FR")
    # Pages in French, as partners read them (the hub picks the language from this header).
    prefs: dict[str, Any] = {"intl.accept_languages": "fr-FR,fr"}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    options.add_experimental_option("prefs", prefs)
    if profile is not None:
        options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


def start_chromium(
    profile: Path | None = None, *, width: int = 1280, javascript: bool = True
) -> webdriver.Chrome:
    """A new headless Chromium (the caller quits it)."""
    _require_chromium()
    driver = webdriver.Chrome(
        options=chromium_options(profile, width=width, javascript=javascript),
        service=Service(CHROMEDRIVER),
    )
    driver.set_script_timeout(120)
    return driver


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """The module and the in-browser test helpers, without the hub: /js/ and /tests/."""

    # A connection Chromium opens ahead of need and never uses is dropped after 2 s, so the
    # server's threads all end and are joined when it closes.
    timeout = 2

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/js/"):
            return str(ROOT / "hub/static/js" / path[len("/js/") :])
        if path.startswith("/tests/"):
            return str(ROOT / "tests/browser/js" / path[len("/tests/") :])
        return str(ROOT / "tests/browser/js/blank.html")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_static() -> Iterator[str]:
    """An HTTP origin on 127.0.0.1 (a secure context) serving the module and the helpers
    (also used by ``make bench``: tests/benchmarks/bench_browser.py)."""
    handler = functools.partial(_StaticHandler)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def static_origin() -> Iterator[str]:
    """The static origin for the session's module tests."""
    with serve_static() as origin:
        yield origin


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session's module tests."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


class Module:
    """Calls into ``tests/browser/js/harness.js`` (which imports the module) inside Chromium."""

    def __init__(self, driver: webdriver.Chrome, origin: str) -> None:
        self.driver = driver
        self.origin = origin
        driver.get(f"{origin}/")

    def __call__(self, function: str, *args: Any) -> Any:
        """``harness[function](...args)`` awaited in the page; JSON in, JSON out. A thrown
        ExchangeError comes back as ``{"error": code}``, anything else fails the test."""
        result = self.driver.execute_async_script(
            """
            const [name, args, done] = [arguments[0], arguments[1], arguments[2]];
            import('/tests/harness.js')
              .then((h) => h[name](...JSON.parse(args)))
              .then((value) => done(JSON.stringify({ value: value === undefined ? null : value })))
              .catch((e) => done(JSON.stringify(
                e && e.name === 'ExchangeError' ? { value: { error: e.code, kind: e.kind } }
                                               : { crash: String(e && e.stack || e) })));
            """,
            function,
            json.dumps(args),
        )
        answer = json.loads(result)
        if "crash" in answer:
            raise AssertionError(f"{function} crashed in the browser: {answer['crash']}")
        return answer["value"]


@pytest.fixture
def module(chromium: webdriver.Chrome, static_origin: str) -> Module:
    """The module's harness in the session's Chromium."""
    return Module(chromium, static_origin)


AXE = ROOT / "tests/browser/node_modules/axe-core/axe.min.js"


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The serious and critical accessibility violations axe-core finds in the current page
    (axe-core from the npm registry, installed by ``make browser-tools``)."""
    if not AXE.exists():
        message = "axe-core is not installed: run `make browser-tools`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # WebDriver's script injection is not subject to the page's CSP: the hub's pages are
    # checked exactly as served.
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    found = json.loads(
        driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ["violations"] })
              .then((r) => done(JSON.stringify(r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) })))))
              .catch((e) => done(JSON.stringify([{ id: "axe-crashed", impact: "critical",
                                                   help: String(e), nodes: [] }])));
            """
        )
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]
