"""The HPKE suites Maillon seals keys with (RFC 9180, base mode, single shot).

Two suites, named per recipient key (a device key says which one it is):

- ``x25519``: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM — KEM 0x0020, KDF 0x0001,
  AEAD 0x0002. Every device has it; the browser implements it with WebCrypto.
- ``mlkem768-x25519``: MLKEM768-X25519 (X-Wing, draft-ietf-hpke-pq, KEM 0x647a) / HKDF-SHA256 /
  AES-256-GCM: a hybrid post-quantum KEM for Python clients that want it. Its private key is the
  32-byte X-Wing seed; its public key the ML-KEM-768 encapsulation key (1184 bytes) followed by
  the X25519 public key (32 bytes).

``cryptography`` does the HPKE. Its single-shot API binds context through ``info`` only (its
``aad`` is always empty), which is what the envelope uses: ``info`` carries the protocol
version, the form, the view and the recipient key. A sealed message is ``enc || ciphertext``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from exchange.errors import MalformedError, VerificationError


class Suite(StrEnum):
    """An HPKE suite by the name the formats use."""

    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"


_SUITES = {
    Suite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    Suite.MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}
PRIVATE_SIZE = {Suite.X25519: 32, Suite.MLKEM768_X25519: 32}
PUBLIC_SIZE = {Suite.X25519: 32, Suite.MLKEM768_X25519: 1184 + 32}
ENC_SIZE = {Suite.X25519: 32, Suite.MLKEM768_X25519: 1088 + 32}
_TAG = 16

_KemPrivate = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
_KemPublic = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey


def suite_named(name: object) -> Suite:
    """The suite called ``name``; :class:`MalformedError` for any other."""
    try:
        return Suite(str(name)) if isinstance(name, str) else Suite("")
    except ValueError:
        raise MalformedError(
            "unknown_suite", "Suite de chiffrement inconnue : %(name)s.", name=str(name)[:40]
        ) from None


def _xwing_parts(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    # X-Wing's key generation (draft-connolly-cfrg-xwing-kem §5.2): SHAKE256(seed, 96) gives
    # the ML-KEM-768 seed (d || z) then the X25519 private key.
    expanded = hashlib.shake_256(seed).digest(96)
    return (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


@dataclass(frozen=True, slots=True)
class KemPrivateKey:
    """A recipient's HPKE private key: its suite and its private bytes (X25519 scalar, or the
    X-Wing seed)."""

    suite: Suite
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != PRIVATE_SIZE[self.suite]:
            raise ValueError("wrong private key size for the suite")

    def __repr__(self) -> str:
        return f"KemPrivateKey({self.suite.value}, <secret>)"

    @classmethod
    def generate(cls, suite: Suite = Suite.X25519) -> KemPrivateKey:
        """A fresh key of ``suite`` (from the operating system's random source)."""
        if suite is Suite.X25519:
            return cls(suite, x25519.X25519PrivateKey.generate().private_bytes_raw())
        return cls(suite, os.urandom(32))  # a 32-byte seed is the whole X-Wing private key

    def _key(self) -> _KemPrivate:
        if self.suite is Suite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.secret)
        return hpke.MLKEM768X25519PrivateKey(*_xwing_parts(self.secret))

    def public_bytes(self) -> bytes:
        """The public key as the formats carry it."""
        if self.suite is Suite.X25519:
            key = x25519.X25519PrivateKey.from_private_bytes(self.secret)
            return key.public_key().public_bytes_raw()
        m, x = _xwing_parts(self.secret)
        return m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()

    def open(self, sealed: bytes, info: bytes) -> bytes:
        """The plaintext sealed to this key under ``info``; :class:`VerificationError` when it
        was not (another key, another ``info``, a changed byte)."""
        if len(sealed) < ENC_SIZE[self.suite] + _TAG:
            raise VerificationError("seal_invalid", "La clé scellée est tronquée.")
        try:
            return _SUITES[self.suite].decrypt(sealed, self._key(), info=info)
        except (InvalidTag, ValueError):
            raise VerificationError(
                "seal_invalid", "La clé scellée ne s'ouvre pas avec cette clé d'appareil."
            ) from None


_P = 2**255 - 19
# u-coordinates (mod p) of the X25519 points of small order, on the curve or its twist: a key
# among them makes every shared secret zero, so sealing to it fails for every sender (and a
# registered one would block all forms of the cases its owner is on). As in libsodium's list.
_LOW_ORDER_U = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    }
)


def _low_order(x25519_public: bytes) -> bool:
    u = int.from_bytes(x25519_public, "little") & ((1 << 255) - 1)  # RFC 7748 masks the top bit
    return u % _P in _LOW_ORDER_U


def _public_key(suite: Suite, public: bytes) -> _KemPublic:
    if len(public) != PUBLIC_SIZE[suite]:
        raise MalformedError(
            "invalid_key",
            "Clé publique de taille incorrecte pour la suite %(suite)s.",
            suite=suite.value,
        )
    if _low_order(public[-32:]):  # the X25519 key, alone or the hybrid's last 32 bytes
        raise MalformedError("invalid_key", "Clé publique invalide (ordre faible).")
    try:
        if suite is Suite.X25519:
            return x25519.X25519PublicKey.from_public_bytes(public)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(public[:1184]),
            x25519.X25519PublicKey.from_public_bytes(public[1184:]),
        )
    except ValueError:
        raise MalformedError("invalid_key", "Clé publique invalide.") from None


def check_public_key(suite: Suite, public: bytes) -> None:
    """:class:`MalformedError` unless ``public`` is a valid public key of ``suite``."""
    _public_key(suite, public)


def seal(suite: Suite, public: bytes, plaintext: bytes, info: bytes) -> bytes:
    """``plaintext`` sealed to the public key ``public`` of ``suite``, bound to ``info``:
    ``enc || ciphertext``, a fresh ephemeral key each time."""
    return _SUITES[suite].encrypt(plaintext, _public_key(suite, public), info=info)


def sealed_size(suite: Suite, plaintext_size: int) -> int:
    """The length of a sealed message of ``plaintext_size`` bytes."""
    return ENC_SIZE[suite] + plaintext_size + _TAG
