"""Signed checkpoints in the C2SP tlog-checkpoint / signed-note formats, and cosignatures.

A checkpoint commits the log to a tree size and root at a time. Its body is::

    <origin>\\n                 e.g. maillon.example.fr/audit
    <tree size, decimal>\\n
    <base64 root hash>\\n
    timestamp <UTC time, YYYY-MM-DDTHH:MM:SS.ffffffZ>\\n      (extension line)

and it is published as a signed note (c2sp.org/signed-note): the body, a blank line, then one
line per signature ``— <key name> base64(key ID || signature)``. The log signs with Ed25519
(signature type 0x01, key ID ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``). Witnesses
add cosignatures (c2sp.org/tlog-cosignature, type 0x04): an Ed25519 signature over
``"cosignature/v1\\ntime <POSIX seconds>\\n" || body`` carried as
``key ID || u64 big-endian timestamp || signature``. Verifier keys use the signed-note
"vkey" text form ``<name>+<hex key ID>+<base64(type || public key)>``.

Using these public formats means a checkpoint can be checked with any tlog tooling, and
witness cosignatures are just more signature lines on the same note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.errors import AuditError, CheckpointError, CosignatureRefused
from audit.events import format_time, utc_time
from audit.merkle import HASH_SIZE, Frontier

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "
_NAME = re.compile(r"[^\s+]{1,255}")
_TIME_PREFIX = "timestamp "
_MAX_SIGNATURES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckpointError("bad base64") from None


def _check_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise CheckpointError("a key name must be non-empty, without spaces or '+'")
    return name


def _key_id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log ``origin`` had ``size`` leaves with ``root`` at ``time``."""

    origin: str
    size: int
    root: bytes
    time: datetime

    def __post_init__(self) -> None:
        _check_name(self.origin)
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise CheckpointError("a checkpoint needs a size >= 0 and a 32-byte root")
        object.__setattr__(self, "time", utc_time(self.time).replace(tzinfo=UTC))

    def body(self) -> str:
        """The note text that is signed (ends with a newline)."""
        return (
            f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"
            f"{_TIME_PREFIX}{format_time(self.time)}\n"
        )

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body; refuses anything that does not re-encode identically."""
        lines = text.split("\n")
        if len(lines) != 5 or lines[-1] != "":
            raise CheckpointError("a checkpoint body has exactly four lines")
        origin, size_text, root_text, time_line = lines[:4]
        if (
            not (size_text.isascii() and size_text.isdigit())  # "²" is a digit to isdigit()
            or (size_text != "0" and size_text.startswith("0"))
        ):
            raise CheckpointError("tree size must be a decimal without leading zeros")
        if not time_line.startswith(_TIME_PREFIX) or not time_line.endswith("Z"):
            raise CheckpointError("missing timestamp extension line")
        try:
            when = datetime.fromisoformat(time_line[len(_TIME_PREFIX) : -1]).replace(tzinfo=UTC)
        except ValueError:
            raise CheckpointError("bad timestamp") from None
        checkpoint = cls(origin, int(size_text), _unb64(root_text), when)
        if checkpoint.body() != text:
            raise CheckpointError("checkpoint body is not in canonical form")
        return checkpoint


@dataclass(frozen=True, slots=True)
class SignatureLine:
    """One ``— name base64(key ID || signature)`` line of a note."""

    name: str
    key_id: bytes
    signature: bytes

    def text(self) -> str:
        """The line, without its newline."""
        return f"{_DASH}{self.name} {_b64(self.key_id + self.signature)}"

    @classmethod
    def parse(cls, line: str) -> SignatureLine:
        """Parse one ``— name base64(key ID || signature)`` line (without its newline)."""
        if not isinstance(line, str) or not line.startswith(_DASH):
            raise CheckpointError("malformed signature line")
        name, _, blob = line[len(_DASH) :].partition(" ")
        raw = _unb64(blob)
        if len(raw) < 5:
            raise CheckpointError("signature too short")
        return cls(_check_name(name), raw[:4], raw[4:])


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note text and its signature lines."""

    text: str
    signatures: tuple[SignatureLine, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.text() + "\n" for s in self.signatures)

    def with_signature(self, line: SignatureLine) -> SignedNote:
        """This note with one more signature line (e.g. a witness cosignature)."""
        return SignedNote(self.text, (*self.signatures, line))

    @classmethod
    def parse(cls, note: str) -> SignedNote:
        """Split a signed note into its text and signature lines (no verification)."""
        if not isinstance(note, str) or any(
            ord(c) < 0x20 and c != "\n" for c in note
        ):  # signed-note: no control characters
            raise CheckpointError("a note is text without control characters")
        if not note.endswith("\n"):
            raise CheckpointError("a note ends with a newline")
        cut = note.rfind("\n\n")
        if cut < 0:
            raise CheckpointError("a note needs a blank line before its signatures")
        text, sig_block = note[: cut + 1], note[cut + 2 :]
        lines = sig_block.split("\n")[:-1]
        if not lines or len(lines) > _MAX_SIGNATURES:
            raise CheckpointError("a note needs between 1 and 32 signature lines")
        return cls(text, tuple(SignatureLine.parse(line) for line in lines))


