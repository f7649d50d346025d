"""Export and offline verification: a clean export passes; each kind of tampering is caught
at the exact index; forged checkpoints and truncation are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, NoteSigner
from audit.errors import TamperingDetected, UnreadableExport
from audit.events import Event
from audit.export import export_log
from audit.export_format import CHECKPOINTS, EVENTS, LEAVES, MANIFEST
from audit.merkle import leaf_hash, tree_root
from audit.store import AuditLog
from audit.verify import main, verify_export
from tests.unit.audit.conftest import view

N = 40


@pytest.fixture
def exported(log: AuditLog, signer: NoteSigner, tmp_path: Path) -> Path:
    # Given a log with checkpoints at 10, 25 and 40 events, exported
    for stop in (10, 25, N):
        log.append_many([view(i) for i in range(log.size(), stop)])
        log.checkpoint(signer)
    out = tmp_path / "export"
    export_log(log, out, verifier=signer.verifier())
    return out


def lines(directory: Path) -> list[bytes]:
    return (directory / EVENTS).read_bytes().splitlines(keepends=True)


def write_lines(directory: Path, new: list[bytes]) -> None:
    (directory / EVENTS).write_bytes(b"".join(new))


def rewrite_leaves(directory: Path) -> None:
    """A careful attacker recomputes the recorded leaf hashes too."""
    leaves = b"".join(leaf_hash(line[:-1]) for line in lines(directory))
    (directory / LEAVES).write_bytes(leaves)


def first_bad(directory: Path, signer: NoteSigner, **kw: object) -> int | None:
    with pytest.raises(TamperingDetected) as info:
        verify_export(directory, trusted_key=signer.verifier().vkey(), **kw)  # type: ignore[arg-type]
    return info.value.index


def test_clean_export_verifies(exported: Path, log: AuditLog, signer: NoteSigner) -> None:
    report = verify_export(exported, trusted_key=signer.verifier().vkey())
    assert (report.first_seq, report.size) == (0, N)
    assert report.root == log.root()
    assert report.checkpoints_verified == 3 and report.latest_checkpoint == N
    assert report.unsigned_tail == 0 and report.warnings == ()
    # Every line is the canonical encoding of the stored event.
    assert [Event.from_canonical(line[:-1]) for line in lines(exported)] == list(log.events())
    assert tree_root(line[:-1] for line in lines(exported)) == log.root()


def test_edited_event_is_named(exported: Path, signer: NoteSigner) -> None:
    events = lines(exported)
    events[17] = events[17].replace(b'"actor_user":"u-0001"', b'"actor_user":"u-0666"')
    write_lines(exported, events)
    assert first_bad(exported, signer) == 17


def test_edited_event_with_forged_leaf_hashes_is_located_by_checkpoints(
    exported: Path, signer: NoteSigner
) -> None:
    events = lines(exported)
    events[17] = events[17].replace(b'"actor_user":"u-0001"', b'"actor_user":"u-0666"')
    write_lines(exported, events)
    rewrite_leaves(exported)
    # Only the signed checkpoints bind the content now: 17 lies in [10, 25).
    assert first_bad(exported, signer) == 10


def test_deleted_event_is_named(exported: Path, signer: NoteSigner) -> None:
    events = lines(exported)
    del events[12]
    write_lines(exported, events)
    assert first_bad(exported, signer) == 12


def test_deleted_and_renumbered_event_is_named(exported: Path, signer: NoteSigner) -> None:
    # The attacker renumbers every later event so that seq stays continuous.
    events = [Event.from_canonical(line[:-1]) for line in lines(exported)]
    del events[12]
    renumbered = [replace(e, seq=i) for i, e in enumerate(events)]
    write_lines(exported, [e.canonical() + b"\n" for e in renumbered])
    assert first_bad(exported, signer) == 12


def test_inserted_event_is_named(exported: Path, signer: NoteSigner) -> None:
    events = lines(exported)
    events.insert(30, events[29])
    write_lines(exported, events)
    assert first_bad(exported, signer) == 30


def test_reordered_events_are_named(exported: Path, signer: NoteSigner) -> None:
    events = lines(exported)
    events[5], events[6] = events[6], events[5]
    write_lines(exported, events)
    assert first_bad(exported, signer) == 5


def test_truncation_after_a_checkpoint_is_detected(exported: Path, signer: NoteSigner) -> None:
    # The attacker drops the last events, their leaf hashes, and fixes the manifest.
    write_lines(exported, lines(exported)[:33])
    (exported / LEAVES).write_bytes((exported / LEAVES).read_bytes()[: 33 * 32])
    manifest = json.loads((exported / MANIFEST).read_text())
    manifest["size"] = 33
    (exported / MANIFEST).write_text(json.dumps(manifest))
    assert first_bad(exported, signer) == 33


def test_truncation_with_checkpoints_removed_is_caught_by_a_kept_checkpoint(
    exported: Path, signer: NoteSigner, log: AuditLog
) -> None:
    kept = log.latest_checkpoint()
    assert kept is not None
    write_lines(exported, lines(exported)[:20])
    (exported / LEAVES).write_bytes((exported / LEAVES).read_bytes()[: 20 * 32])
    (exported / CHECKPOINTS).write_text(
        "".join(json.dumps(n) + "\n" for n in log.checkpoints() if int(n.split("\n")[1]) <= 20)
    )
    manifest = json.loads((exported / MANIFEST).read_text())
    manifest["size"] = 20
    (exported / MANIFEST).write_text(json.dumps(manifest))
    assert first_bad(exported, signer, extra_checkpoints=[kept]) == 20


def test_forged_checkpoint_signature_is_refused(exported: Path, signer: NoteSigner) -> None:
    # Given an attacker who rewrote history and signs a checkpoint with their own key under
    # the log's name
    forger = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    notes = [json.loads(x) for x in (exported / CHECKPOINTS).read_text().splitlines()]
    cp = signer.verifier().verify_checkpoint(notes[-1])
    forged = forger.sign_checkpoint(Checkpoint(cp.origin, cp.size, b"\x00" * 32, cp.time))
    notes[-1] = str(forged).replace(forger.key_id.hex(), "")
    (exported / CHECKPOINTS).write_text("".join(json.dumps(n) + "\n" for n in notes))
    assert first_bad(exported, signer) is None


def test_altered_checkpoint_text_is_refused(exported: Path, signer: NoteSigner) -> None:
    notes = [json.loads(x) for x in (exported / CHECKPOINTS).read_text().splitlines()]
    head, _, rest = notes[1].partition("\n")
    size, _, rest = rest.partition("\n")
    notes[1] = f"{head}\n{int(size) - 1}\n{rest}"
    (exported / CHECKPOINTS).write_text("".join(json.dumps(n) + "\n" for n in notes))
    assert first_bad(exported, signer) is None


def test_export_key_swap_is_refused_when_the_key_is_pinned(
    exported: Path, signer: NoteSigner
) -> None:
    # Given an attacker who rewrites an event, recomputes everything and re-signs every
    # checkpoint with their own key, shipping that key in the export
    events = [Event.from_canonical(line[:-1]) for line in lines(exported)]
    events[3] = replace(events[3], object_id="C-9999")
    write_lines(exported, [e.canonical() + b"\n" for e in events])
    rewrite_leaves(exported)
    other = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    notes = [json.loads(x) for x in (exported / CHECKPOINTS).read_text().splitlines()]
    resigned = []
    for note in notes:
        cp = signer.verifier().verify_checkpoint(note)
        root = tree_root(e.canonical() for e in events[: cp.size])
        resigned.append(str(other.sign_checkpoint(Checkpoint(cp.origin, cp.size, root, cp.time))))
    (exported / CHECKPOINTS).write_text("".join(json.dumps(n) + "\n" for n in resigned))
    (exported / "log.vkey").write_text(other.verifier().vkey())
    # Then trusting the export's own key is fooled (and says so in a warning)
    report = verify_export(exported)
    assert any("pin" in w for w in report.warnings)
    # But a verifier with the pinned key refuses every checkpoint
    assert first_bad(exported, signer) is None


def test_unreadable_export(tmp_path: Path) -> None:
    with pytest.raises(UnreadableExport):
        verify_export(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": "something-else"}')
    with pytest.raises(UnreadableExport):
        verify_export(tmp_path)


def test_cli_exit_codes(exported: Path, signer: NoteSigner, tmp_path: Path) -> None:
    key_file = tmp_path / "log.key"
    key_file.write_text(signer.verifier().vkey())
    assert main([str(exported), "--key", f"@{key_file}"]) == 0
    events = lines(exported)
    events[3] = events[3].replace(b"case.view", b"form.open")
    write_lines(exported, events)
    assert main([str(exported), "--key", f"@{key_file}"]) == 1
    assert main([str(tmp_path / "missing")]) == 2


def test_cli_runs_as_a_module_without_the_hub(exported: Path, signer: NoteSigner) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, audit.verify as v; "
            "rc = v.main(sys.argv[1:]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'hub', 'consent', 'exchange', 'sqlalchemy')]; "
            "print('IMPORTED', bad); sys.exit(rc)",
            str(exported),
            "--key",
            signer.verifier().vkey(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout
    assert "IMPORTED []" in result.stdout
