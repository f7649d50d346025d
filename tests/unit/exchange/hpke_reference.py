"""An independent, minimal RFC 9180 base mode (and the X-Wing KEM), for the tests only.

Built from primitives (X25519, ML-KEM-768, HKDF, AES-GCM) rather than ``cryptography``'s HPKE,
so that the vectors check both: this reference reproduces every value of the official vectors,
and the HPKE the envelope uses interoperates with it both ways. Single-shot base mode only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

KEM_X25519 = 0x0020
KEM_XWING = 0x647A
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002
AEAD_CHACHA20_POLY1305 = 0x0003
_AEADS = {AEAD_AES_256_GCM: AESGCM, AEAD_CHACHA20_POLY1305: ChaCha20Poly1305}
_NN = 12
_XWING_LABEL = b"\\.//^\\"


def _i2osp(n: int, w: int) -> bytes:
    return n.to_bytes(w, "big")


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """RFC 9180 §4 LabeledExtract with HKDF-SHA256."""
    return HKDF.extract(hashes.SHA256(), salt or None, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """RFC 9180 §4 LabeledExpand with HKDF-SHA256."""
    labeled = _i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def _x25519_public(secret: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def _dh(secret: bytes, public: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(secret).exchange(
        x25519.X25519PublicKey.from_public_bytes(public)
    )


def dhkem_derive_key_pair(ikm: bytes) -> tuple[bytes, bytes]:
    """DHKEM(X25519) DeriveKeyPair (RFC 9180 §7.1.3)."""
    sid = b"KEM" + _i2osp(KEM_X25519, 2)
    secret = labeled_expand(sid, labeled_extract(sid, b"", b"dkp_prk", ikm), b"sk", b"", 32)
    return secret, _x25519_public(secret)


def _dhkem_shared(dh: bytes, kem_context: bytes) -> bytes:
    sid = b"KEM" + _i2osp(KEM_X25519, 2)
    prk = labeled_extract(sid, b"", b"eae_prk", dh)
    return labeled_expand(sid, prk, b"shared_secret", kem_context, 32)


def dhkem_encap(public: bytes, ephemeral: bytes) -> tuple[bytes, bytes]:
    """DHKEM(X25519) Encap with a given ephemeral secret: (shared secret, enc)."""
    enc = _x25519_public(ephemeral)
    return _dhkem_shared(_dh(ephemeral, public), enc + public), enc


def dhkem_decap(enc: bytes, secret: bytes) -> bytes:
    """DHKEM(X25519) Decap."""
    return _dhkem_shared(_dh(secret, enc), enc + _x25519_public(secret))


def xwing_public(seed: bytes) -> bytes:
    """X-Wing public key of a 32-byte seed: ML-KEM-768 key (1184) || X25519 key (32)."""
    expanded = hashlib.shake_256(seed).digest(96)
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).public_key().public_bytes_raw()
    return m + _x25519_public(expanded[64:])


def xwing_decap(enc: bytes, seed: bytes) -> bytes:
    """X-Wing Decap: ML-KEM-768 and X25519 secrets combined with SHA3-256."""
    expanded = hashlib.shake_256(seed).digest(96)
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).decapsulate(ct_m)
    ss_x = _dh(expanded[64:], ct_x)
    pk_x = _x25519_public(expanded[64:])
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _XWING_LABEL).digest()


@dataclass(frozen=True)
class Context:
    """The base-mode key schedule's outputs."""

    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes
    aead: int

    def nonce(self, seq: int) -> bytes:
        """The nonce of message ``seq``."""
        return bytes(a ^ b for a, b in zip(self.base_nonce, _i2osp(seq, _NN), strict=True))

    def seal(self, seq: int, aad: bytes, plaintext: bytes) -> bytes:
        """Message ``seq`` sealed."""
        return _AEADS[self.aead](self.key).encrypt(self.nonce(seq), plaintext, aad)

    def open(self, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        """Message ``seq`` opened."""
        return _AEADS[self.aead](self.key).decrypt(self.nonce(seq), ciphertext, aad)

    def export(self, suite_id: bytes, context: bytes, length: int) -> bytes:
        """RFC 9180 §5.3 secret export."""
        return labeled_expand(suite_id, self.exporter_secret, b"sec", context, length)


def suite_id(kem: int, aead: int) -> bytes:
    """``HPKE || kem || kdf || aead`` with HKDF-SHA256."""
    return b"HPKE" + _i2osp(kem, 2) + _i2osp(KDF_HKDF_SHA256, 2) + _i2osp(aead, 2)


def key_schedule(kem: int, aead: int, shared_secret: bytes, info: bytes) -> Context:
    """RFC 9180 §5.1 KeySchedule, base mode (no PSK)."""
    sid = suite_id(kem, aead)
    context = (
        b"\x00"
        + labeled_extract(sid, b"", b"psk_id_hash", b"")
        + labeled_extract(sid, b"", b"info_hash", info)
    )
    secret = labeled_extract(sid, shared_secret, b"secret", b"")
    return Context(
        key_schedule_context=context,
        secret=secret,
        key=labeled_expand(sid, secret, b"key", context, 32),
        base_nonce=labeled_expand(sid, secret, b"base_nonce", context, _NN),
        exporter_secret=labeled_expand(sid, secret, b"exp", context, 32),
        aead=aead,
    )


def open_single_shot(kem: int, secret: bytes, info: bytes, sealed: bytes) -> bytes:
    """Open ``enc || ciphertext`` (AES-256-GCM, empty aad), as the envelope seals keys."""
    enc_size = 32 if kem == KEM_X25519 else 1120
    enc, ciphertext = sealed[:enc_size], sealed[enc_size:]
    shared = dhkem_decap(enc, secret) if kem == KEM_X25519 else xwing_decap(enc, secret)
    return key_schedule(kem, AEAD_AES_256_GCM, shared, info).open(0, b"", ciphertext)