class NoteSigner:
    """Signs notes with an Ed25519 key under a key name (signed-note type 0x01).

    For the audit log the key name is also the checkpoint origin.
    """

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = key
        self.public_key = key.public_key()
        self.key_id = _key_id(name, ED25519, _raw(self.public_key))

    def sign(self, text: str) -> SignatureLine:
        """A signature line over ``text``."""
        return SignatureLine(self.name, self.key_id, self._key.sign(text.encode("utf-8")))

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self.name, self.public_key)

    def sign_checkpoint(self, checkpoint: Checkpoint) -> SignedNote:
        """The signed note of ``checkpoint`` (origin must be this signer's name)."""
        if checkpoint.origin != self.name:
            raise CheckpointError("the checkpoint origin must be the signer's key name")
        text = checkpoint.body()
        return SignedNote(text, (self.sign(text),))


class NoteVerifier:
    """Verifies Ed25519 note signatures from one known key."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        self.name = _check_name(name)
        self.public_key = public_key
        self.key_id = _key_id(name, ED25519, _raw(public_key))

    def vkey(self) -> str:
        """The verifier key text ``name+keyid+base64(0x01 || key)`` to publish."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + _raw(self.public_key))}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key; refuses a key ID that does not match the key."""
        name, kind, public = _parse_vkey(vkey)
        if kind != ED25519:
            raise CheckpointError("not an Ed25519 note verifier key")
        return cls(name, Ed25519PublicKey.from_public_bytes(public))

    def verify(self, note: SignedNote) -> None:
        """Raise unless a signature line of this key verifies over the note text.

        As signed-note requires, lines from other keys are ignored, and a failing line of
        this key rejects the whole note.
        """
        found = False
        for line in note.signatures:
            if line.name != self.name or line.key_id != self.key_id:
                continue
            try:
                self.public_key.verify(line.signature, note.text.encode("utf-8"))
            except InvalidSignature:
                raise CheckpointError(f"bad signature by {self.name}") from None
            found = True
        if not found:
            raise CheckpointError(f"no signature by {self.name}")

    def verify_checkpoint(self, note: SignedNote | str) -> Checkpoint:
        """Verify the log's signature on a checkpoint note and return the checkpoint."""
        parsed = SignedNote.parse(note) if isinstance(note, str) else note
        self.verify(parsed)
        checkpoint = Checkpoint.parse_body(parsed.text)
        if checkpoint.origin != self.name:
            raise CheckpointError("checkpoint origin does not match the log key name")
        return checkpoint


def _parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    # The base64 part may itself contain "+": split at the first two only (names cannot).
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a verifier key is name+keyid+base64")
    name, key_id_hex, blob = parts
    raw = _unb64(blob)
    if len(raw) != 33:
        raise CheckpointError("a verifier key holds a type byte and a 32-byte key")
    if _key_id(_check_name(name), raw[0], raw[1:]).hex() != key_id_hex:
        raise CheckpointError("verifier key ID does not match the key")
    return name, raw[0], raw[1:]


def _cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


