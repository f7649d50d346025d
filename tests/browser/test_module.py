"""The browser module (hub/static/js/echange.js) inside headless Chromium: RFC 9180 vectors,
the envelope test vectors of docs/envelope.md, RFC 6962 proofs, the directory replica, the
recovery backup, and interoperability with the Python implementation both ways."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle
from audit.checkpoint import Checkpoint, NoteSigner
from exchange.directory import key_added, key_revoked
from exchange.encoding import b64d, b64e, canonical_json
from exchange.envelope import Attachment, CharterRef, ViewPlan, open_form, seal
from exchange.keys import DeviceKey, DeviceSecrets
from exchange.keystore import Kind, unlock
from tests.browser.conftest import Module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HPKE = json.loads((FIXTURES / "hpke/rfc9180-x25519-sha256-aes256gcm.json").read_text())
VECTORS = json.loads((FIXTURES / "envelope/v1.json").read_text())
X25519_DEVICES = [
    name for name, d in VECTORS["devices"].items() if d["private"]["kem"]["suite"] == "x25519"
]
CHARTER = CharterRef("charte-type-clspd", 2, "sha256:" + "3" * 64)
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _described(files: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"field": f["field"], "name": f["name"], "type": f["type"],
         "sha256": hashlib.sha256(b64d(f["data"], what="data")).hexdigest()}
        for f in files
    ]  # fmt: skip


def _load_devices(module: Module) -> dict[str, str]:
    return {name: module("fromPrivate", VECTORS["devices"][name]["private"])["keyId"]
            for name in X25519_DEVICES}  # fmt: skip


def test_hpke_passes_the_rfc_9180_vectors_in_chromium(module: Module) -> None:
    for vector in HPKE:
        got = module("hpkeVector", vector)
        for name in ("enc", "shared_secret", "key_schedule_context", "secret", "key", "base_nonce"):
            assert got[name] == vector[name], name
        assert got["shared_secret_r"] == vector["shared_secret"]
        assert len(got["encryptions"]) == len(vector["encryptions"]) == 257
        for mine, theirs in zip(got["encryptions"], vector["encryptions"], strict=True):
            assert (mine["nonce"], mine["ct"], mine["pt"]) == (
                theirs["nonce"], theirs["ct"], theirs["pt"],
            )  # fmt: skip
        assert got["single_shot"] == "clé de vue"
        assert got["wrong_info"] == "seal_invalid"


def test_key_ids_and_security_numbers_match_the_vectors(module: Module) -> None:
    for device in VECTORS["devices"].values():
        public = module("publicKey", device["public"])
        assert (public["keyId"], public["fingerprint"]) == (device["key_id"], device["fingerprint"])
    for name in X25519_DEVICES:
        device = VECTORS["devices"][name]
        loaded = module("fromPrivate", device["private"])
        assert loaded["keyId"] == device["key_id"]
        assert loaded["record"] == device["public"]


def test_valid_envelopes_open_as_stated_and_only_for_their_recipients(module: Module) -> None:
    ids = _load_devices(module)
    sender = VECTORS["devices"]["sender"]["public"]
    opened = 0
    for vector in VECTORS["valid"]:
        for name, expected in vector["opens"].items():
            if name not in ids:
                continue  # a post-quantum device: Python clients only
            got = module("openEnvelope", vector["envelope"], ids[name], sender)
            assert got["view"] == expected["view"], (vector["name"], name)
            assert got["values"] == expected["values"], (vector["name"], name)
            assert _described(got["files"]) == expected.get("files", []), (vector["name"], name)
            opened += 1
        for name, code in vector["refused"].items():
            if name in ids:
                got = module("openEnvelope", vector["envelope"], ids[name], sender)
                assert got == {"step": "open", "code": code}
    assert opened == 5  # bob and carol twice, bob once (alice holds a post-quantum key)


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_envelopes_are_refused_with_their_code_at_their_step(
    module: Module, vector: dict[str, Any]
) -> None:
    ids = _load_devices(module)
    recipient = ids[vector.get("recipient", "bob")]
    got = module(
        "openEnvelope", vector["envelope"], recipient, VECTORS["devices"]["sender"]["public"]
    )
    assert got == {"step": vector["step"], "code": vector["code"]}


def test_a_form_sealed_in_python_opens_in_the_browser_view_by_view(module: Module) -> None:
    browser = [module("newDevice") for _ in range(3)]
    assert not any(b["exportable"] for b in browser)  # private keys stay inside WebCrypto
    keys = [DeviceKey.from_record(b["record"]) for b in browser]
    python_recipient = DeviceSecrets.generate()
    sender = DeviceSecrets.generate()
    values = {"parcours.besoins": "Hébergement « urgent » 🌱", "sortie.date_prevue": "2026-12-15",
              "parcours.accord": True, "parcours.nombre": 3, "parcours.vide": None}  # fmt: skip
    scan = Attachment(
        "parcours.besoins",
        "attestation.pdf",
        "application/pdf",
        b"%PDF-1.7\n" + os.urandom(300_000),
    )
    envelope = seal(
        secrets=sender, user="u-1", org="o-spip", case="C-7K3Q-X9M2", charter=CHARTER,
        consent="k-18", purpose="suivi_parcours", directory="note", now=NOW,
        views=[
            ViewPlan(values, [keys[0], python_recipient.public]),
            ViewPlan({"sortie.date_prevue": "2026-12-15"}, [keys[1], keys[2]]),
        ],
        files=[scan],
    ).to_bytes()  # fmt: skip
    sender_record = sender.public.record()
    first = module("openEnvelope", envelope.decode(), browser[0]["keyId"], sender_record)
    assert first["values"] == values
    assert [b64d(f["data"], what="d") for f in first["files"]] == [scan.data]
    for device in browser[1:]:
        got = module("openEnvelope", envelope.decode(), device["keyId"], sender_record)
        assert got["values"] == {"sortie.date_prevue": "2026-12-15"}
        assert got["files"] == []  # the scan supports a field their view does not hold
    # The other way round is the next test; the Python recipient of the same view opens too.
    assert open_form(envelope, secrets=python_recipient, sender_key=sender.public).values == values


def test_a_form_sealed_in_the_browser_opens_in_python_view_by_view(module: Module) -> None:
    sender = module("newDevice")
    alice, bob, carol = (DeviceSecrets.generate() for _ in range(3))
    browser_recipient = module("newDevice")
    photo = b"\xff\xd8\xff" + os.urandom(200_000)
    values = {"parcours.besoins": "Suivi santé ; « logement » 🌱", "sortie.date_prevue": "2026-12-15",
              "parcours.nombre": 7}  # fmt: skip
    meta = {"user": "u-3f2a9c", "org": "o-pjj", "case": "C-7K3Q-X9M2", "consent": None,
            "charter": {"id": CHARTER.id, "version": CHARTER.version, "digest": CHARTER.digest},
            "purpose": "suivi_parcours", "directory": "maillon.test/cles\n1\n", "now": NOW.isoformat()}  # fmt: skip
    everything = sorted(values)
    envelope = module(
        "sealForm",
        sender["keyId"],
        [
            {"record": alice.public.record(), "fields": everything},
            {"record": browser_recipient["record"], "fields": everything},
            {"record": bob.public.record(), "fields": ["sortie.date_prevue"]},
            {"record": carol.public.record(), "fields": ["sortie.date_prevue"]},
        ],
        values,
        meta,
        [{"field": "parcours.besoins", "name": "photo.jpg", "type": "image/jpeg",
          "data": b64e(photo)}],
    )  # fmt: skip
    signer = DeviceKey.from_record(sender["record"])
    data = envelope.encode()
    got = open_form(data, secrets=alice, sender_key=signer)
    assert got.values == values and got.manifest.sender.user == "u-3f2a9c"
    assert [(f.name, f.data) for f in got.files.values()] == [("photo.jpg", photo)]
    assert got.manifest.created == NOW
    for secrets in (bob, carol):
        assert open_form(data, secrets=secrets, sender_key=signer).values == {
            "sortie.date_prevue": "2026-12-15"
        }
    assert [len(v.recipients) for v in got.manifest.views] == [1, 2] or [
        len(v.recipients) for v in got.manifest.views
    ] == [2, 2]
    back = module("openEnvelope", envelope, browser_recipient["keyId"], sender["record"])
    assert back["values"] == values


def _source(leaves: list[bytes]) -> Any:
    def source(level: int, index: int) -> bytes:
        return merkle.root_from_leaf_hashes(leaves[index << level : (index + 1) << level])

    return source


def test_inclusion_and_consistency_proofs_verify_as_rfc_9162_says(module: Module) -> None:
    entries = [f"entrée {i}".encode() for i in range(23)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    assert (
        module("merkleRoot", [b64e(e) for e in entries])
        == merkle.root_from_leaf_hashes(leaves).hex()
    )
    source = _source(leaves)
    for size in (1, 2, 7, 8, 13, 23):
        root = merkle.root_from_leaf_hashes(leaves[:size]).hex()
        for index in sorted({0, size // 2, size - 1}):
            proof = [p.hex() for p in merkle.inclusion_proof(index, size, source)]
            assert module("inclusion", leaves[index].hex(), index, size, proof, root) == "ok"
            if proof:
                bad = [*proof[:-1], "00" * 32]
                assert module("inclusion", leaves[index].hex(), index, size, bad, root) == {
                    "error": "proof_invalid", "kind": "verification"
                }  # fmt: skip
            other = leaves[(index + 1) % size].hex()
            if size > 1:
                assert module("inclusion", other, index, size, proof, root)["error"] == (
                    "proof_invalid"
                )
        for old in range(1, size):
            proof = [p.hex() for p in merkle.consistency_proof(old, size, source)]
            old_root = merkle.root_from_leaf_hashes(leaves[:old]).hex()
            assert module("consistency", old, size, old_root, root, proof) == "ok"
            forged = merkle.root_from_leaf_hashes([*leaves[: old - 1], b"\x01" * 32]).hex()
            assert module("consistency", old, size, forged, root, proof)["error"] == "proof_invalid"


SIGNER = NoteSigner("maillon.test/cles", Ed25519PrivateKey.generate())


def _note(entries: list[bytes], signer: NoteSigner = SIGNER) -> str:
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])
    return str(signer.sign_checkpoint(Checkpoint(signer.name, len(entries), root, NOW)))


def test_the_directory_replica_verifies_and_refuses_forks_rollbacks_and_split_views(
    module: Module,
) -> None:
    devices = [DeviceSecrets.generate().public for _ in range(3)]
    entries = [
        key_added(devices[0], owner="user:u-1", org="o-spip", now=NOW),
        key_added(devices[1], owner="client:c-ml", org="o-ml", now=NOW),
        key_revoked(devices[0].key_id, reason="owner", now=NOW),
        key_added(devices[2], owner="user:u-1", org="o-spip", now=NOW),
    ]
    vkey = SIGNER.verifier().vkey()
    b64 = [b64e(e) for e in entries]
    got = module("replica", vkey, [[b64[:2], _note(entries[:2])], [b64[2:], _note(entries)]],
                 _note(entries[:3]))  # fmt: skip
    assert got["size"] == 4 and got["peer"] == 3
    states = {k["id"]: k for k in got["keys"]}
    assert states[devices[0].key_id]["revoked"] == 2
    assert states[devices[2].key_id] | {"id": ""} == {
        "id": "", "owner": "user:u-1", "org": "o-spip", "added": 3, "revoked": None
    }  # fmt: skip
    refused = {
        # Entries that are not the signed ones.
        "fork": [[b64[:3], _note([*entries[:2], entries[3]])]],
        # An older checkpoint after a newer one.
        "rollback": [[b64, _note(entries)], [[], _note(entries[:2])]],
        # A checkpoint signed by another key.
        "checkpoint_invalid": [
            [b64, _note(entries, NoteSigner(SIGNER.name, Ed25519PrivateKey.generate()))]
        ],
        "entries_missing": [[b64[:3], _note(entries)]],
        # Not in canonical form: one byte string per entry.
        "not_canonical": [[[b64e(entries[0] + b" ")], _note([entries[0] + b" "])]],
    }
    for code, steps in refused.items():
        assert module("replica", vkey, steps)["error"] == code, code
    # A peer shown another directory of the same size: split view.
    other = [*entries[:3], key_added(devices[1], owner="user:u-9", org="o-x", now=NOW)]
    assert module("replica", vkey, [[b64, _note(entries)]], _note(other))["error"] == "split_view"
    assert (
        module("replica", vkey, [[b64[:2], _note(entries[:2])]], _note(entries))["error"]
        == "checkpoint_ahead"
    )


def test_the_recovery_backup_restores_the_same_device_and_python_reads_it(
    module: Module,
) -> None:
    private = VECTORS["devices"]["bob"]["private"]
    backup = module("lockRecovery", private, "une phrase de récupération", 100_000)
    assert "PH_dKBX" not in backup and private["sign"] not in backup
    assert (
        module("unlockRecovery", backup, "une phrase de récupération")
        == (VECTORS["devices"]["bob"]["key_id"])
    )
    assert module("unlockRecovery", backup, "une autre phrase longue")["error"] == (
        "keystore_locked"
    )
    assert module("lockRecovery", private, "trop courte", 100_000)["error"] == (
        "passphrase_too_short"
    )
    tampered = json.loads(backup)
    tampered["kdf"]["iterations"] = 100_001
    assert (
        module("unlockRecovery", json.dumps(tampered), "une phrase de récupération")["error"]
        == "keystore_locked"
    )
    # The Python client restores a browser's backup (maillon keys restore).
    secrets = unlock(backup.encode(), "une phrase de récupération", kind=Kind.RECOVERY)
    assert secrets.public.key_id == VECTORS["devices"]["bob"]["key_id"]


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, "é"], "c": {"z": "\u2028", "y": '\x1f\n"\\'}},
        {"clé": "Zoë Ŧhé « Ø » 🌱", "\u00e9": "", "e\u0301": 0, "~": -5},
    ],
)
def test_canonical_json_is_byte_for_byte_the_python_one(module: Module, value: Any) -> None:
    assert module("canonical", value).encode() == canonical_json(value)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"a": 1, "a": 2}', "duplicate_member"),
        ('{"a": 1', "invalid_json"),
        ("[1]", "invalid_json"),
        ('{"a": NaN}', "invalid_json"),
        ('{"a": "\x01"}', "invalid_json"),
        ('{"a": 1} x', "invalid_json"),
    ],
)
def test_strict_json_refuses_what_python_refuses(module: Module, text: str, code: str) -> None:
    assert module("parseJson", text)["error"] == code


def test_strict_json_keeps_members_named_like_javascript_internals(module: Module) -> None:
    assert module("parseJson", '{"__proto__": 1, "constructor": 2}') == {
        "__proto__": 1, "constructor": 2
    }  # fmt: skip
    assert module("parseJson", '{"a": 1.5, "b": 9007199254740993}') == {
        "a": {"number": "1.5"}, "b": {"number": "9007199254740993"}
    }  # fmt: skip
