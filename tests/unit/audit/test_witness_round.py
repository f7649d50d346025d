"""A witness round over the hub's journal API, against an in-memory hub: an honest log is
cosigned round after round; a forked, rolled-back or lying log is refused and the witness's
state is unchanged; answers the round cannot trust are refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, CosignatureVerifier, Cosigner, NoteSigner, SignedNote
from audit.errors import CosignatureRefused, WitnessError
from audit.merkle import MemoryTree, leaf_hash
from audit.store import AuditLog
from audit.witness import (
    JOURNAL_CHECKPOINT,
    JOURNAL_CONSISTENCY,
    JOURNAL_COSIGNATURES,
    MAX_RESPONSE_BYTES,
    Witness,
    witness_round,
)
from tests.unit.audit.conftest import Clock, view

Answer = tuple[int, bytes]


def _json(status: int, obj: object) -> Answer:
    return status, json.dumps(obj).encode()


class Hub:
    """The journal API of a hub over an audit log, as the witness sees it; ``calls`` lists
    every request, and ``override`` lets a test make the hub answer what it likes."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.calls: list[tuple[str, str]] = []
        self.override: dict[str, Callable[[], Answer]] = {}

    def __call__(self, method: str, path: str, body: bytes | None) -> Answer:
        self.calls.append((method, path))
        route = urlsplit(path).path
        if route in self.override:
            return self.override[route]()
        if method == "GET" and route == JOURNAL_CHECKPOINT:
            return _json(200, {"note": self.log.latest_checkpoint(with_cosignatures=True)})
        if method == "GET" and route == JOURNAL_CONSISTENCY:
            query = parse_qs(urlsplit(path).query)
            old, new = int(query["ancien"][0]), int(query["nouveau"][0])
            proof = self.log.consistency_proof(old, new)
            return _json(200, {"old": old, "new": new, "proof": [_b64(h) for h in proof]})
        if method == "POST" and route == JOURNAL_COSIGNATURES:
            assert body is not None
            posted = json.loads(body)
            try:
                stored = self.log.add_cosignature(posted["checkpoint"], posted["cosignature"])
            except CosignatureRefused as refused:
                return _json(403, {"error": refused.code, "message": "refusé"})
            return _json(201 if stored else 200, {"size": 0, "witness": "w", "stored": stored})
        return _json(404, {"error": "not_found", "message": "?"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def witness(tmp_path: Path, signer: NoteSigner, cosigner: Cosigner, clock: Clock) -> Witness:
    Witness.init(tmp_path / "witness.json", signer.verifier().vkey())
    return Witness(tmp_path / "witness.json", cosigner, clock=clock)


@pytest.fixture
def hub(log: AuditLog, cosigner: Cosigner) -> Hub:
    log.add_witness(cosigner.verifier().vkey())
    return Hub(log)


def grow(log: AuditLog, signer: NoteSigner, stop: int) -> str:
    log.append_many([view(i) for i in range(log.size(), stop)])
    return str(log.checkpoint(signer))


def test_rounds_follow_an_honest_log_and_the_hub_keeps_each_cosignature(
    hub: Hub, log: AuditLog, signer: NoteSigner, cosigner: Cosigner, witness: Witness
) -> None:
    verifier = CosignatureVerifier.from_vkey(cosigner.verifier().vkey())
    # First round: from the empty tree, no proof is needed
    grow(log, signer, 7)
    result = witness_round(witness, hub)
    assert (result.checkpoint.size, result.old_size, result.stored) == (7, 0, True)
    assert [m for m, _ in hub.calls] == ["GET", "POST"]
    # Later rounds prove consistency from what the witness cosigned
    for stop in (8, 30, 64, 65):
        hub.calls.clear()
        previous = witness.state().size
        grow(log, signer, stop)
        result = witness_round(witness, hub)
        assert (result.old_size, result.checkpoint.size, result.stored) == (previous, stop, True)
        assert hub.calls[1] == ("GET", f"{JOURNAL_CONSISTENCY}?ancien={previous}&nouveau={stop}")
        assert witness.state().size == stop and witness.state().root == log.root(stop)
    # Every checkpoint the witness saw carries its cosignature, kept by the hub
    cosigned = [SignedNote.parse(n) for n in log.checkpoints(with_cosignatures=True)]
    assert all(verifier.check(n) is not None for n in cosigned)
    # A round with nothing new cosigns the same tree again; the hub keeps its first line
    again = witness_round(witness, hub)
    assert again.checkpoint.size == 65 and again.stored is False


def test_a_forked_history_is_refused_and_nothing_is_posted(
    hub: Hub, log: AuditLog, signer: NoteSigner, witness: Witness, clock: Clock
) -> None:
    # Given a witness that cosigned the log at 10 events
    grow(log, signer, 10)
    witness_round(witness, hub)
    before = witness.state()
    # When the hub, with its real key, shows a rewritten history of 12 events
    forked = MemoryTree(leaf_hash(bytes([i, 1])) for i in range(12))
    note = str(signer.sign_checkpoint(Checkpoint(signer.name, 12, forked.root(), clock())))
    hub.override[JOURNAL_CHECKPOINT] = lambda: _json(200, {"note": note})
    hub.override[JOURNAL_CONSISTENCY] = lambda: _json(
        200,
        {"old": 10, "new": 12, "proof": [_b64(h) for h in forked.consistency_proof(10, 12)]},
    )
    hub.calls.clear()
    # Then the witness refuses, posts nothing, and still holds the honest tree
    with pytest.raises(WitnessError, match="not consistent"):
        witness_round(witness, hub)
    assert all(method == "GET" for method, _ in hub.calls)
    assert witness.state() == before


def test_a_rollback_and_a_foreign_key_are_refused(
    hub: Hub, log: AuditLog, signer: NoteSigner, witness: Witness, clock: Clock
) -> None:
    older = grow(log, signer, 5)
    grow(log, signer, 9)
    witness_round(witness, hub)
    hub.override[JOURNAL_CHECKPOINT] = lambda: _json(200, {"note": older})
    with pytest.raises(WitnessError, match="rollback"):
        witness_round(witness, hub)
    impostor = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    forged = str(impostor.sign_checkpoint(Checkpoint(signer.name, 9, log.root(9), clock())))
    hub.override[JOURNAL_CHECKPOINT] = lambda: _json(200, {"note": forged})
    with pytest.raises(WitnessError, match="signature"):
        witness_round(witness, hub)
    assert witness.state().size == 9


@pytest.mark.parametrize(
    ("route", "answer", "message"),
    [
        (JOURNAL_CHECKPOINT, (500, b"oops"), "500"),
        (JOURNAL_CHECKPOINT, (401, b'{"error": "invalid_token"}'), "invalid_token"),
        (JOURNAL_CHECKPOINT, (200, b"not json"), "not a JSON object"),
        (JOURNAL_CHECKPOINT, (200, b"[]"), "not a JSON object"),
        (JOURNAL_CHECKPOINT, (200, b'{"note": 3}'), "no note"),
        (JOURNAL_CHECKPOINT, (200, b'{"note": "nonsense"}'), "malformed"),
        (JOURNAL_CHECKPOINT, (200, b" " * (MAX_RESPONSE_BYTES + 1)), "larger"),
        (JOURNAL_CONSISTENCY, (200, b'{"old": 1, "new": 12, "proof": []}'), "malformed"),
        (JOURNAL_CONSISTENCY, (200, b'{"old": 10, "new": 12, "proof": "x"}'), "malformed"),
        (JOURNAL_CONSISTENCY, (200, b'{"old": 10, "new": 12, "proof": ["!!"]}'), "base64"),
        (JOURNAL_CONSISTENCY, (200, b'{"old": 10, "new": 12, "proof": []}'), "consistent"),
        (JOURNAL_CONSISTENCY, (400, b'{"error": "size_out_of_range"}'), "size_out_of_range"),
    ],
)
def test_answers_the_round_cannot_trust_are_refused_before_cosigning(
    hub: Hub,
    log: AuditLog,
    signer: NoteSigner,
    witness: Witness,
    route: str,
    answer: Answer,
    message: str,
) -> None:
    grow(log, signer, 10)
    witness_round(witness, hub)
    grow(log, signer, 12)
    before = witness.state()
    hub.override[route] = lambda: answer
    with pytest.raises(WitnessError, match=message):
        witness_round(witness, hub)
    assert witness.state() == before


def test_a_refused_post_is_reported_and_the_next_round_cosigns_again(
    hub: Hub, log: AuditLog, signer: NoteSigner, cosigner: Cosigner, witness: Witness
) -> None:
    # Given a hub that no longer accepts this witness
    log.remove_witness(cosigner.verifier().vkey())
    grow(log, signer, 4)
    # When a round runs, the hub's refusal and its code are reported
    with pytest.raises(WitnessError, match="unknown_witness"):
        witness_round(witness, hub)
    # The witness did cosign (its state is saved before the cosignature leaves)…
    assert witness.state().size == 4
    # …so once accepted again, the next round cosigns the same tree and the hub keeps it
    log.add_witness(cosigner.verifier().vkey())
    assert witness_round(witness, hub).stored is True
