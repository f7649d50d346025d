"""Keystore and recovery backup: only the passphrase opens them, any change is refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from exchange.encoding import b64e, canonical_json
from exchange.errors import KeystoreError
from exchange.hpke import Suite
from exchange.keys import DeviceSecrets
from exchange.keystore import Kind, ScryptParams, lock, unlock, write_atomically

FAST = ScryptParams(n=2**14, r=8, p=1)  # the smallest a reader accepts: quick tests
PASSPHRASE = "vingt-trois pommes vertes"


@pytest.mark.parametrize("suite", list(Suite))
def test_the_passphrase_opens_the_keys_it_locked(suite: Suite) -> None:
    secrets = DeviceSecrets.generate(suite)
    data = lock(secrets, PASSPHRASE, params=FAST)
    opened = unlock(data, PASSPHRASE)
    assert opened.public == secrets.public
    assert opened.sign(b"x") == secrets.sign(b"x")  # Ed25519 is deterministic
    assert PASSPHRASE.encode() not in data


def test_a_passphrase_typed_with_decomposed_accents_still_opens() -> None:
    secrets = DeviceSecrets.generate()
    data = lock(secrets, "phrase de passe très sûre", params=FAST)
    decomposed = "phrase de passe tre\u0300s su\u0302re"
    assert unlock(data, decomposed).public == secrets.public


def test_a_wrong_passphrase_and_a_changed_file_get_the_same_answer() -> None:
    data = lock(DeviceSecrets.generate(), PASSPHRASE, params=FAST)
    document = json.loads(data)
    changed_header = dict(document, kdf=dict(document["kdf"], r=9))
    flipped = bytearray(data)
    flipped[data.index(b'"ciphertext": "') + 20] ^= 0x01
    for candidate, passphrase in [
        (data, "une autre phrase de passe"),
        (json.dumps(changed_header).encode(), PASSPHRASE),
    ]:
        with pytest.raises(KeystoreError) as refused:
            unlock(candidate, passphrase)
        assert refused.value.code == "keystore_locked"
    with pytest.raises(KeystoreError):
        unlock(bytes(flipped), PASSPHRASE)


def test_a_keystore_is_not_a_recovery_backup() -> None:
    data = lock(DeviceSecrets.generate(), PASSPHRASE, kind=Kind.RECOVERY, params=FAST)
    with pytest.raises(KeystoreError) as refused:
        unlock(data, PASSPHRASE, kind=Kind.KEYSTORE)
    assert refused.value.code == "keystore_kind"
    assert unlock(data, PASSPHRASE, kind=Kind.RECOVERY)


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [
        (2**10, 8, 1),
        (2**24, 8, 1),
        (3 * 2**14, 8, 1),
        (2**14, 64, 1),
        (2**14, 8, 99),
        # each within its own bound, together 2 GiB of memory / 16 times the default's work
        (2**20, 16, 4),
        (2**20, 8, 1),
    ],
)
def test_kdf_parameters_a_file_cannot_impose(n: int, r: int, p: int) -> None:
    # A file must not make the reader spend minutes or gigabytes, nor weaken the key.
    document = json.loads(lock(DeviceSecrets.generate(), PASSPHRASE, params=FAST))
    document["kdf"].update(n=n, r=r, p=p)
    with pytest.raises(KeystoreError) as refused:
        unlock(json.dumps(document).encode(), PASSPHRASE)
    assert refused.value.code == "kdf_params"


@pytest.mark.parametrize("data", [b"", b"{}", b"not json", b'{"format": 1}', b"[" * 100])
def test_a_damaged_file_is_refused_plainly(data: bytes) -> None:
    with pytest.raises(KeystoreError):
        unlock(data, PASSPHRASE)


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(KeystoreError) as refused:
        lock(DeviceSecrets.generate(), "court", params=FAST)
    assert refused.value.code == "passphrase_too_short"


def test_writes_are_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "cles" / "keystore.json"
    write_atomically(path, b"first")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keystore.json"]  # no temporary left


def _browser_backup(secrets: DeviceSecrets, iterations: int, kind: str = Kind.RECOVERY) -> bytes:
    """A recovery backup as the browser module writes it (PBKDF2-SHA256: docs/browser.md)."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": kind, "kdf": {"name": "pbkdf2-sha256", "iterations": iterations,
                                      "salt": b64e(salt)}}  # fmt: skip
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    ciphertext = AESGCM(key.derive(PASSPHRASE.encode())).encrypt(
        nonce, canonical_json({"device": secrets.to_private_record()}), canonical_json(header)
    )
    return json.dumps(header | {"nonce": b64e(nonce), "ciphertext": b64e(ciphertext)}).encode()


def test_a_browser_recovery_backup_restores_here_within_bounded_work() -> None:
    secrets = DeviceSecrets.generate()
    data = _browser_backup(secrets, 100_000)
    assert unlock(data, PASSPHRASE, kind=Kind.RECOVERY).public == secrets.public
    with pytest.raises(KeystoreError) as wrong:
        unlock(data, "une autre phrase de passe", kind=Kind.RECOVERY)
    assert wrong.value.code == "keystore_locked"
    # A file may not ask for unbounded (or trivial) work, nor be a keystore: those are scrypt.
    for iterations in (99_999, 5_000_001):
        with pytest.raises(KeystoreError) as costly:
            unlock(_browser_backup(secrets, iterations), PASSPHRASE, kind=Kind.RECOVERY)
        assert costly.value.code == "kdf_params"
    with pytest.raises(KeystoreError) as keystore:
        unlock(_browser_backup(secrets, 100_000, Kind.KEYSTORE), PASSPHRASE)
    assert keystore.value.code == "kdf_params"
