"""Operators' audit commands: checkpoints (beat task and CLI), export, offline verification, retention."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flask import Flask

from audit.events import Action
from hub.tasks import prune_audit_log, sign_checkpoint, sign_checkpoint_if_grown
from tests.conftest import Account, FakeClock, login


def _verify(directory: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit.verify", str(directory), "--key", key],
        capture_output=True,
        text=True,
    )


def test_the_beat_task_signs_a_checkpoint_only_when_events_arrived(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    login(app.test_client(), clock, territory["cpip"])
    with app.app_context():
        assert sign_checkpoint.run() is True
        assert sign_checkpoint.run() is False  # nothing new: no new checkpoint
        login(app.test_client(), clock, territory["cpip"])
        assert sign_checkpoint.run() is True
    assert len(state.audit_log.checkpoints()) == 2


def test_export_then_offline_verification_detects_an_edit(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path
) -> None:
    for who in ("cpip", "admin", "dpo"):
        login(app.test_client(), clock, territory[who])
    runner = app.test_cli_runner()
    out = tmp_path / "export"
    result = runner.invoke(args=["audit", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    key = result.output.split("--key '", 1)[1].split("'", 1)[0]
    state = app.extensions["maillon"]
    events = list(state.audit_log.events(0, state.audit_log.size()))
    assert events[-1].action == Action.AUDIT_EXPORT  # the export itself is on record
    ok = _verify(out, key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Someone edits event 1 in the export: the verifier names index 1.
    lines = (out / "events.jsonl").read_text().splitlines()
    edited = json.loads(lines[1])
    edited["actor_user"] = "someone-else"
    lines[1] = json.dumps(edited, separators=(",", ":"), sort_keys=True)
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")
    bad = _verify(out, key)
    assert bad.returncode == 1 and "first bad index: 1" in bad.stdout + bad.stderr


def test_export_refuses_a_non_empty_directory(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    result = app.test_cli_runner().invoke(args=["audit", "export", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "n'est pas vide" in result.output
    assert (tmp_path / "x").read_text() == "keep me"


def test_retention_prunes_old_events_and_the_rest_still_verifies(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path
) -> None:
    state = app.extensions["maillon"]
    login(app.test_client(), clock, territory["cpip"])
    old_size = state.audit_log.size()
    # Far enough that every earlier event is past retention, including those other tests of
    # the session appended with a clock moved months ahead (the PostgreSQL log is shared).
    clock.advance(days=3000)
    login(app.test_client(), clock, territory["cpip"])
    with app.app_context():
        cut = prune_audit_log.run()
        sign_checkpoint_if_grown()  # the prune signed its own checkpoint; this one may be a no-op
    assert cut >= old_size
    remaining = list(state.audit_log.events(cut, state.audit_log.size()))
    assert any(e.action == Action.AUDIT_PRUNE for e in remaining)
    result = app.test_cli_runner().invoke(args=["audit", "export", "--out", str(tmp_path / "e")])
    key = result.output.split("--key '", 1)[1].split("'", 1)[0]
    assert _verify(tmp_path / "e", key).returncode == 0
