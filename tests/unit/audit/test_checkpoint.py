"""Checkpoint notes: format, signatures, forgery refusal, cosignatures."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    Cosigner,
    NoteSigner,
    NoteVerifier,
    Segment,
    SignedNote,
)
from audit.errors import CheckpointError
from audit.merkle import Frontier, leaf_hash

T = datetime(2025, 3, 3, 9, 0, 0, 123456, tzinfo=UTC)
ROOT = hashlib.sha256(b"root").digest()


def test_note_format_follows_c2sp(signer: NoteSigner) -> None:
    note = signer.sign_checkpoint(Checkpoint(signer.name, 42, ROOT, T))
    text = str(note)
    body, _, sigs = text.partition("\n\n")
    assert body.split("\n") == [
        "maillon.test/audit",
        "42",
        base64.b64encode(ROOT).decode(),
        "timestamp 2025-03-03T09:00:00.123456Z",
    ]
    line = sigs.rstrip("\n")
    assert line.startswith("\u2014 maillon.test/audit ")
    raw = base64.b64decode(line.split(" ")[2])
    public = signer.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert raw[:4] == hashlib.sha256(b"maillon.test/audit\n\x01" + public).digest()[:4]
    assert len(raw) == 4 + 64
    assert signer.verifier().verify_checkpoint(text) == Checkpoint(signer.name, 42, ROOT, T)


def test_vkey_round_trip_and_key_id_check(signer: NoteSigner) -> None:
    vkey = signer.verifier().vkey()
    assert NoteVerifier.from_vkey(vkey).key_id == signer.key_id
    name, _key_id, blob = vkey.split("+", 2)
    with pytest.raises(CheckpointError):
        NoteVerifier.from_vkey(f"{name}+00000000+{blob}")


def test_forged_signature_is_refused(signer: NoteSigner) -> None:
    forger = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    forged = forger.sign_checkpoint(Checkpoint(signer.name, 42, ROOT, T))
    # A different key under the same name: ignored (unknown key) so the note has no signature.
    with pytest.raises(CheckpointError):
        signer.verifier().verify_checkpoint(str(forged))
    # The forger's signature relabelled with the real key ID: it fails to verify.
    relabelled = SignedNote(
        forged.text,
        tuple(type(s)(s.name, signer.key_id, s.signature) for s in forged.signatures),
    )
    with pytest.raises(CheckpointError):
        signer.verifier().verify_checkpoint(relabelled)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("\n42\n", "\n43\n"),
        lambda t: t.replace("timestamp 2025", "timestamp 2024"),
        lambda t: t.replace("maillon.test/audit\n", "maillon.test/other\n", 1),
        lambda t: t.replace("\n\n", "\nextra line\n\n"),
    ],
)
def test_altered_note_is_refused(signer: NoteSigner, mutate: object) -> None:
    text = str(signer.sign_checkpoint(Checkpoint(signer.name, 42, ROOT, T)))
    assert callable(mutate)
    with pytest.raises(CheckpointError):
        signer.verifier().verify_checkpoint(mutate(text))


def test_malformed_notes_are_refused(signer: NoteSigner) -> None:
    for bad in [
        "",
        "no blank line\n",
        "a\n\nnot a signature\n",
        "a\n\n\u2014 k !!!\n",
        "a\x00\n\n",
    ]:
        with pytest.raises(CheckpointError):
            SignedNote.parse(bad)


def test_origin_must_be_the_signer(signer: NoteSigner) -> None:
    with pytest.raises(CheckpointError):
        signer.sign_checkpoint(Checkpoint("someone.else/log", 1, ROOT, T))


def test_cosignature_format_and_verification(signer: NoteSigner, cosigner: Cosigner) -> None:
    note = signer.sign_checkpoint(Checkpoint(signer.name, 7, ROOT, T))
    cosigned = note.with_signature(cosigner.cosign(note.text, T))
    reparsed = SignedNote.parse(str(cosigned))
    # The log signature still verifies with the extra line present.
    signer.verifier().verify(reparsed)
    verifier = CosignatureVerifier.from_vkey(cosigner.verifier().vkey())
    assert verifier.verify(reparsed) == T.replace(microsecond=0)
    line = reparsed.signatures[1]
    assert int.from_bytes(line.signature[:8], "big") == int(T.timestamp())
    message = f"cosignature/v1\ntime {int(T.timestamp())}\n{note.text}".encode()
    cosigner.public_key.verify(line.signature[8:], message)
    # A cosignature over another checkpoint does not transfer.
    other = signer.sign_checkpoint(Checkpoint(signer.name, 8, ROOT, T))
    moved = other.with_signature(line)
    with pytest.raises(CheckpointError):
        verifier.verify(moved)
    with pytest.raises(CheckpointError):
        verifier.verify(note)


def test_segment_record_checks_frontier_against_signed_root(signer: NoteSigner) -> None:
    frontier = Frontier()
    for i in range(11):
        frontier.push(leaf_hash(bytes([i])))
    note = str(signer.sign_checkpoint(Checkpoint(signer.name, 11, frontier.root(), T)))
    segment = Segment(11, frontier.hashes, note)
    assert Segment.from_json(segment.to_json()) == segment
    assert segment.verify(signer.verifier()).size == 11
    bad = Segment(11, (leaf_hash(b"x"), *frontier.hashes[1:]), note)
    with pytest.raises(CheckpointError):
        bad.verify(signer.verifier())
    with pytest.raises(CheckpointError):
        Segment(10, frontier.hashes, note).verify(signer.verifier())
