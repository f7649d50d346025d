"""`make run`'s last step: `flask --app hub serve` serves the hub with a real Celery worker and
beat, and an interrupt (Ctrl-C) stops all of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.http_helpers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_serve_runs_web_worker_and_beat_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    env = dict(os.environ, MAILLON_VAR_DIR=str(tmp_path / "var"), MAILLON_ENV="development")
    # The test machine's free disk is not this test's business (tested in test_audit_flooding).
    env["MAILLON_AUDIT_FREE_SPACE_WARN_MB"] = "1"
    for name in [
        k
        for k in env
        if k.startswith("MAILLON_")
        and k not in {"MAILLON_VAR_DIR", "MAILLON_ENV", "MAILLON_AUDIT_FREE_SPACE_WARN_MB"}
    ]:
        env.pop(name)
    flask = [str(BIN / "flask"), "--app", "hub"]
    subprocess.run([*flask, "init-db"], env=env, cwd=ROOT, check=True, capture_output=True)
    demo = [*flask, "demo", "--out", str(tmp_path / "accounts.json")]
    subprocess.run(demo, env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [*flask, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=5
                ) as response:
                    health = json.load(response)
            except OSError:
                time.sleep(0.3)
        assert health == {
            "status": "ok",
            "checks": {"database": "ok", "audit": "ok", "broker": "ok", "audit_space": "ok"},
        }, (tmp_path / "serve.log").read_text()[-3000:]
        children = _children(server.pid)
        assert len(children) == 2  # the Celery worker and beat
        # The beat catches up at start: the demo's release alert is mailed without waiting an
        # hour (the sweep ran on the worker, which then mailed its notifications)
        outbox = tmp_path / "var" / "outbox"
        deadline = time.monotonic() + 120  # a loaded machine: the worker starts slowly
        while time.monotonic() < deadline and not list(outbox.glob("*.eml")):
            time.sleep(0.5)
        mails = [p.read_text(encoding="utf-8") for p in outbox.glob("*.eml")]
        assert mails, (tmp_path / "serve.log").read_text()[-3000:]
        assert any("/notifications" in m for m in mails)
        # Ctrl-C: the terminal sends SIGINT to the whole foreground process group
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait(timeout=40) == 0
        for child in children:
            assert (
                not Path(f"/proc/{child}").exists()
                or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
            )
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    assert "Maillon est arrêté." in (tmp_path / "serve.log").read_text()
