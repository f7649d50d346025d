"""The offline verifier and witnesses, forks and kept trees (issue 10 §7).

- ``--witness-key``: which checkpoints carry a valid cosignature; one that does not verify
  fails the export;
- forks: two checkpoints of one size with different roots, or a kept checkpoint that is not a
  prefix of the exported tree;
- a history rewritten and re-signed by whoever holds the log's key is named at the exact
  event when leaf hashes were kept from an earlier export (``--keep`` / ``--kept-export``),
  and bounded honestly when only roots were kept.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, Cosigner, NoteSigner, SignatureLine, SignedNote
from audit.errors import ForkDetected, TamperingDetected, UnreadableExport
from audit.events import Event
from audit.export import export_log
from audit.export_format import CHECKPOINTS, EVENTS, LEAVES, SEGMENT
from audit.merkle import Frontier, leaf_hash, tree_root
from audit.retention import prune
from audit.store import AuditLog
from audit.verify import KEPT_FILES, keep_export, load_kept, main, verify_export
from tests.unit.audit.conftest import Clock, view

N = 40


@pytest.fixture
def partner() -> Cosigner:
    return Cosigner("partner.test/witness", Ed25519PrivateKey.generate())


def cosign_latest(log: AuditLog, *cosigners: Cosigner, clock: Clock) -> None:
    note = log.latest_checkpoint()
    assert note is not None
    for cosigner in cosigners:
        line = cosigner.cosign(SignedNote.parse(note).text, clock()).text()
        assert log.add_cosignature(note, line)


@pytest.fixture
def history(
    log: AuditLog,
    signer: NoteSigner,
    cosigner: Cosigner,
    partner: Cosigner,
    clock: Clock,
    tmp_path: Path,
) -> tuple[Path, Path]:
    """The DPO's kept tree of the log at 25 events (cosigned by the DPO's witness), and a
    later export at 40 events: checkpoints at 10, 25 and 40; the DPO's witness cosigned all
    three, the partner's the last one."""
    for witness in (cosigner, partner):
        log.add_witness(witness.verifier().vkey())
    for stop in (10, 25):
        log.append_many([view(i) for i in range(log.size(), stop)])
        log.checkpoint(signer)
        cosign_latest(log, cosigner, clock=clock)
    earlier = tmp_path / "export-25"
    export_log(log, earlier, verifier=signer.verifier())
    kept = tmp_path / "kept-25"
    assert main([str(earlier), "--key", signer.verifier().vkey(), "--keep", str(kept)]) == 0
    log.append_many([view(i) for i in range(25, N)])
    log.checkpoint(signer)
    cosign_latest(log, cosigner, partner, clock=clock)
    later = tmp_path / "export-40"
    export_log(log, later, verifier=signer.verifier())
    return kept, later


def notes(directory: Path) -> list[str]:
    return [json.loads(x) for x in (directory / CHECKPOINTS).read_text().splitlines()]


def write_notes(directory: Path, new: list[str]) -> None:
    (directory / CHECKPOINTS).write_text("".join(json.dumps(n) + "\n" for n in new))


def events(directory: Path) -> list[Event]:
    return [Event.from_canonical(x) for x in (directory / EVENTS).read_bytes().splitlines()]


def rewrite_and_resign(
    directory: Path, signer: NoteSigner, edit: Callable[[list[Event]], list[Event]]
) -> None:
    """Whoever holds the log's key rewrites history and recomputes everything: events, leaf
    hashes, and every checkpoint re-signed (the witnesses' cosignatures cannot be forged, so
    they are dropped)."""
    new = edit(events(directory))
    (directory / EVENTS).write_bytes(b"".join(e.canonical() + b"\n" for e in new))
    (directory / LEAVES).write_bytes(b"".join(e.leaf_hash() for e in new))
    resigned = []
    for note in notes(directory):
        cp = signer.verifier().verify_checkpoint(note)
        root = tree_root(e.canonical() for e in new[: cp.size])
        resigned.append(str(signer.sign_checkpoint(Checkpoint(cp.origin, cp.size, root, cp.time))))
    write_notes(directory, resigned)


