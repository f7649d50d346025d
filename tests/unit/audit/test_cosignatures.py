"""The registry of accepted witnesses and the cosignatures the log keeps: only verified
cosignatures by accepted witnesses over checkpoints the log signed, append-only, exported."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, Table, func, select, text
from sqlalchemy.exc import DBAPIError

import audit.store
from audit.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    Cosigner,
    NoteSigner,
    SignatureLine,
    SignedNote,
)
from audit.errors import CosignatureRefused, WitnessRegistryError
from audit.events import to_micros
from audit.export import export_log
from audit.export_format import CHECKPOINTS
from audit.store import AuditLog, checkpoints_table, cosignatures_table, witnesses_table
from tests.unit.audit.conftest import Clock, view


def _count(log: AuditLog, table: Table) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def note(log: AuditLog, signer: NoteSigner) -> str:
    """A checkpoint the log signed and stored, over 10 events."""
    log.append_many([view(i) for i in range(10)])
    return str(log.checkpoint(signer))


def cosign(cosigner: Cosigner, note: str, clock: Clock) -> str:
    """The cosignature line a witness makes over ``note``."""
    return cosigner.cosign(SignedNote.parse(note).text, clock()).text()


# -- registry ----------------------------------------------------------------------------------


def test_witnesses_are_added_listed_and_removed(log: AuditLog, cosigner: Cosigner) -> None:
    other = Cosigner("partner.test/witness", Ed25519PrivateKey.generate())
    assert log.witnesses() == []
    log.add_witness(cosigner.verifier().vkey())
    log.add_witness(other.verifier().vkey() + "\n")  # as pasted from a file
    assert [w.vkey() for w in log.witnesses()] == [
        cosigner.verifier().vkey(),
        other.verifier().vkey(),
    ]
    log.remove_witness(cosigner.verifier().vkey())
    assert [w.name for w in log.witnesses()] == ["partner.test/witness"]
    # Accepted again later: the registry is each key's last row
    log.add_witness(cosigner.verifier().vkey())
    assert [w.name for w in log.witnesses()] == ["partner.test/witness", "dpo.test/witness"]
    assert _count(log, witnesses_table) == 4


@pytest.mark.parametrize(
    "bad",
    ["", "not a key", "dpo.test/witness+00000000+AAAA", "log-key", "witness-key-with-wrong-id"],
)
def test_a_registry_change_with_a_bad_key_is_refused(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, bad: str
) -> None:
    vkey = cosigner.verifier().vkey()
    keys = {
        # The log's own key is an Ed25519 note key (type 0x01), not a cosignature key (0x04)
        "log-key": signer.verifier().vkey(),
        "witness-key-with-wrong-id": vkey.replace(vkey.split("+")[1], "deadbeef"),
    }
    with pytest.raises(WitnessRegistryError):
        log.add_witness(keys.get(bad, bad))
    assert log.witnesses() == [] and _count(log, witnesses_table) == 0


def test_duplicates_unknown_removals_and_a_full_registry_are_refused(
    log: AuditLog, cosigner: Cosigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    vkey = cosigner.verifier().vkey()
    log.add_witness(vkey)
    with pytest.raises(WitnessRegistryError, match="already"):
        log.add_witness(vkey)
    other = Cosigner("other.test/witness", Ed25519PrivateKey.generate()).verifier().vkey()
    with pytest.raises(WitnessRegistryError, match="not an accepted"):
        log.remove_witness(other)
    monkeypatch.setattr(audit.store, "MAX_WITNESSES", 1)
    with pytest.raises(WitnessRegistryError, match="at most 1"):
        log.add_witness(other)
    assert [w.vkey() for w in log.witnesses()] == [vkey]
    assert _count(log, witnesses_table) == 1


# -- cosignatures --------------------------------------------------------------------------


def test_a_verified_cosignature_is_kept_once_and_read_back_with_its_checkpoint(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str
) -> None:
    # Given an accepted witness that cosigned the log's checkpoint
    log.add_witness(cosigner.verifier().vkey())
    line = cosign(cosigner, note, clock)
    # When the cosignature is checked, then added
    checked = log.check_cosignature(note, line)
    assert checked.checkpoint.size == 10 and checked.witness.name == "dpo.test/witness"
    assert _count(log, cosignatures_table) == 0  # checking stores nothing
    assert log.add_cosignature(note, line) is True
    # Then the checkpoint reads back with the line after the log's own signature
    cosigned = log.latest_checkpoint(with_cosignatures=True)
    assert cosigned == note + line + "\n"
    assert log.checkpoints(with_cosignatures=True) == [cosigned]
    assert log.checkpoints() == [note] and log.latest_checkpoint() == note
    parsed = SignedNote.parse(cosigned)
    signer.verifier().verify_checkpoint(parsed)
    CosignatureVerifier.from_vkey(cosigner.verifier().vkey()).verify(parsed)
    # And a retry (even a fresh cosignature of the same checkpoint) keeps the first one only
    clock.advance(timedelta(minutes=1))
    assert log.add_cosignature(note, line) is False
    assert log.add_cosignature(note, cosign(cosigner, note, clock)) is False
    assert log.latest_checkpoint(with_cosignatures=True) == cosigned


def test_cosignatures_of_several_witnesses_and_checkpoints(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str
) -> None:
    partner = Cosigner("partner.test/witness", Ed25519PrivateKey.generate())
    for witness in (cosigner, partner):
        log.add_witness(witness.verifier().vkey())
    log.append_many([view(i) for i in range(10, 15)])
    second = str(log.checkpoint(signer))
    lines = {(w.name, n): cosign(w, n, clock) for w in (cosigner, partner) for n in (note, second)}
    assert log.add_cosignature(second, lines[("partner.test/witness", second)])
    assert log.add_cosignature(note, lines[("dpo.test/witness", note)])
    assert log.add_cosignature(second, lines[("dpo.test/witness", second)])
    assert log.checkpoints(with_cosignatures=True) == [
        note + lines[("dpo.test/witness", note)] + "\n",
        second
        + lines[("partner.test/witness", second)]
        + "\n"
        + lines[("dpo.test/witness", second)]
        + "\n",
    ]
    assert log.checkpoints(since_size=12, with_cosignatures=True)[0].startswith(second)


def test_the_latest_checkpoint_is_the_largest_tree(
    log: AuditLog, signer: NoteSigner, clock: Clock, note: str
) -> None:
    # A checkpoint of a smaller tree signed afterwards (a retention cut) is not the latest
    smaller = signer.sign_checkpoint(Checkpoint(signer.name, 4, log.root(4), clock()))
    with log.engine.begin() as conn:
        conn.execute(
            checkpoints_table.insert().values(
                size=4, root=log.root(4), time_us=to_micros(clock()), note=str(smaller)
            )
        )
    assert log.latest_checkpoint() == note


def _refusals(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str
) -> dict[str, tuple[str, str]]:
    line = cosign(cosigner, note, clock)
    cp = Checkpoint.parse_body(SignedNote.parse(note).text)
    # The same tree signed at another time: another body, another checkpoint
    later = str(signer.sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root, clock())))
    impostor = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    forged = str(impostor.sign_checkpoint(Checkpoint(cp.origin, cp.size, b"\x01" * 32, cp.time)))
    stranger = Cosigner("stranger.test/witness", Ed25519PrivateKey.generate())
    # The registered name and key ID, another key: the signature cannot verify
    thief = Cosigner(cosigner.name, Ed25519PrivateKey.generate())
    stolen_id = thief.cosign(SignedNote.parse(note).text, clock())
    spoofed = SignatureLine(cosigner.name, cosigner.key_id, stolen_id.signature).text()
    genuine = SignatureLine.parse(line)
    signature = bytearray(genuine.signature)
    signature[-1] ^= 1
    flipped = SignatureLine(genuine.name, genuine.key_id, bytes(signature)).text()
    huge = note.replace("\n10\n", f"\n{2**64}\n", 1)
    return {
        "malformed_checkpoint": (note.replace("\n\n", "\n"), line),
        "malformed_checkpoint_size": (huge, line),
        "malformed_checkpoint_nul": (note + "\x00", line),
        "malformed_cosignature": (note, "not a line"),
        "malformed_cosignature_b64": (note, "\u2014 dpo.test/witness !!!"),
        "unknown_witness": (note, cosign(stranger, note, clock)),
        "unknown_checkpoint": (later, cosign(cosigner, later, clock)),
        "unknown_checkpoint_forged": (forged, cosign(cosigner, forged, clock)),
        "bad_cosignature": (note, spoofed),
        "bad_cosignature_flipped": (note, flipped),
        "bad_cosignature_other_body": (note, cosign(cosigner, later, clock)),
    }


REFUSALS = [
    "malformed_checkpoint",
    "malformed_checkpoint_size",
    "malformed_checkpoint_nul",
    "malformed_cosignature",
    "malformed_cosignature_b64",
    "unknown_witness",
    "unknown_checkpoint",
    "unknown_checkpoint_forged",
    "bad_cosignature",
    "bad_cosignature_flipped",
    "bad_cosignature_other_body",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_cosignature_that_does_not_hold_is_refused_with_its_code_and_nothing_is_kept(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str, case: str
) -> None:
    log.add_witness(cosigner.verifier().vkey())
    posted_note, line = _refusals(log, signer, cosigner, clock, note)[case]
    code = "_".join(case.split("_")[:2])
    for attempt in (log.check_cosignature, log.add_cosignature):
        with pytest.raises(CosignatureRefused) as refused:
            attempt(posted_note, line)
        assert refused.value.code == code
    assert _count(log, cosignatures_table) == 0
    assert log.latest_checkpoint(with_cosignatures=True) == note


def test_a_removed_witness_is_refused_and_its_kept_cosignatures_stay(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str
) -> None:
    log.add_witness(cosigner.verifier().vkey())
    assert log.add_cosignature(note, cosign(cosigner, note, clock))
    log.remove_witness(cosigner.verifier().vkey())
    log.append(view(10))
    second = str(log.checkpoint(signer))
    with pytest.raises(CosignatureRefused) as refused:
        log.add_cosignature(second, cosign(cosigner, second, clock))
    assert refused.value.code == "unknown_witness"
    assert log.checkpoints(with_cosignatures=True)[0] != note  # still cosigned


def test_a_checkpoint_carries_a_bounded_number_of_cosignatures(
    log: AuditLog, cosigner: Cosigner, clock: Clock, note: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.store, "MAX_COSIGNATURES", 1)
    partner = Cosigner("partner.test/witness", Ed25519PrivateKey.generate())
    for witness in (cosigner, partner):
        log.add_witness(witness.verifier().vkey())
    assert log.add_cosignature(note, cosign(cosigner, note, clock))
    with pytest.raises(CosignatureRefused) as refused:
        log.add_cosignature(note, cosign(partner, note, clock))
    assert refused.value.code == "too_many_cosignatures"
    assert _count(log, cosignatures_table) == 1


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_cosignatures SET line = 'x'",
        "DELETE FROM audit_cosignatures",
        "UPDATE audit_witnesses SET accepted = false",
        "DELETE FROM audit_witnesses",
    ],
)
def test_witnesses_and_cosignatures_are_append_only(
    log: AuditLog, cosigner: Cosigner, clock: Clock, note: str, sql: str
) -> None:
    log.add_witness(cosigner.verifier().vkey())
    log.add_cosignature(note, cosign(cosigner, note, clock))
    with pytest.raises(DBAPIError), log.engine.begin() as conn:
        conn.execute(text(sql))
    assert _count(log, witnesses_table) == 1 and _count(log, cosignatures_table) == 1
    if log.engine.dialect.name == "postgresql":
        for table in ("audit_witnesses", "audit_cosignatures"):
            with pytest.raises(DBAPIError), log.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {table} CASCADE"))


def test_exports_carry_the_cosignatures(
    log: AuditLog, signer: NoteSigner, cosigner: Cosigner, clock: Clock, note: str, tmp_path: Path
) -> None:
    log.add_witness(cosigner.verifier().vkey())
    line = cosign(cosigner, note, clock)
    log.add_cosignature(note, line)
    export_log(log, tmp_path / "export", verifier=signer.verifier())
    lines = (tmp_path / "export" / CHECKPOINTS).read_text().splitlines()
    (exported,) = [json.loads(x) for x in lines]
    assert exported == note + line + "\n"


def test_registry_and_cosignatures_survive_a_second_instance(
    engine_factory: Callable[[], Engine], signer: NoteSigner, cosigner: Cosigner, clock: Clock
) -> None:
    first = AuditLog(engine_factory(), clock=clock)
    first.create_schema()
    first.append_many([view(i) for i in range(3)])
    note = str(first.checkpoint(signer))
    first.add_witness(cosigner.verifier().vkey())
    first.add_cosignature(note, cosign(cosigner, note, clock))
    second = AuditLog(engine_factory(), clock=clock)
    second.create_schema()  # idempotent: the new tables and triggers are there already
    assert [w.name for w in second.witnesses()] == ["dpo.test/witness"]
    assert second.latest_checkpoint(with_cosignatures=True) != note
