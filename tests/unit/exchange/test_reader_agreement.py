"""Inputs two readers (Python and the browser module) could read differently are refused by
both: non-ASCII digits, versions spelt ``true`` or ``1.0``, integers beyond a double's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, NoteSigner, read_cosignature
from audit.errors import CheckpointError, CosignatureRefused
from exchange.directory import key_added, parse_entry
from exchange.encoding import canonical_json
from exchange.envelope import CharterRef, ViewPlan, seal
from exchange.errors import MalformedError
from exchange.keys import DeviceKey, DeviceSecrets

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SIGNER = NoteSigner("maillon.test/cles", Ed25519PrivateKey.generate())


def test_a_checkpoint_size_in_other_digits_is_not_a_checkpoint() -> None:
    body = Checkpoint(SIGNER.name, 2, b"\x01" * 32, NOW).body()
    superscript = body.replace("\n2\n", "\n²\n")  # "²".isdigit() is True, int("²") fails
    with pytest.raises(CheckpointError):
        Checkpoint.parse_body(superscript)
    note = str(SIGNER.sign_checkpoint(Checkpoint(SIGNER.name, 2, b"\x01" * 32, NOW)))
    with pytest.raises(CosignatureRefused) as refused:
        read_cosignature(note.replace("\n2\n", "\n²\n"), "— w AAAA", [])
    assert refused.value.code == "malformed_checkpoint"


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_version_that_only_equals_one_is_refused(version: object) -> None:
    key = DeviceSecrets.generate().public
    with pytest.raises(MalformedError):
        DeviceKey.from_record(key.record() | {"v": version})
    entry = key_added(key, owner="user:u-1", org="o-1", now=NOW)
    obj = json.loads(entry) | {"v": version}
    with pytest.raises(MalformedError):
        parse_entry(canonical_json(obj))


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**60])
def test_an_integer_no_double_holds_is_not_sealed(value: int) -> None:
    sender, recipient = DeviceSecrets.generate(), DeviceSecrets.generate()
    with pytest.raises(ValueError, match="2\\*\\*53"):
        seal(
            secrets=sender, user="user:u-1", org="o-1", case="C-7K3Q-X9M2",
            charter=CharterRef("charte", 1, "sha256:" + "3" * 64), consent=None,
            purpose="suivi_parcours", directory="note", now=NOW,
            views=[ViewPlan({"parcours.nombre": value}, [recipient.public])],
        )  # fmt: skip
    seal(
        secrets=sender, user="user:u-1", org="o-1", case="C-7K3Q-X9M2",
        charter=CharterRef("charte", 1, "sha256:" + "3" * 64), consent=None,
        purpose="suivi_parcours", directory="note", now=NOW,
        views=[ViewPlan({"parcours.nombre": 2**53 - 1}, [recipient.public])],
    )  # fmt: skip
