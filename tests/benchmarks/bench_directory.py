"""Key directory sync (DESIGN §6.3, issue 10 point 10): a client's verified replica of 10,000
device keys, every figure beside a same-run baseline.

The log is built on the hub's own code and store: :class:`exchange.server.directory.DirectoryLog`
on a migrated SQLite database appends 10,000 ``key.add`` entries (fresh Ed25519 + X25519 device
keys, ten per owner), each with its tree nodes and a signed checkpoint. Then:

- **full sync**: a new client reads the entries in pages of 1,000 from the store
  (:meth:`DirectoryLog.entries`, what ``GET /api/v1/annuaire/entrees`` serves) and the latest
  signed checkpoint, and :meth:`exchange.directory.Directory.update` verifies them: checkpoint
  signature, each entry strictly read (canonical JSON, device record, key id recomputed), the
  key history applied, and the Merkle root over every leaf equal to the signed one — the proof
  that these are the entries the hub signed. Reported in keys/s;
- the client's verification alone (the same, the entries already in memory);
- **incremental sync**: a replica of 10,000 keys takes 10 new ones;
- **a sender's checkpoint checked** against a replica of 10,000 keys
  (:meth:`Directory.check_peer`, which every recipient runs when it opens a form).

Baseline of the first two: a plain SHA-256 pass over the same entry bytes, one hash per entry —
the least any client that checks entries against a signed tree must do (the leaf hashes alone),
as the audit log's verification figure is read (bench_audit). For the last two: what the same
check costs with RFC 6962 proofs from the hub instead of a recomputed root — a consistency proof
between the two sizes verified, plus the 10 new entries read and hashed; an inclusion proof of
one key verified against the sender's root. No target is set for these in DESIGN §11: they are
reported. No assertion on time anywhere.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from audit import merkle
from audit.checkpoint import NoteSigner
from exchange.directory import Directory, key_added, parse_entry
from exchange.keys import DeviceSecrets
from exchange.server.directory import MAX_ENTRIES_PER_PAGE, DirectoryLog
from hub.db import make_engine
from hub.migrate import upgrade
from tests.benchmarks.common import Result, alternate, ratios, spread

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NEW_KEYS = 10


def _clock() -> Callable[[], datetime]:
    state = {"t": T0}

    def now() -> datetime:
        state["t"] += timedelta(milliseconds=1)
        return state["t"]

    return now


def _entries(count: int, start: int = 0) -> list[bytes]:
    """``count`` ``key.add`` entries of fresh device keys, ten per owner, forty organisations."""
    return [
        key_added(
            DeviceSecrets.generate().public,
            owner=f"client:banc-{i // 10:06d}",
            org=f"org-{i % 40:02d}",
            now=T0 + timedelta(seconds=i),
        )
        for i in range(start, start + count)
    ]


def _append(log: DirectoryLog, session: Session, entries: list[bytes]) -> float:
    """Append ``entries`` through the hub's log, committing every 500; seconds taken."""
    start = time.perf_counter()
    for i, entry in enumerate(entries, 1):
        log.append(entry)
        if i % 500 == 0:
            session.commit()
    session.commit()
    return time.perf_counter() - start


def _fetch(log: DirectoryLog, start: int = 0) -> tuple[list[bytes], str]:
    """Every entry from ``start`` in pages, and the latest checkpoint, as a client gets them."""
    size = log.size()
    note = log.checkpoint()
    entries: list[bytes] = []
    for page in range(start, size, MAX_ENTRIES_PER_PAGE):
        entries.extend(log.entries(page, min(page + MAX_ENTRIES_PER_PAGE, size)))
    return entries, note


def _median_seconds(fn: Callable[[], object], calls: int) -> float:
    times: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool) -> list[Result]:
    """Build a directory of 10,000 keys (200 in quick mode) and measure its sync."""
    n = 200 if quick else 10_000
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-directory-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'maillon.sqlite'}")
        upgrade(engine)
        signer = NoteSigner("bench.test/cles", Ed25519PrivateKey.generate())
        vkey = signer.verifier().vkey()
        try:
            with sessionmaker(engine)() as session:
                log = DirectoryLog(session, clock=_clock(), signer=signer)
                entries = _entries(n)
                built = _append(log, session, entries)
                print(
                    f"  hub side: {n:,} key.add entries appended (tree nodes, signed checkpoint "
                    f"each) in {built:.1f} s, {n / built:,.0f} keys/s"
                )
                return _measure(log, session, vkey, entries, rounds=rounds)
        finally:
            engine.dispose()