def rewrite(index: int) -> Callable[[list[Event]], list[Event]]:
    def edit(old: list[Event]) -> list[Event]:
        old[index] = replace(old[index], object_id="C-9999")
        return old

    return edit


def verify(directory: Path, signer: NoteSigner, **kw: object) -> object:
    return verify_export(directory, trusted_key=signer.verifier().vkey(), **kw)  # type: ignore[arg-type]


def refused(directory: Path, signer: NoteSigner, **kw: object) -> TamperingDetected:
    with pytest.raises(TamperingDetected) as info:
        verify(directory, signer, **kw)
    return info.value


# -- witnesses -------------------------------------------------------------------------------


def test_the_report_says_which_checkpoints_each_witness_cosigned(
    history: tuple[Path, Path], signer: NoteSigner, cosigner: Cosigner, partner: Cosigner
) -> None:
    _kept, later = history
    keys = [cosigner.verifier().vkey(), partner.verifier().vkey()]
    report = verify_export(later, trusted_key=signer.verifier().vkey(), witness_keys=keys)
    assert report.witnesses == ("dpo.test/witness", "partner.test/witness")
    assert [(c.size, c.witnesses) for c in report.cosignatures] == [
        (10, ("dpo.test/witness",)),
        (25, ("dpo.test/witness",)),
        (40, ("dpo.test/witness", "partner.test/witness")),
    ]
    assert report.warnings == ()
    # Only one key given: the other witness's lines are named as unchecked, not trusted
    report = verify_export(later, trusted_key=signer.verifier().vkey(), witness_keys=keys[1:])
    assert [c.witnesses for c in report.cosignatures] == [(), (), ("partner.test/witness",)]
    assert any("not checked" in w and "dpo.test/witness" in w for w in report.warnings)


def test_a_witness_that_cosigned_nothing_is_warned_about(
    history: tuple[Path, Path], signer: NoteSigner
) -> None:
    stranger = Cosigner("stranger.test/witness", Ed25519PrivateKey.generate())
    report = verify_export(
        history[1],
        trusted_key=signer.verifier().vkey(),
        witness_keys=[stranger.verifier().vkey()],
    )
    assert any("no checkpoint carries a cosignature by stranger" in w for w in report.warnings)


@pytest.mark.parametrize("how", ["flipped", "other_key", "other_body"])
def test_a_cosignature_that_does_not_verify_fails_the_export(
    history: tuple[Path, Path], signer: NoteSigner, cosigner: Cosigner, clock: Clock, how: str
) -> None:
    _kept, later = history
    exported = notes(later)
    note = SignedNote.parse(exported[1])
    line = note.signatures[1]
    if how == "flipped":
        signature = bytearray(line.signature)
        signature[20] ^= 1
        bad = SignatureLine(line.name, line.key_id, bytes(signature))
    elif how == "other_key":  # the witness's name and key ID, someone else's key
        thief = Cosigner(cosigner.name, Ed25519PrivateKey.generate())
        bad = replace(thief.cosign(note.text, clock()), key_id=cosigner.key_id)
    else:  # a genuine cosignature, of another checkpoint
        bad = SignedNote.parse(exported[0]).signatures[1]
    exported[1] = str(SignedNote(note.text, (note.signatures[0], bad)))
    write_notes(later, exported)
    key = cosigner.verifier().vkey()
    problem = refused(later, signer, witness_keys=[key])
    assert not isinstance(problem, ForkDetected)
    assert "cosignature by dpo.test/witness" in str(problem) and "size 25" in str(problem)
    # Without that witness's key, the line is only reported as unchecked
    report = verify(later, signer)
    assert any("not checked" in w for w in report.warnings)  # type: ignore[attr-defined]
    assert main([str(later), "--key", signer.verifier().vkey(), "--witness-key", key]) == 1