class Cosigner:
    """A witness key making c2sp.org/tlog-cosignature v1 (Ed25519, type 0x04) cosignatures."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = key
        self.public_key = key.public_key()
        self.key_id = _key_id(name, COSIGNATURE_V1, _raw(self.public_key))

    def cosign(self, body: str, when: datetime) -> SignatureLine:
        """A cosignature line over the checkpoint ``body`` at time ``when``."""
        timestamp = int(utc_time(when).timestamp())
        signature = self._key.sign(_cosigned_message(body, timestamp))
        return SignatureLine(self.name, self.key_id, struct.pack(">Q", timestamp) + signature)

    def verifier(self) -> CosignatureVerifier:
        """The matching verifier."""
        return CosignatureVerifier(self.name, self.public_key)


class CosignatureVerifier:
    """Verifies one witness's cosignatures."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        self.name = _check_name(name)
        self.public_key = public_key
        self.key_id = _key_id(name, COSIGNATURE_V1, _raw(public_key))

    def vkey(self) -> str:
        """The verifier key text ``name+keyid+base64(0x04 || key)``."""
        raw = bytes([COSIGNATURE_V1]) + _raw(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{_b64(raw)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse a witness verifier key."""
        name, kind, public = _parse_vkey(vkey)
        if kind != COSIGNATURE_V1:
            raise CheckpointError("not a cosignature verifier key")
        return cls(name, Ed25519PublicKey.from_public_bytes(public))

    def signed(self, line: SignatureLine) -> bool:
        """Whether ``line`` claims to be by this witness (same key name and key ID)."""
        return line.name == self.name and line.key_id == self.key_id

    def check(self, note: SignedNote) -> datetime | None:
        """The time of this witness's cosignature on the note, ``None`` if it carries none.

        Every line of this key must verify (as signed-note requires, one failing line rejects
        the note, even beside a good one): :class:`CheckpointError` otherwise.
        """
        found: datetime | None = None
        for line in note.signatures:
            if not self.signed(line):
                continue
            if len(line.signature) != 8 + 64:
                raise CheckpointError(f"malformed cosignature by {self.name}")
            (timestamp,) = struct.unpack(">Q", line.signature[:8])
            if timestamp >= 2**63:
                raise CheckpointError("cosignature timestamp out of range")
            try:
                self.public_key.verify(line.signature[8:], _cosigned_message(note.text, timestamp))
            except InvalidSignature:
                raise CheckpointError(f"bad cosignature by {self.name}") from None
            try:
                when = datetime.fromtimestamp(timestamp, UTC)
            except (OverflowError, OSError, ValueError):  # signed, but past year 9999
                raise CheckpointError("cosignature timestamp out of range") from None
            found = when if found is None else max(found, when)
        return found

    def verify(self, note: SignedNote) -> datetime:
        """Raise unless this witness cosigned the note; return the cosignature time."""
        when = self.check(note)
        if when is None:
            raise CheckpointError(f"no cosignature by {self.name}")
        return when


@dataclass(frozen=True, slots=True)
class PostedCosignature:
    """A witness's cosignature as posted to a log, read but not yet checked against the log's
    own checkpoints: the note text, its checkpoint, the accepted witness and its line."""

    text: str
    checkpoint: Checkpoint
    witness: CosignatureVerifier
    line: SignatureLine

    def verify(self) -> datetime:
        """The cosignature's time; :class:`CosignatureRefused` (``bad_cosignature``) unless the
        line verifies over the note text with the witness's key."""
        try:
            return self.witness.verify(SignedNote(self.text, (self.line,)))
        except CheckpointError as exc:
            raise CosignatureRefused("bad_cosignature", str(exc)) from None


def read_cosignature(
    note: str, line: str, accepted: Iterable[CosignatureVerifier]
) -> PostedCosignature:
    """Read a posted cosignature (any log keeping them: the audit log, the key directory).

    :class:`CosignatureRefused` with a stable code when ``note`` is not a checkpoint
    (``malformed_checkpoint``, also for sizes no database integer holds), ``line`` not a
    signature line (``malformed_cosignature``), or by no ``accepted`` witness
    (``unknown_witness``). The caller then checks the text is one its log signed
    (``unknown_checkpoint``) and calls :meth:`PostedCosignature.verify`.
    """
    try:
        parsed = SignedNote.parse(note)
        checkpoint = Checkpoint.parse_body(parsed.text)
    except CheckpointError as exc:
        raise CosignatureRefused("malformed_checkpoint", f"not a checkpoint: {exc}") from None
    if checkpoint.size >= 2**63:
        raise CosignatureRefused("malformed_checkpoint", "tree size out of range")
    try:
        signature = SignatureLine.parse(line.removesuffix("\n"))
    except CheckpointError as exc:
        raise CosignatureRefused("malformed_cosignature", f"not a signature line: {exc}") from None
    witness = next((w for w in accepted if w.signed(signature)), None)
    if witness is None:
        raise CosignatureRefused(
            "unknown_witness", f"{signature.name} is not an accepted witness key"
        )
    return PostedCosignature(parsed.text, checkpoint, witness, signature)


@dataclass(frozen=True, slots=True)
class Segment:
    """A retention cut: events below ``cut`` were deleted; the log stays verifiable from here.

    ``frontier`` holds the complete-subtree hashes of the tree of ``cut`` leaves (largest
    first, see :func:`audit.merkle.frontier_keys`); folded, they give the root signed in
    ``note`` (a checkpoint of size ``cut``). A verifier seeds its tree with them and checks
    every later event and checkpoint as if it had seen the deleted prefix.
    """

    cut: int
    frontier: tuple[bytes, ...]
    note: str

    def to_json(self) -> dict[str, object]:
        """The JSON object written in exports (``segment.json``)."""
        return {
            "cut": self.cut,
            "frontier": [_b64(h) for h in self.frontier],
            "note": self.note,
        }

    @classmethod
    def from_json(cls, obj: object) -> Segment:
        """Parse :meth:`to_json` output (no signature check: see :meth:`verify`)."""
        if not isinstance(obj, dict):
            raise CheckpointError("a segment record is a JSON object")
        cut, frontier, note = obj.get("cut"), obj.get("frontier"), obj.get("note")
        if (
            not isinstance(cut, int)
            or isinstance(cut, bool)
            or not isinstance(frontier, list)
            or not isinstance(note, str)
            or not all(isinstance(h, str) for h in frontier)
        ):
            raise CheckpointError("malformed segment record")
        return cls(cut, tuple(_unb64(h) for h in frontier), note)

    def verify(self, verifier: NoteVerifier) -> Checkpoint:
        """Check the note's signature, its size, and that the frontier folds to its root."""
        checkpoint = verifier.verify_checkpoint(self.note)
        if checkpoint.size != self.cut:
            raise CheckpointError("segment checkpoint size differs from the cut")
        try:
            root = Frontier(self.cut, self.frontier).root()
        except AuditError as exc:
            raise CheckpointError(f"segment frontier is malformed: {exc}") from None
        if root != checkpoint.root:
            raise CheckpointError("segment frontier does not match the signed root")
        return checkpoint
