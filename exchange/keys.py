"""Device keys: every device signs with Ed25519 and receives with an HPKE key.

A device is a browser profile or a Python client's keystore. Its private keys are made on the
device and never reach the hub in clear (DESIGN §6.1); the hub publishes the public half in the
key directory. A device key is identified by a hash of its canonical public record, so the id
commits to both public keys and the suite: a hub that swapped any of them would change the id.

The *numéro de sécurité* is what two people read to each other (phone, meeting) to check that
the key the hub showed one of them is the key the other's device holds: sixty digits from the
same record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.encoding import b64d, b64e, canonical_json, members
from exchange.errors import MalformedError, VerificationError
from exchange.hpke import KemPrivateKey, Suite, check_public_key, suite_named

RECORD_VERSION = 1
_ID_DOMAIN = b"maillon/device-key/1\x00"
_FINGERPRINT_DOMAIN = b"maillon/numero-de-securite/1\x00"
KEY_ID_PREFIX = "dk_"


_P = 2**255 - 19
# y-coordinates of the Ed25519 points of small order (the 8-torsion): with such a public key a
# signature (R = identity, S = 0) verifies over any message, so anyone could sign "as" the
# device. Refused, with every non-canonical encoding (y >= p).
_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        _P - 2707385501144840649318225287225658788936804267575313519463743609750303402022,
    }
)


def _weak_ed25519(public: bytes) -> bool:
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)  # the top bit is x's sign
    return y >= _P or y in _SMALL_ORDER_Y


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """The public keys of a device: Ed25519 (signs forms) and HPKE (receives view keys)."""

    sign: bytes
    suite: Suite
    kem: bytes
    _id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.sign) != 32 or _weak_ed25519(self.sign):
            raise MalformedError("invalid_key", "Clé de signature invalide.")
        try:
            Ed25519PublicKey.from_public_bytes(self.sign)
        except ValueError:
            raise MalformedError("invalid_key", "Clé de signature invalide.") from None
        check_public_key(self.suite, self.kem)
        digest = hashlib.sha256(_ID_DOMAIN + self.canonical()).digest()
        object.__setattr__(self, "_id", KEY_ID_PREFIX + b64e(digest))

    def record(self) -> dict[str, Any]:
        """The public record as the directory and the formats carry it."""
        return {
            "v": RECORD_VERSION,
            "sign": b64e(self.sign),
            "kem": {"suite": self.suite.value, "pk": b64e(self.kem)},
        }

    def canonical(self) -> bytes:
        """The record's one byte string (what the id and the fingerprint hash)."""
        return canonical_json(self.record())

    @property
    def key_id(self) -> str:
        """``dk_`` and the base64url SHA-256 of the canonical record (46 characters)."""
        return self._id

    @property
    def fingerprint(self) -> str:
        """The *numéro de sécurité*: twelve groups of five digits."""
        digest = hashlib.sha512(_FINGERPRINT_DOMAIN + self.canonical()).digest()
        groups = [int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 60, 5)]
        return " ".join(f"{g:05d}" for g in groups)

    @classmethod
    def from_record(cls, record: object) -> DeviceKey:
        """Read a public record strictly; :class:`MalformedError` for anything else."""
        obj = members(record, what="la clé d'appareil", required={"v", "sign", "kem"})
        # type(): true and 1.0 equal 1 in Python, and other readers (the browser) refuse them.
        if type(obj["v"]) is not int or obj["v"] != RECORD_VERSION:
            raise MalformedError("unknown_version", "Version de clé d'appareil inconnue.")
        kem = members(obj["kem"], what="la clé de chiffrement", required={"suite", "pk"})
        suite = suite_named(kem["suite"])
        return cls(
            sign=b64d(obj["sign"], what="sign", max_bytes=32),
            suite=suite,
            kem=b64d(kem["pk"], what="pk", max_bytes=2048),
        )

    def verify(self, signature: bytes, data: bytes) -> None:
        """:class:`VerificationError` unless this device signed ``data``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.sign).verify(signature, data)
        except InvalidSignature:
            raise VerificationError(
                "signature_invalid", "La signature ne correspond pas à la clé de l'appareil."
            ) from None


@dataclass(frozen=True)
class DeviceSecrets:
    """A device's private keys. Kept in a keystore or a browser's non-extractable keys, never
    sent to the hub."""

    signing: Ed25519PrivateKey
    receiving: KemPrivateKey

    def __repr__(self) -> str:
        return f"DeviceSecrets({self.public.key_id})"

    @classmethod
    def generate(cls, suite: Suite = Suite.X25519) -> DeviceSecrets:
        """New keys for a new device."""
        return cls(Ed25519PrivateKey.generate(), KemPrivateKey.generate(suite))

    @cached_property
    def public(self) -> DeviceKey:
        """The public half, for the directory."""
        return DeviceKey(
            sign=self.signing.public_key().public_bytes_raw(),
            suite=self.receiving.suite,
            kem=self.receiving.public_bytes(),
        )

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature of ``data`` by this device."""
        return self.signing.sign(data)

    def to_private_record(self) -> dict[str, Any]:
        """The private keys as a JSON object (only ever written encrypted: see keystore)."""
        return {
            "v": RECORD_VERSION,
            "sign": b64e(self.signing.private_bytes_raw()),
            "kem": {"suite": self.receiving.suite.value, "sk": b64e(self.receiving.secret)},
        }

    @classmethod
    def from_private_record(cls, record: object) -> DeviceSecrets:
        """Read what :meth:`to_private_record` wrote; :class:`MalformedError` otherwise."""
        obj = members(record, what="les clés privées", required={"v", "sign", "kem"})
        # type(): true and 1.0 equal 1 in Python, and other readers (the browser) refuse them.
        if type(obj["v"]) is not int or obj["v"] != RECORD_VERSION:
            raise MalformedError("unknown_version", "Version de clés privées inconnue.")
        kem = members(obj["kem"], what="la clé de déchiffrement", required={"suite", "sk"})
        suite = suite_named(kem["suite"])
        secret = b64d(kem["sk"], what="sk", max_bytes=32)
        signing = b64d(obj["sign"], what="sign", max_bytes=32)
        if len(secret) != 32 or len(signing) != 32:
            raise MalformedError("invalid_key", "Clé privée de taille incorrecte.")
        return cls(Ed25519PrivateKey.from_private_bytes(signing), KemPrivateKey(suite, secret))
