"""A device's private keys at rest: a passphrase-protected file (DESIGN §6.1).

Two uses of one format: the Python client's **keystore** on the partner's machine, and the
**recovery backup** that restores a device's keys on a new machine, sealed under a recovery
passphrase the hub never sees (the hub may keep the backup: without the passphrase it is noise).

The file is versioned and authenticated (matrix-nio's key export is the model)::

    {"format": "maillon/keystore/1" | "maillon/recovery/1",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64url>"},
     "nonce": "<base64url>", "ciphertext": "<base64url>"}

The key is scrypt(passphrase, salt); the keys are AES-256-GCM-encrypted with the format and the
KDF parameters as associated data, so a changed header fails like a wrong passphrase. KDF
parameters are read within bounds (a file cannot make the reader spend minutes or gigabytes).
Writes are atomic: a temporary file, fsync, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from exchange.encoding import b64d, b64e, canonical_json, members, parse_json_object
from exchange.errors import KeystoreError, MalformedError
from exchange.keys import DeviceSecrets

MIN_PASSPHRASE_CHARS = 12
_MAX_FILE_BYTES = 64 * 1024
# The browser's recovery backups use PBKDF2-HMAC-SHA256 (600,000 iterations when made); a reader
# bounds the work a file can ask for.
PBKDF2 = "pbkdf2-sha256"
PBKDF2_MIN_ITERATIONS = 100_000
PBKDF2_MAX_ITERATIONS = 5_000_000


class Kind(StrEnum):
    """What a protected file is for (its ``format``)."""

    KEYSTORE = "maillon/keystore/1"
    RECOVERY = "maillon/recovery/1"


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt's cost: n = 2^17, r = 8 (128 MiB, about half a second) by default."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """:class:`KeystoreError` for parameters outside what a reader accepts."""
        if not (2**14 <= self.n <= 2**20 and self.n & (self.n - 1) == 0):
            raise KeystoreError("kdf_params", "Paramètres de dérivation refusés (n).")
        if not (1 <= self.r <= 16 and 1 <= self.p <= 4):
            raise KeystoreError("kdf_params", "Paramètres de dérivation refusés (r, p).")
        # A file may not make its reader spend more than twice the default's memory (256 MiB:
        # 128 * n * r bytes) or four times its work: a damaged or hostile keystore must not
        # exhaust the machine before the passphrase is even checked.
        if 128 * self.n * self.r > 256 * 2**20 or self.n * self.r * self.p > 4 * 2**17 * 8:
            raise KeystoreError("kdf_params", "Paramètres de dérivation refusés (coût).")


def _normalise(passphrase: str) -> bytes:
    # The same passphrase typed on another system (composed or decomposed accents) must work.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def check_passphrase(passphrase: str) -> None:
    """:class:`KeystoreError` when ``passphrase`` is too short to protect keys."""
    if len(unicodedata.normalize("NFC", passphrase)) < MIN_PASSPHRASE_CHARS:
        raise KeystoreError(
            "passphrase_too_short",
            "La phrase de passe doit compter au moins %(n)s caractères.",
            n=MIN_PASSPHRASE_CHARS,
        )


def _header(kind: Kind, params: ScryptParams, salt: bytes) -> dict[str, object]:
    return {
        "format": kind.value,
        "kdf": {"name": "scrypt", "n": params.n, "r": params.r, "p": params.p, "salt": b64e(salt)},
    }


def _key(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    return Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p).derive(
        _normalise(passphrase)
    )


def lock(
    secrets: DeviceSecrets,
    passphrase: str,
    *,
    kind: Kind = Kind.KEYSTORE,
    params: ScryptParams = ScryptParams(),
) -> bytes:
    """``secrets`` encrypted under ``passphrase``: the bytes of a keystore or recovery file."""
    check_passphrase(passphrase)
    params.check()
    salt = os.urandom(16)
    nonce = os.urandom(12)
    header = _header(kind, params, salt)
    plaintext = canonical_json({"device": secrets.to_private_record()})
    ciphertext = AESGCM(_key(passphrase, salt, params)).encrypt(
        nonce, plaintext, canonical_json(header)
    )
    document = {**header, "nonce": b64e(nonce), "ciphertext": b64e(ciphertext)}
    return json.dumps(document, indent=1).encode("ascii") + b"\n"


def unlock(data: bytes, passphrase: str, *, kind: Kind = Kind.KEYSTORE) -> DeviceSecrets:
    """The keys in a file :func:`lock` wrote; :class:`KeystoreError` if the passphrase is wrong
    or the file was changed, damaged or is of another kind."""
    try:
        document = parse_json_object(data, what="le fichier de clés", max_bytes=_MAX_FILE_BYTES)
        members(
            document, what="le fichier de clés", required={"format", "kdf", "nonce", "ciphertext"}
        )
        kdf_name = document["kdf"].get("name") if isinstance(document["kdf"], dict) else None
        pbkdf2_fields = {"name", "iterations", "salt"}
        fields = pbkdf2_fields if kdf_name == PBKDF2 else {"name", "n", "r", "p", "salt"}
        kdf = members(document["kdf"], what="kdf", required=fields)
        salt = b64d(kdf["salt"], what="salt", max_bytes=64)
        nonce = b64d(document["nonce"], what="nonce", max_bytes=12)
        ciphertext = b64d(document["ciphertext"], what="ciphertext", max_bytes=_MAX_FILE_BYTES)
    except MalformedError as error:
        raise KeystoreError("keystore_damaged", "Le fichier de clés est illisible.") from error
    if document["format"] != kind.value:
        raise KeystoreError("keystore_kind", "Ce fichier n'est pas du type attendu.")
    if len(nonce) != 12 or len(salt) < 16:
        raise KeystoreError("keystore_damaged", "Le fichier de clés est illisible.")
    if kdf_name == PBKDF2:
        # A browser's recovery backup (WebCrypto has no scrypt): docs/browser.md. Keystores
        # are the Python client's own and always use scrypt.
        iterations = kdf["iterations"]
        if kind is not Kind.RECOVERY or not (
            isinstance(iterations, int)
            and not isinstance(iterations, bool)
            and PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS
        ):
            raise KeystoreError("kdf_params", "Paramètres de dérivation refusés.")
        header: dict[str, object] = {
            "format": kind.value,
            "kdf": {"name": PBKDF2, "iterations": iterations, "salt": b64e(salt)},
        }
        key = PBKDF2HMAC(
            algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations
        ).derive(_normalise(passphrase))
        return _open(key, nonce, ciphertext, header)
    numbers = (kdf["n"], kdf["r"], kdf["p"])
    if kdf["name"] != "scrypt" or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in numbers
    ):
        raise KeystoreError("kdf_params", "Paramètres de dérivation refusés.")
    params = ScryptParams(n=kdf["n"], r=kdf["r"], p=kdf["p"])
    params.check()
    return _open(_key(passphrase, salt, params), nonce, ciphertext, _header(kind, params, salt))


def _open(key: bytes, nonce: bytes, ciphertext: bytes, header: dict[str, object]) -> DeviceSecrets:
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, canonical_json(header))
    except InvalidTag:
        # A wrong passphrase and a changed byte are one answer: the file reveals nothing more.
        raise KeystoreError(
            "keystore_locked", "Phrase de passe incorrecte, ou fichier de clés modifié."
        ) from None
    try:
        body = members(
            parse_json_object(plaintext, what="les clés", max_bytes=_MAX_FILE_BYTES),
            what="les clés",
            required={"device"},
        )
        return DeviceSecrets.from_private_record(body["device"])
    except MalformedError as error:
        raise KeystoreError("keystore_damaged", "Le fichier de clés est illisible.") from error


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that a crash leaves the old file or the new
    one, never a mix: temporary file in the same directory, fsync, rename, fsync the directory."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
