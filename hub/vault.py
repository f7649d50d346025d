"""At-rest encryption of what the hub itself holds about a case (tier ``hub`` fields).

Liaison-form content never reaches the hub in clear (tier ``e2e``). The few fields the hub must
process (release date for alerts, exit type for indicators…) are stored here, encrypted:

- each case has its own 256-bit data key, stored only *wrapped* (AES-256-GCM) under the hub's
  key-encryption key, which is derived from ``MAILLON_DATA_KEY`` (configuration, never the
  database): a database dump alone reveals no value;
- each value is sealed with AES-256-GCM under the case key, with the case reference and the
  field id as associated data, so a ciphertext moved to another case or field fails to open;
- destroying a case's wrapped key destroys every value of the case at once (crypto-shredding,
  DESIGN §2.6), backups included.

One exception, :class:`VaultError`, for every failure; it says nothing about why.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE = 12
_KEY = 32
_KEK_INFO = b"maillon/vault/kek/v1"
_WRAP_AAD = b"maillon/vault/case-key/v1|"
_FIELD_AAD = b"maillon/vault/field/v1|"
_DOCUMENT_AAD = b"maillon/vault/document/v1|"
_TAG_PREFIX = b"maillon/vault/tag/v1|"
MAX_VALUE_BYTES = 4096
# Consent evidence (a scanned form) is the largest thing sealed; the hub caps uploads below this.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class VaultError(Exception):
    """A value or a case key could not be sealed or opened."""


class FieldVault:
    """Seals and opens hub-tier values under per-case keys."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) < 32:
            raise VaultError("the data key must be at least 32 bytes")
        kek = HKDF(algorithm=hashes.SHA256(), length=_KEY, salt=None, info=_KEK_INFO).derive(
            data_key
        )
        self._kek = AESGCM(kek)

    def new_case_key(self, case_ref: str) -> bytes:
        """A fresh data key for case ``case_ref``, returned wrapped (store this, nothing else)."""
        return self._seal(self._kek, os.urandom(_KEY), _WRAP_AAD + case_ref.encode())

    def seal(self, wrapped_key: bytes, case_ref: str, field_id: str, value: str) -> bytes:
        """The ciphertext of ``value`` for field ``field_id`` of case ``case_ref``."""
        data = value.encode("utf-8")
        if len(data) > MAX_VALUE_BYTES:
            raise VaultError("value too long")
        return self._seal(self._case_cipher(wrapped_key, case_ref), data, _aad(case_ref, field_id))

    def open(self, wrapped_key: bytes, case_ref: str, field_id: str, blob: bytes) -> str:
        """The clear value sealed by :meth:`seal` for the same case and field."""
        data = self._open(self._case_cipher(wrapped_key, case_ref), blob, _aad(case_ref, field_id))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError("cannot open") from None

    def seal_document(self, wrapped_key: bytes, case_ref: str, label: str, data: bytes) -> bytes:
        """The ciphertext of a document (a scan, a justification) of case ``case_ref``, bound
        to ``label`` — another domain than field values, so neither opens as the other."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise VaultError("document too long")
        aad = _DOCUMENT_AAD + case_ref.encode() + b"|" + label.encode()
        return self._seal(self._case_cipher(wrapped_key, case_ref), data, aad)

    def open_document(self, wrapped_key: bytes, case_ref: str, label: str, blob: bytes) -> bytes:
        """The clear bytes sealed by :meth:`seal_document` for the same case and label."""
        aad = _DOCUMENT_AAD + case_ref.encode() + b"|" + label.encode()
        return self._open(self._case_cipher(wrapped_key, case_ref), blob, aad)

    def tag(self, wrapped_key: bytes, case_ref: str, label: str, value: str) -> str:
        """A keyed digest of ``value`` under the case's own key: equal values give equal tags,
        and nobody without the case key can test a guess (a release date has few candidates,
        so a plain hash would give it away). Shredding the case key unlinks every tag."""
        key = self._open(self._kek, wrapped_key, _WRAP_AAD + case_ref.encode())
        mac = hmac.new(key, digestmod=hashlib.sha256)
        mac.update(_TAG_PREFIX + case_ref.encode() + b"|" + label.encode() + b"|")
        mac.update(value.encode("utf-8"))
        return mac.hexdigest()[:32]

    def for_case(self, wrapped_key: bytes, case_ref: str) -> CaseSealer:
        """A sealer bound to one case (what the consent package asks for)."""
        return CaseSealer(self, wrapped_key, case_ref)

    def _case_cipher(self, wrapped_key: bytes, case_ref: str) -> AESGCM:
        return AESGCM(self._open(self._kek, wrapped_key, _WRAP_AAD + case_ref.encode()))

    @staticmethod
    def _seal(cipher: AESGCM, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)  # random 96-bit nonces: far below the 2^32 messages per key
        return _VERSION + nonce + cipher.encrypt(nonce, data, aad)

    @staticmethod
    def _open(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
            raise VaultError("cannot open")
        try:
            return cipher.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], aad)
        except InvalidTag:
            raise VaultError("cannot open") from None


@dataclass(frozen=True)
class CaseSealer:
    """Seals and opens documents of one case (``consent.services.Sealer``)."""

    vault: FieldVault
    wrapped_key: bytes
    case_ref: str

    def seal(self, label: str, data: bytes) -> bytes:
        """The ciphertext of ``data`` under the case's key, bound to ``label``."""
        return self.vault.seal_document(self.wrapped_key, self.case_ref, label, data)

    def open(self, label: str, blob: bytes) -> bytes:
        """The clear bytes of ``blob``."""
        return self.vault.open_document(self.wrapped_key, self.case_ref, label, blob)


def _aad(case_ref: str, field_id: str) -> bytes:
    # "|" cannot occur in a case reference or a field id, so the encoding is unambiguous.
    return _FIELD_AAD + case_ref.encode() + b"|" + field_id.encode()
