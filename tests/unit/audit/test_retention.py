"""Retention prunes old events, records a signed segment, and the remainder still verifies."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit.checkpoint import NoteSigner, Segment
from audit.errors import AuditError, TamperingDetected
from audit.events import Action
from audit.export import export_log
from audit.export_format import EVENTS, LEAVES, MANIFEST, SEGMENT
from audit.merkle import Frontier, verify_inclusion
from audit.retention import prune
from audit.store import AuditLog
from audit.verify import verify_export
from tests.unit.audit.conftest import Clock, view


@pytest.fixture
def aged_log(log: AuditLog, clock: Clock, signer: NoteSigner) -> AuditLog:
    # Given 30 events 400 days old, with checkpoints, then 10 recent ones
    log.append_many([view(i) for i in range(15)])
    log.checkpoint(signer)
    log.append_many([view(i) for i in range(15, 30)])
    log.checkpoint(signer)
    clock.advance(timedelta(days=400))
    log.append_many([view(i) for i in range(30, 40)])
    log.checkpoint(signer)
    return log


def test_prune_deletes_old_events_and_logs_itself(aged_log: AuditLog, signer: NoteSigner) -> None:
    root_at_cut = aged_log.root(30)
    result = prune(aged_log, signer, actor_user="u-dpo", actor_org="org-ville")
    assert result is not None
    assert (result.cut, result.deleted) == (30, 30)
    remaining = list(aged_log.events())
    assert [e.seq for e in remaining] == list(range(30, 41))
    assert remaining[-1].action is Action.AUDIT_PRUNE and remaining[-1].object_id == "30"
    assert remaining[-1] == result.prune_event
    # The tree is intact: old roots and proofs for remaining events still work.
    assert aged_log.size() == 41 and aged_log.root(30) == root_at_cut
    verify_inclusion(
        remaining[0].leaf_hash(), 30, 41, aged_log.inclusion_proof(30, 41), aged_log.root()
    )
    # And nothing more to prune right away.
    assert prune(aged_log, signer) is None


def test_pruned_export_verifies_from_the_segment(
    aged_log: AuditLog, signer: NoteSigner, tmp_path: Path
) -> None:
    prune(aged_log, signer)
    out = tmp_path / "x"
    export_log(aged_log, out, verifier=signer.verifier())
    report = verify_export(out, trusted_key=signer.verifier().vkey())
    assert (report.first_seq, report.size) == (30, 41)
    assert report.root == aged_log.root()
    assert report.skipped_before_cut == 1  # the one at size 15; the one at 30 is checked
    # Tampering in the remainder is still named.
    lines = (out / EVENTS).read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"C-0033", b"C-0099")
    (out / EVENTS).write_bytes(b"".join(lines))
    with pytest.raises(TamperingDetected) as info:
        verify_export(out, trusted_key=signer.verifier().vkey())
    assert info.value.index == 33


def test_a_deletion_dressed_up_as_a_prune_is_refused(
    aged_log: AuditLog, signer: NoteSigner, tmp_path: Path
) -> None:
    # Given an honest export (never pruned) and an attacker who deletes its first 15 events,
    # reusing the genuine signed checkpoint at size 15 as a fake retention segment
    out = tmp_path / "x"
    export_log(aged_log, out, verifier=signer.verifier())
    note15 = next(n for n in aged_log.checkpoints() if n.split("\n")[1] == "15")
    segment = Segment(15, tuple(aged_log.frontier(15)), note15)
    (out / SEGMENT).write_text(json.dumps(segment.to_json()))
    lines = (out / EVENTS).read_bytes().splitlines(keepends=True)
    (out / EVENTS).write_bytes(b"".join(lines[15:]))
    (out / LEAVES).write_bytes((out / LEAVES).read_bytes()[15 * 32 :])
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["first_seq"] = 15
    (out / MANIFEST).write_text(json.dumps(manifest))
    # Then the verifier finds no signed audit.prune event for that cut
    with pytest.raises(TamperingDetected, match=r"audit\.prune"):
        verify_export(out, trusted_key=signer.verifier().vkey())


def test_recent_events_cannot_be_deleted_even_after_a_prune(
    aged_log: AuditLog, signer: NoteSigner
) -> None:
    prune(aged_log, signer)
    with pytest.raises(DBAPIError), aged_log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 35"))
    with pytest.raises(DBAPIError), aged_log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_segments"))
    assert aged_log.size() == 41 and len(list(aged_log.events())) == 11


def test_segment_frontier_matches_the_tree(aged_log: AuditLog, signer: NoteSigner) -> None:
    result = prune(aged_log, signer)
    assert result is not None
    frontier = aged_log.frontier(30)
    assert Frontier(30, frontier).root() == aged_log.root(30)


def test_retention_must_be_positive(log: AuditLog, signer: NoteSigner) -> None:
    with pytest.raises(AuditError):
        prune(log, signer, retention=timedelta(0))