# -- forks -----------------------------------------------------------------------------------


def test_two_checkpoints_of_one_size_with_different_roots_are_a_fork(
    history: tuple[Path, Path], signer: NoteSigner, clock: Clock
) -> None:
    _kept, later = history
    # Given a checkpoint of size 25 the key signed over another tree, kept by a partner
    other = str(signer.sign_checkpoint(Checkpoint(signer.name, 25, b"\x07" * 32, clock())))
    # Then it is a fork naming both roots, and the root the export's events give
    problem = refused(later, signer, extra_checkpoints=[other])
    assert isinstance(problem, ForkDetected) and problem.index is None
    message = str(problem)
    assert "two checkpoints of size 25" in message
    genuine = Checkpoint.parse_body(SignedNote.parse(notes(later)[1]).text).root
    assert base64.b64encode(genuine).decode() in message
    assert base64.b64encode(b"\x07" * 32).decode() in message
    assert "--checkpoint #1" in message and "checkpoints.jsonl line 2" in message
    # Also inside the export itself
    write_notes(later, [*notes(later), other])
    assert isinstance(refused(later, signer), ForkDetected)


def test_a_kept_root_that_is_not_a_prefix_of_the_export_is_a_fork_located_as_far_as_roots_go(
    history: tuple[Path, Path], signer: NoteSigner, log: AuditLog
) -> None:
    _kept, later = history
    kept10, kept25 = notes(later)[0], notes(later)[1]
    # Given the log rewritten at event 17 and re-signed with its own key
    rewrite_and_resign(later, signer, rewrite(17))
    # Then a kept root at 25 shows the fork, but a root alone cannot name the event
    problem = refused(later, signer, extra_checkpoints=[kept25])
    assert isinstance(problem, ForkDetected) and problem.index is None
    assert "[0, 25)" in str(problem) and "--kept-export" in str(problem)
    # A kept root at 10 too narrows it to [10, 25): roots bound, they do not name
    problem = refused(later, signer, extra_checkpoints=[kept10, kept25])
    assert "[10, 25)" in str(problem)


@pytest.mark.parametrize("index", [0, 1, 9, 10, 16, 17, 23, 24])
def test_a_rewritten_and_resigned_event_is_named_exactly_from_kept_leaves(
    history: tuple[Path, Path], signer: NoteSigner, index: int
) -> None:
    kept, later = history
    # Given whoever holds the key rewrote event `index` and re-signed every checkpoint
    rewrite_and_resign(later, signer, rewrite(index))
    # Then the export alone looks fine (the key signed it all)…
    verify(later, signer)
    # …but the leaf hashes kept from the earlier export name the event, as a fork
    problem = refused(later, signer, kept_exports=[kept])
    assert isinstance(problem, ForkDetected)
    assert problem.index == index
    assert f"event {index} differs" in str(problem)
    # (a kept checkpoint of the same size, or a larger one the export's tree does not extend)
    assert "two checkpoints of size" in str(problem) or "not a prefix" in str(problem)


def test_a_rewrite_beyond_the_kept_leaves_is_bounded_by_a_kept_cosigned_root(
    history: tuple[Path, Path], signer: NoteSigner
) -> None:
    kept, later = history
    kept40 = notes(later)[2]
    rewrite_and_resign(later, signer, rewrite(31))
    verify(later, signer, kept_exports=[kept])  # the kept leaves stop at 25: nothing to say
    problem = refused(later, signer, kept_exports=[kept], extra_checkpoints=[kept40])
    assert isinstance(problem, ForkDetected) and "[25, 40)" in str(problem)