def _measure(
    log: DirectoryLog, session: Session, vkey: str, entries: list[bytes], *, rounds: int
) -> list[Result]:
    n = len(entries)
    sha = hashlib.sha256

    def plain_pass() -> None:
        for entry in entries:
            sha(entry).digest()

    def timed_rate(fn: Callable[[], object]) -> Callable[[int], float]:
        def measure(_round: int) -> float:
            start = time.perf_counter()
            fn()
            return n / (time.perf_counter() - start)

        return measure

    fetched, note = _fetch(log)
    assert fetched == entries
    replica = Directory.empty(vkey).update(fetched, note)
    assert replica.size == n
    full = alternate(
        {
            "baseline": timed_rate(plain_pass),
            "sync": timed_rate(lambda: Directory.empty(vkey).update(*_fetch(log))),
            "verify": timed_rate(lambda: Directory.empty(vkey).update(fetched, note)),
        },
        rounds=rounds,
    )
    print(f"  plain SHA-256 per round:   {spread(full['baseline'], ',.0f')} entries/s")
    print(f"  full sync per round:       {spread(full['sync'], ',.0f')} keys/s")
    print(f"  client verify per round:   {spread(full['verify'], ',.0f')} keys/s")
    print(
        f"  ratio per round: sync {spread(ratios(full['sync'], full['baseline']))}, "
        f"verify {spread(ratios(full['verify'], full['baseline']))}"
    )
    breakdown = _verify_parts(fetched, note, replica)
    print("  where the client's verification goes (ms for the whole directory, one pass):")
    for part, millis in breakdown:
        print(f"    {part:<58} {millis:9.1f}")

    # Ten more keys on the hub, then the two incremental checks.
    old_size, old_root = n, replica.root_at(n)
    new_entries = _entries(NEW_KEYS, start=n)
    _append(log, session, new_entries)
    new_note = log.checkpoint()
    new_root = replica.verifier.verify_checkpoint(new_note).root
    proof = log.consistency_proof(old_size, old_size + NEW_KEYS)
    calls = 5 if n < 1000 else 20
    incremental = _median_seconds(lambda: replica.update(new_entries, new_note), calls)

    def with_proof() -> None:
        for entry in new_entries:
            parse_entry(entry)
        merkle.verify_consistency(old_size, old_size + NEW_KEYS, old_root, new_root, proof)
        replica.verifier.verify_checkpoint(new_note)

    proven = _median_seconds(with_proof, calls)
    peer = replica.check_peer(note)  # the sender saw the directory at n keys
    index = n // 3
    inclusion = log.inclusion_proof(index, n)
    leaf = merkle.leaf_hash(entries[index])
    peer_check = _median_seconds(lambda: replica.check_peer(note), calls)

    def inclusion_check() -> None:
        replica.verifier.verify_checkpoint(note)
        merkle.verify_inclusion(leaf, index, n, inclusion, peer.root)

    proof_check = _median_seconds(inclusion_check, calls)
    median = statistics.median
    return [
        Result(f"directory full sync, {n:,} keys (median, {rounds} rounds)",
               median(full["sync"]), "keys/s", "plain SHA-256 pass over the entries",
               median(full["baseline"]), "reported (no target in DESIGN §11)",
               rounds=tuple(full["sync"]), baseline_rounds=tuple(full["baseline"])),
        Result(f"directory verification alone, {n:,} keys",
               median(full["verify"]), "keys/s", "plain SHA-256 pass over the entries",
               median(full["baseline"]), "reported"),
        Result(f"incremental sync, {NEW_KEYS} new keys onto {n:,}", incremental * 1e3, "ms",
               "consistency proof + the new entries read", proven * 1e3, "reported",
               higher_is_better=False),
        Result(f"sender's checkpoint check_peer at {n:,} keys", peer_check * 1e3, "ms",
               "inclusion proof verified + checkpoint", proof_check * 1e3, "reported",
               higher_is_better=False),
    ]  # fmt: skip


def _verify_parts(entries: list[bytes], note: str, replica: Directory) -> list[tuple[str, float]]:
    """Milliseconds spent in each step of verifying the whole directory, measured apart."""
    start = time.perf_counter()
    leaves = [merkle.leaf_hash(e) for e in entries]
    hashed = time.perf_counter() - start
    start = time.perf_counter()
    for entry in entries:
        parse_entry(entry)
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    root = merkle.root_from_leaf_hashes(leaves)
    rooted = time.perf_counter() - start
    assert root == replica.root_at(replica.size)
    start = time.perf_counter()
    replica.verifier.verify_checkpoint(note)
    signed = time.perf_counter() - start
    return [
        ("entries read (parse_entry: JSON, canonical form, key record)", parsed * 1e3),
        ("leaf hashes", hashed * 1e3),
        ("Merkle root over the leaves", rooted * 1e3),
        ("checkpoint signature", signed * 1e3),
    ]
