"""The witness cosigns only checkpoints consistent with what it cosigned before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, CosignatureVerifier, Cosigner, NoteSigner, SignedNote
from audit.errors import WitnessError
from audit.merkle import MemoryTree, leaf_hash
from audit.store import AuditLog
from audit.witness import Witness, format_request, main, parse_request
from tests.unit.audit.conftest import Clock, view


@pytest.fixture
def witness(tmp_path: Path, signer: NoteSigner, cosigner: Cosigner, clock: Clock) -> Witness:
    state = tmp_path / "witness.json"
    Witness.init(state, signer.verifier().vkey())
    return Witness(state, cosigner, clock=clock)


def test_witness_follows_an_honest_log(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, witness: Witness
) -> None:
    verifier = CosignatureVerifier.from_vkey(cosigner.verifier().vkey())
    for stop in (5, 5, 12, 40):
        log.append_many([view(i) for i in range(log.size(), stop)])
        note = str(log.checkpoint(signer))
        held = witness.state().size
        cosigned = witness.cosign(note, log.consistency_proof(held), held)
        verifier.verify(SignedNote.parse(str(cosigned)))
        signer.verifier().verify(SignedNote.parse(str(cosigned)))
        assert witness.state().size == stop and witness.state().root == log.root()


def test_witness_refuses_a_forked_history(
    tmp_path: Path, signer: NoteSigner, witness: Witness, clock: Clock
) -> None:
    # Given a witness that cosigned the log at size 6
    honest = MemoryTree(leaf_hash(bytes([i])) for i in range(6))
    note = str(signer.sign_checkpoint(Checkpoint(signer.name, 6, honest.root(), clock())))
    witness.cosign(note, [])
    # When the log (with its real key) presents a rewritten history at size 9
    forked = MemoryTree(leaf_hash(bytes([i + 100])) for i in range(9))
    forked_note = str(signer.sign_checkpoint(Checkpoint(signer.name, 9, forked.root(), clock())))
    # Then no proof it can build makes the witness cosign, and its state is unchanged
    with pytest.raises(WitnessError, match="not consistent"):
        witness.cosign(forked_note, forked.consistency_proof(6, 9))
    extended = MemoryTree(leaf_hash(bytes([i])) for i in range(9))
    with pytest.raises(WitnessError):
        witness.cosign(forked_note, extended.consistency_proof(6, 9))
    assert witness.state().size == 6 and witness.state().root == honest.root()
    # But the honest extension is accepted
    good = str(signer.sign_checkpoint(Checkpoint(signer.name, 9, extended.root(), clock())))
    witness.cosign(good, extended.consistency_proof(6, 9))


def test_witness_refuses_rollback_and_foreign_keys(
    signer: NoteSigner, witness: Witness, clock: Clock
) -> None:
    tree = MemoryTree(leaf_hash(bytes([i])) for i in range(8))
    witness.cosign(
        str(signer.sign_checkpoint(Checkpoint(signer.name, 8, tree.root(), clock()))), []
    )
    older = str(signer.sign_checkpoint(Checkpoint(signer.name, 4, tree.root(4), clock())))
    with pytest.raises(WitnessError, match="rollback"):
        witness.cosign(older, [])
    impostor = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    forged = str(impostor.sign_checkpoint(Checkpoint(signer.name, 8, tree.root(), clock())))
    with pytest.raises(WitnessError):
        witness.cosign(forged, [])
    with pytest.raises(WitnessError, match="size"):
        witness.cosign(older, [], old_size=3)


def test_witness_never_reinitialises(tmp_path: Path, signer: NoteSigner, witness: Witness) -> None:
    with pytest.raises(WitnessError):
        Witness.init(tmp_path / "witness.json", signer.verifier().vkey())


def test_request_round_trip() -> None:
    proof = [leaf_hash(b"a"), leaf_hash(b"b")]
    assert parse_request(format_request(3, proof, "note\n\n\u2014 x y\n")) == (
        3,
        proof,
        "note\n\n\u2014 x y\n",
    )
    with pytest.raises(WitnessError):
        parse_request("new 3\n\nnote")


def test_cli_cosigns_and_refuses(
    tmp_path: Path, log: AuditLog, signer: NoteSigner, capsys: pytest.CaptureFixture[str]
) -> None:
    key, state = tmp_path / "w.pem", tmp_path / "w.json"
    fixed = lambda: datetime(2025, 3, 3, tzinfo=UTC)  # noqa: E731
    assert main(["keygen", "--name", "dpo.test/w", "--out", str(key)], clock=fixed) == 0
    vkey = capsys.readouterr().out.strip()
    assert main(["init", "--state", str(state), "--log-key", signer.verifier().vkey()]) == 0
    log.append_many([view(i) for i in range(10)])
    request = tmp_path / "req.txt"
    request.write_text(format_request(0, [], str(log.checkpoint(signer))))
    args = ["cosign", "--state", str(state), "--key", str(key), "--name", "dpo.test/w"]
    capsys.readouterr()
    assert main([*args, str(request)], clock=fixed) == 0
    CosignatureVerifier.from_vkey(vkey).verify(SignedNote.parse(capsys.readouterr().out))
    # A request claiming a different starting point, or without a valid proof, is refused.
    log.append_many([view(i) for i in range(10, 15)])
    note = str(log.checkpoint(signer))
    request.write_text(format_request(10, [leaf_hash(b"junk")], note))
    assert main([*args, str(request)], clock=fixed) == 1
    request.write_text(format_request(10, log.consistency_proof(10), note))
    assert main([*args, str(request)], clock=fixed) == 0


def test_two_rounds_at_once_cannot_cosign_two_forks(
    tmp_path: Path, signer: NoteSigner, witness: Witness, clock: Clock
) -> None:
    import fcntl
    import os
    import threading

    # Given two forked checkpoints of size 4 from the empty tree, and a round already holding
    # the witness's state (the lock taken as cosign takes it)
    forks = [MemoryTree(leaf_hash(bytes([i + k])) for i in range(4)) for k in (0, 50)]
    notes = [
        str(signer.sign_checkpoint(Checkpoint(signer.name, 4, t.root(), clock()))) for t in forks
    ]
    fd = os.open(tmp_path / "witness.json.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    outcomes: list[str] = []

    def round_(note: str) -> None:
        try:
            witness.cosign(note, [], 0)
            outcomes.append("cosigned")
        except WitnessError:
            outcomes.append("refused")

    threads = [threading.Thread(target=round_, args=(n,)) for n in notes]
    for thread in threads:
        thread.start()
    threads[0].join(timeout=0.3)
    # Then both wait for the lock, and once it is free exactly one fork is cosigned
    assert outcomes == [] and all(t.is_alive() for t in threads)
    os.close(fd)
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["cosigned", "refused"]