def test_a_rewrite_not_resigned_is_named_exactly_and_is_no_fork(
    history: tuple[Path, Path], signer: NoteSigner
) -> None:
    kept, later = history
    old = events(later)
    old[17] = replace(old[17], object_id="C-9999")
    (later / EVENTS).write_bytes(b"".join(e.canonical() + b"\n" for e in old))
    (later / LEAVES).write_bytes(b"".join(e.leaf_hash() for e in old))
    assert refused(later, signer).index == 10  # the checkpoints alone: an interval
    problem = refused(later, signer, kept_exports=[kept])
    assert not isinstance(problem, ForkDetected) and problem.index == 17


def test_a_signed_root_over_another_tree_with_genuine_events_is_a_fork(
    history: tuple[Path, Path], signer: NoteSigner, clock: Clock
) -> None:
    kept, later = history
    exported = notes(later)
    cp = Checkpoint.parse_body(SignedNote.parse(exported[1]).text)
    exported[1] = str(
        signer.sign_checkpoint(Checkpoint(cp.origin, cp.size, leaf_hash(b"other"), cp.time))
    )
    write_notes(later, exported)
    assert not isinstance(refused(later, signer), ForkDetected)  # alone: tampering, [10, 25)
    problem = refused(later, signer, kept_exports=[kept])
    assert isinstance(problem, ForkDetected) and "signs another tree" in str(problem)


def test_kept_leaves_do_not_hide_plain_tampering(
    history: tuple[Path, Path], signer: NoteSigner
) -> None:
    kept, later = history
    lines = (later / EVENTS).read_bytes().splitlines(keepends=True)
    lines[12] = lines[12].replace(b"C-0012", b"C-0666")
    (later / EVENTS).write_bytes(b"".join(lines))
    problem = refused(later, signer, kept_exports=[kept])
    assert problem.index == 12 and not isinstance(problem, ForkDetected)


def test_an_honest_later_export_extends_the_kept_tree(
    history: tuple[Path, Path], signer: NoteSigner, cosigner: Cosigner
) -> None:
    kept, later = history
    report = verify_export(
        later,
        trusted_key=signer.verifier().vkey(),
        kept_exports=[kept],
        witness_keys=[cosigner.verifier().vkey()],
    )
    assert report.kept == ((f"kept {kept}", 25),)
    # The kept tree's own (cosigned) checkpoints are reported too
    assert [c.witnesses for c in report.cosignatures if c.where.startswith("kept")] == [
        ("dpo.test/witness",),
        ("dpo.test/witness",),
    ]


def test_a_truncated_export_is_caught_by_the_kept_tree(
    history: tuple[Path, Path], signer: NoteSigner
) -> None:
    kept, later = history
    lines = (later / EVENTS).read_bytes().splitlines(keepends=True)[:20]
    (later / EVENTS).write_bytes(b"".join(lines))
    (later / LEAVES).write_bytes((later / LEAVES).read_bytes()[: 20 * 32])
    write_notes(later, notes(later)[:1])
    manifest = json.loads((later / "manifest.json").read_text())
    manifest["size"] = 20
    (later / "manifest.json").write_text(json.dumps(manifest))
    assert refused(later, signer, kept_exports=[kept]).index == 20


# -- what is kept ------------------------------------------------------------------------------


def test_keep_copies_hashes_and_checkpoints_not_events(
    history: tuple[Path, Path], signer: NoteSigner, tmp_path: Path
) -> None:
    kept, later = history
    assert sorted(p.name for p in kept.iterdir()) == sorted(n for n in KEPT_FILES if n != SEGMENT)
    assert not (kept / EVENTS).exists()
    tree = load_kept(kept, signer.verifier())
    assert (tree.first_seq, tree.size, len(tree.leaves)) == (0, 25, 25 * 32)
    # --keep refuses to write over something
    with pytest.raises(UnreadableExport):
        keep_export(later, kept)


@pytest.mark.parametrize("damage", ["leaf", "short", "note", "no_checkpoint"])
def test_a_kept_tree_that_does_not_hold_together_is_unreadable(
    history: tuple[Path, Path], signer: NoteSigner, damage: str
) -> None:
    kept, later = history
    if damage == "leaf":
        leaves = bytearray((kept / LEAVES).read_bytes())
        leaves[5 * 32] ^= 1
        (kept / LEAVES).write_bytes(bytes(leaves))
    elif damage == "short":
        (kept / LEAVES).write_bytes((kept / LEAVES).read_bytes()[:-1])
    elif damage == "note":
        write_notes(kept, [n.replace("\n25\n", "\n24\n") for n in notes(kept)])
    else:
        write_notes(kept, [])
    with pytest.raises(UnreadableExport):
        verify(later, signer, kept_exports=[kept])
    assert main([str(later), "--key", signer.verifier().vkey(), "--kept-export", str(kept)]) == 2


# -- after retention -------------------------------------------------------------------------


def test_a_kept_tree_checks_the_retention_cut_of_a_later_export(
    log: AuditLog, signer: NoteSigner, clock: Clock, tmp_path: Path
) -> None:
    # Given a kept tree of 30 events, then 400 days, a prune, and an export from the cut
    log.append_many([view(i) for i in range(30)])
    log.checkpoint(signer)
    export_log(log, tmp_path / "early", verifier=signer.verifier())
    keep_export(tmp_path / "early", tmp_path / "kept")
    clock.advance(timedelta(days=400))
    log.append_many([view(i) for i in range(30, 40)])
    log.checkpoint(signer)
    prune(log, signer)
    later = tmp_path / "later"
    export_log(log, later, verifier=signer.verifier())
    # Then the honest export extends what was kept
    report = verify(later, signer, kept_exports=[tmp_path / "kept"])
    assert report.first_seq == 30  # type: ignore[attr-defined]
    # And a retention segment over a rewritten past is a fork, located to the subtree that
    # differs (only the segment's complete subtrees remain of the pruned events)
    segment = json.loads((later / SEGMENT).read_text())
    frontier = [base64.b64decode(h) for h in segment["frontier"]]
    frontier[1] = leaf_hash(b"rewritten")  # the subtree of events [16, 24)
    segment["frontier"] = [base64.b64encode(h).decode() for h in frontier]
    cp = signer.verifier().verify_checkpoint(segment["note"])
    root = Frontier(30, frontier).root()
    segment["note"] = str(signer.sign_checkpoint(Checkpoint(cp.origin, 30, root, cp.time)))
    (later / SEGMENT).write_text(json.dumps(segment))
    write_notes(later, [n for n in notes(later) if "\n30\n" not in n])
    problem = refused(later, signer, kept_exports=[tmp_path / "kept"])
    assert isinstance(problem, ForkDetected)
    assert "[16, 24)" in str(problem) and problem.index is None


# -- command line ----------------------------------------------------------------------------


def test_cli_reports_cosignatures_forks_and_the_first_bad_index(
    history: tuple[Path, Path],
    signer: NoteSigner,
    cosigner: Cosigner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    kept, later = history
    key = tmp_path / "witness.vkey"
    key.write_text(cosigner.verifier().vkey())
    base = [str(later), "--key", signer.verifier().vkey(), "--witness-key", f"@{key}"]
    assert main([*base, "--kept-export", str(kept)]) == 0
    out = capsys.readouterr().out
    # The export's three checkpoints and the kept tree's two, each with who cosigned it
    assert "5 of 5 checkpoints carry a valid cosignature" in out
    assert "size 40" in out and "dpo.test/witness" in out
    assert "witness dpo.test/witness: 5 checkpoints cosigned, the largest at size 40" in out
    assert f"kept {kept}: the export extends the tree kept at size 25" in out
    rewrite_and_resign(later, signer, rewrite(17))
    assert main([*base, "--kept-export", str(kept)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FORK: ") and "first bad index: 17" in out
