"""Envelope v1: a *fiche de liaison* sealed on the sender's device (DESIGN §6.2).

The format is written down in ``docs/envelope.md`` with test vectors; this module is its Python
implementation (the browser module is the other). In short:

- the form's values are split into **views**, one per distinct set of fields a recipient may
  see; each view's JSON is encrypted once with AES-256-GCM under a fresh key;
- that key is **sealed** with HPKE to every recipient device entitled to the view, ``info``
  binding the protocol, the form, the view and the recipient key;
- a **manifest** lists the form, case, charter, consent, purpose, sender, time, the sender's
  directory checkpoint and each view's fields, ciphertext digest and sealed keys; the sender's
  device signs it as a compact JWS (``alg: Ed25519`` only) over the exact bytes sent.

Two verbs: :func:`seal` (the sender) and :func:`open_form` (a recipient); :func:`verify`
holds the checks the hub and the recipient share. Each returns a fully verified value or raises
:class:`~exchange.errors.MalformedError` / :class:`~exchange.errors.VerificationError` with a
stable code. The JWS is made and checked here rather than by a JOSE library: one algorithm,
three header members, nothing negotiable, and a test checks that joserfc reads ours and we read
joserfc's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.encoding import b64d, b64e, canonical_json, members, parse_json_object
from exchange.errors import MalformedError, VerificationError
from exchange.hpke import Suite, sealed_size, suite_named
from exchange.hpke import seal as hpke_seal
from exchange.keys import KEY_ID_PREFIX, DeviceKey, DeviceSecrets

FORMAT = "maillon/fiche/1"
JWS_TYPE = "maillon-fiche+jws"
ALGORITHM = "Ed25519"

# Limits (docs/envelope.md): the hub refuses anything larger before reading it.
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024
# Attachments: each travels once, encrypted under its own key, which only the views holding the
# field it supports carry (docs/envelope.md, "Attachments").
MAX_FILES = 8
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILE_NAME_CHARS = 200
# Each type and the bytes its files start with: a file is what its type says, so a recipient
# never saves a program labelled as a PDF.
FILE_MAGIC = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}
FILE_TYPES = frozenset(FILE_MAGIC)
MAX_MANIFEST_BYTES = 256 * 1024
MAX_VIEWS = 16
MAX_RECIPIENTS = 200
MAX_FIELDS = 64
MAX_VALUE_CHARS = 20_000
MAX_CHECKPOINT_CHARS = 4096

FieldValue = str | int | bool | None

_FORM_ID = re.compile(r"f-[a-z2-7]{26}")
_VIEW_ID = re.compile(r"v[1-9][0-9]?")
_FILE_ID = re.compile(r"p[1-9]")
_FIELD_ID = re.compile(r"[a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}")
_CASE_REF = re.compile(r"C-[0-9A-Z]{4}-[0-9A-Z]{4}")
_CHARTER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PUBLIC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_KEY_ID = re.compile(KEY_ID_PREFIX + r"[A-Za-z0-9_-]{43}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # ASCII only

# What a recipient's checks can only fail for if the sender signed something other than what it
# delivers to that recipient: the only codes reported to the hub as a charter violation (the
# others may be the hub's doing, or a key rotation).
# A digest that does not match is not among them: the relay checked every digest when it
# accepted the form, so a recipient seeing one changed learns the hub (or its storage) did it.
SENDER_FAULTS = frozenset({"seal_invalid", "view_invalid", "fields_mismatch"})


def is_form_id(text: str) -> bool:
    """Whether ``text`` is a well-formed form id (``f-`` and 26 base32 characters)."""
    return _FORM_ID.fullmatch(text) is not None


_VIEW_KEY_SIZE = 32
_NONCE_SIZE = 12


# -- the manifest --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CharterRef:
    """The charter version the sender applied: its id, version and digest."""

    id: str
    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends: the device that signs, the person (or API client) and the organisation."""

    device: str
    user: str
    org: str


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient device of a view, and the view key sealed to it."""

    device: str
    suite: Suite
    sealed_key: bytes


@dataclass(frozen=True, slots=True)
class View:
    """One view: the fields it holds, the digest of its ciphertext, who can open it."""

    id: str
    fields: tuple[str, ...]
    digest: bytes
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class FilePart:
    """An attachment as the manifest lists it: its id, the field it supports, the digest of its
    ciphertext (its name, type and key travel inside the views that may open it)."""

    id: str
    field: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the sender signed."""

    form: str
    case: str
    charter: CharterRef
    consent: str | None
    purpose: str
    sender: Sender
    created: datetime
    directory: str
    views: tuple[View, ...]
    files: tuple[FilePart, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (the order of members is the documented one)."""
        return {
            "v": 1,
            "form": self.form,
            "case": self.case,
            "charter": {
                "id": self.charter.id,
                "version": self.charter.version,
                "digest": self.charter.digest,
            },
            "consent": self.consent,
            "purpose": self.purpose,
            "sender": {
                "device": self.sender.device,
                "user": self.sender.user,
                "org": self.sender.org,
            },
            "created": self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "directory": self.directory,
            "views": [
                {
                    "id": view.id,
                    "fields": list(view.fields),
                    "digest": b64e(view.digest),
                    "recipients": [
                        {"device": r.device, "suite": r.suite.value, "key": b64e(r.sealed_key)}
                        for r in view.recipients
                    ],
                }
                for view in self.views
            ],
        } | (
            # Absent rather than empty: one spelling for a form without attachments.
            {
                "files": [
                    {"id": f.id, "field": f.field, "digest": b64e(f.digest)} for f in self.files
                ]
            }
            if self.files
            else {}
        )

    def view(self, view_id: str) -> View:
        """The view called ``view_id`` (a caller bug when there is none)."""
        for view in self.views:
            if view.id == view_id:
                return view
        raise KeyError(view_id)


def _text(value: object, pattern: re.Pattern[str], *, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what=what)
    return value


def _parse_manifest(obj: dict[str, Any]) -> Manifest:
    members(
        obj,
        what="le manifeste",
        required={
            "v", "form", "case", "charter", "consent", "purpose", "sender", "created",
            "directory", "views",
        },
        optional={"files"},
    )  # fmt: skip
    if type(obj["v"]) is not int or obj["v"] != 1:
        raise MalformedError("unknown_version", "Version de manifeste inconnue.")
    charter = members(obj["charter"], what="charter", required={"id", "version", "digest"})
    version = charter["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**31:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="charter.version")
    sender = members(obj["sender"], what="sender", required={"device", "user", "org"})
    consent = obj["consent"]
    if consent is not None:
        consent = _text(consent, _PUBLIC_ID, what="consent")
    directory = obj["directory"]
    if not isinstance(directory, str) or not 0 < len(directory) <= MAX_CHECKPOINT_CHARS:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="directory")
    created_text = _text(obj["created"], _TIME, what="created")
    try:
        created = datetime.strptime(created_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="created") from None
    views_json = obj["views"]
    if not isinstance(views_json, list) or not 1 <= len(views_json) <= MAX_VIEWS:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views")
    views = tuple(_parse_view(item, position) for position, item in enumerate(views_json, 1))
    seen: set[str] = set()
    total = 0
    for view in views:
        for recipient in view.recipients:
            if recipient.device in seen:
                raise MalformedError(
                    "duplicate_recipient",
                    "L'appareil %(device)s figure deux fois parmi les destinataires.",
                    device=recipient.device,
                )
            seen.add(recipient.device)
            total += 1
    if total > MAX_RECIPIENTS:
        raise MalformedError("too_large", "%(what)s est trop long.", what="recipients")
    files = _parse_files(obj["files"], views) if "files" in obj else ()
    return Manifest(
        form=_text(obj["form"], _FORM_ID, what="form"),
        case=_text(obj["case"], _CASE_REF, what="case"),
        charter=CharterRef(
            id=_text(charter["id"], _CHARTER_ID, what="charter.id"),
            version=version,
            digest=_text(charter["digest"], _DIGEST, what="charter.digest"),
        ),
        consent=consent,
        purpose=_text(obj["purpose"], _WORD, what="purpose"),
        sender=Sender(
            device=_text(sender["device"], _KEY_ID, what="sender.device"),
            user=_text(sender["user"], _PUBLIC_ID, what="sender.user"),
            org=_text(sender["org"], _PUBLIC_ID, what="sender.org"),
        ),
        created=created,
        directory=directory,
        views=views,
        files=files,
    )


def _parse_files(items: object, views: tuple[View, ...]) -> tuple[FilePart, ...]:
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_FILES:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="files")
    listed = {f for view in views for f in view.fields}
    parts = []
    for position, item in enumerate(items, 1):
        part = members(item, what="une pièce jointe", required={"id", "field", "digest"})
        file_id = _text(part["id"], _FILE_ID, what="files.id")
        field = _text(part["field"], _FIELD_ID, what="files.field")
        digest = b64d(part["digest"], what="files.digest", max_bytes=32)
        # Numbered in order; each supports a field some view holds (whoever may see the field
        # may see the file, and no one else).
        if file_id != f"p{position}" or field not in listed or len(digest) != 32:
            raise MalformedError("invalid_member", "%(what)s est invalide.", what="files")
        parts.append(FilePart(file_id, field, digest))
    return tuple(parts)


def _parse_view(item: object, position: int) -> View:
    view = members(item, what="une vue", required={"id", "fields", "digest", "recipients"})
    view_id = _text(view["id"], _VIEW_ID, what="views.id")
    if view_id != f"v{position}":
        # One spelling per manifest: views are numbered in order.
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views.id")
    fields = view["fields"]
    if (
        not isinstance(fields, list)
        or not 1 <= len(fields) <= MAX_FIELDS
        or [_text(f, _FIELD_ID, what="views.fields") for f in fields] != sorted(set(fields))
    ):
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views.fields")
    recipients = view["recipients"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views.recipients")
    digest = b64d(view["digest"], what="views.digest", max_bytes=32)
    if len(digest) != 32:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views.digest")
    return View(
        id=view_id,
        fields=tuple(fields),
        digest=digest,
        recipients=tuple(_parse_recipient(r) for r in recipients),
    )


def _parse_recipient(item: object) -> Recipient:
    recipient = members(item, what="un destinataire", required={"device", "suite", "key"})
    suite = suite_named(recipient["suite"])
    sealed = b64d(recipient["key"], what="recipients.key", max_bytes=4096)
    if len(sealed) != sealed_size(suite, _VIEW_KEY_SIZE):
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="recipients.key")
    return Recipient(
        device=_text(recipient["device"], _KEY_ID, what="recipients.device"),
        suite=suite,
        sealed_key=sealed,
    )


# -- the envelope --------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: the signed manifest (as sent and as read) and the view ciphertexts.

    Parsing checks the form only; :func:`verify` checks the signature and the digests.
    """

    jws: str
    header: dict[str, str]
    manifest: Manifest
    views: dict[str, bytes]
    signing_input: bytes
    signature: bytes
    files: dict[str, bytes] = dc_field(default_factory=dict)

    @property
    def manifest_bytes(self) -> bytes:
        """The exact manifest bytes the sender signed."""
        return b64d(self.jws.split(".")[1], what="le manifeste")

    def to_bytes(self) -> bytes:
        """The envelope as sent (UTF-8 JSON): the signed manifest and the views, as they were
        signed and digested."""
        return _body(self.jws, self.views, self.files)


def parse(data: bytes) -> Envelope:
    """Read an envelope strictly (size, members, base64, the JWS header, the manifest);
    :class:`MalformedError` otherwise. Nothing is verified yet: see :func:`verify`."""
    outer = parse_json_object(data, what="l'enveloppe", max_bytes=MAX_ENVELOPE_BYTES)
    members(outer, what="l'enveloppe", required={"format", "manifest", "views"}, optional={"files"})
    if outer["format"] != FORMAT:
        raise MalformedError("unknown_version", "Format d'enveloppe inconnu.")
    jws = outer["manifest"]
    if not isinstance(jws, str) or len(jws) > MAX_MANIFEST_BYTES * 2:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="manifest")
    parts = jws.split(".")
    if len(parts) != 3:
        raise MalformedError("invalid_jws", "Le manifeste n'est pas un JWS compact.")
    header_bytes = b64d(parts[0], what="l'en-tête JWS", max_bytes=1024)
    payload = b64d(parts[1], what="le manifeste", max_bytes=MAX_MANIFEST_BYTES)
    signature = b64d(parts[2], what="la signature", max_bytes=64)
    header = parse_json_object(header_bytes, what="l'en-tête JWS", max_bytes=1024)
    members(header, what="l'en-tête JWS", required={"alg", "kid", "typ"})
    if header["alg"] != ALGORITHM:
        # Pinned: "none", HMAC or RSA never reach a verifier (RFC 8725 §3.1).
        raise MalformedError(
            "alg_not_allowed", "Algorithme de signature refusé : seul Ed25519 est accepté."
        )
    if header["typ"] != JWS_TYPE:
        raise MalformedError("invalid_jws", "Type de JWS inattendu.")
    _text(header["kid"], _KEY_ID, what="kid")
    manifest = _parse_manifest(
        parse_json_object(payload, what="le manifeste", max_bytes=MAX_MANIFEST_BYTES)
    )
    views_json = outer["views"]
    if not isinstance(views_json, dict):
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="views")
    expected = [view.id for view in manifest.views]
    if sorted(views_json) != sorted(expected):
        raise MalformedError(
            "views_mismatch", "Les vues chiffrées ne correspondent pas à celles du manifeste."
        )
    views = {
        view_id: b64d(views_json[view_id], what="une vue chiffrée", max_bytes=MAX_ENVELOPE_BYTES)
        for view_id in expected
    }
    files_json = outer.get("files", {})
    wanted = [f.id for f in manifest.files]
    if (
        not isinstance(files_json, dict)
        or ("files" in outer and not wanted)
        or sorted(files_json) != sorted(wanted)
    ):
        raise MalformedError(
            "views_mismatch", "Les pièces jointes ne correspondent pas à celles du manifeste."
        )
    files = {
        file_id: b64d(
            files_json[file_id],
            what="une pièce jointe",
            max_bytes=MAX_FILE_BYTES + _NONCE_SIZE + 16,
        )
        for file_id in wanted
    }
    return Envelope(
        jws=jws,
        header={k: str(v) for k, v in header.items()},
        manifest=manifest,
        views=views,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=signature,
        files=files,
    )


def verify(envelope: Envelope, sender_key: DeviceKey) -> Manifest:
    """The checks the hub and every recipient make before anything else; the manifest when
    they all hold, :class:`VerificationError` at the first that does not.

    1. the key the caller looked up is the one the manifest and the JWS header name;
    2. that key signed the exact manifest bytes;
    3. every view's ciphertext has the digest the manifest lists.
    """
    manifest = envelope.manifest
    # 1. The sender's device, named twice, is the key that verifies.
    if not (envelope.header["kid"] == manifest.sender.device == sender_key.key_id):
        raise VerificationError(
            "sender_key_mismatch", "La clé de l'expéditeur ne correspond pas au manifeste."
        )
    # 2. The signature over the exact bytes sent.
    sender_key.verify(envelope.signature, envelope.signing_input)
    # 3. Each view is the one the sender signed.
    for view in manifest.views:
        digest = hashlib.sha256(envelope.views[view.id]).digest()
        if not hmac.compare_digest(digest, view.digest):
            raise VerificationError(
                "digest_mismatch",
                "La vue %(view)s ne correspond pas à son empreinte signée.",
                view=view.id,
            )
    for part in manifest.files:
        if not hmac.compare_digest(hashlib.sha256(envelope.files[part.id]).digest(), part.digest):
            raise VerificationError(
                "digest_mismatch",
                "La pièce jointe %(file)s ne correspond pas à son empreinte signée.",
                file=part.id,
            )
    return manifest


def _body(jws: str, views: Mapping[str, bytes], files: Mapping[str, bytes]) -> bytes:
    body: dict[str, Any] = {
        "format": FORMAT,
        "manifest": jws,
        "views": {k: b64e(v) for k, v in views.items()},
    }
    if files:
        body["files"] = {k: b64e(v) for k, v in files.items()}
    return json.dumps(body, separators=(",", ":")).encode("ascii")


# -- sealing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewPlan:
    """What one view will hold and who receives it."""

    values: Mapping[str, FieldValue]
    recipients: Sequence[DeviceKey]


def plan_views(
    values: Mapping[str, FieldValue], entitled: Mapping[DeviceKey, frozenset[str]]
) -> list[ViewPlan]:
    """One view per distinct set of fields: each recipient device gets exactly the fields it
    is entitled to (the charter × consent decision, made before); devices entitled to nothing
    receive nothing."""
    groups: dict[frozenset[str], list[DeviceKey]] = {}
    for device, fields in entitled.items():
        visible = frozenset(f for f in fields if f in values)
        if visible:
            groups.setdefault(visible, []).append(device)
    plans = [
        ViewPlan({f: values[f] for f in sorted(fields)}, sorted(devices, key=lambda d: d.key_id))
        for fields, devices in groups.items()
    ]
    return sorted(plans, key=lambda p: (sorted(p.values), p.recipients[0].key_id))


@dataclass(frozen=True)
class Attachment:
    """A file to send (PDF or image), supporting the field ``field``: it reaches exactly the
    recipients whose view holds that field."""

    field: str
    name: str
    type: str
    data: bytes

    def check(self) -> None:
        """``ValueError`` unless the attachment may travel (docs/envelope.md, limits)."""
        if _FIELD_ID.fullmatch(self.field) is None:
            raise ValueError(f"not a field id: {self.field!r}")
        if self.type not in FILE_TYPES:
            raise ValueError(f"{self.type!r} is not one of {sorted(FILE_TYPES)}")
        if not _file_name_ok(self.name):
            raise ValueError("a file name is 1 to 200 characters, without control characters")
        if len(self.data) > MAX_FILE_BYTES:
            raise ValueError(f"a file holds at most {MAX_FILE_BYTES} bytes")
        if not self.data.startswith(FILE_MAGIC[self.type]):
            raise ValueError(f"the file's bytes are not those of a {self.type} file")


# Control characters (C0, DEL, C1), bidirectional overrides and isolates ("\u202efdp.exe"
# reads as "exe.pdf"), and lone surrogates have no place in a file name.
_NAME_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _file_name_ok(name: object) -> bool:
    return (
        isinstance(name, str)
        and 1 <= len(name) <= MAX_FILE_NAME_CHARS
        and _NAME_REFUSED.search(name) is None
    )


def _file_aad(form: str, file_id: str) -> bytes:
    return b"\x00".join([FORMAT.encode(), b"file", form.encode(), file_id.encode()])


def new_form_id() -> str:
    """A random form id (128 bits, base32): the idempotency key of a send."""
    return "f-" + base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=").lower()


def _info(form: str, view: str, device: str) -> bytes:
    # The HPKE context: protocol, form, view and the recipient key it was sealed to. A sealed
    # key moved to another form, view or recipient does not open.
    return b"\x00".join([FORMAT.encode(), form.encode(), view.encode(), device.encode()])


def _aad(form: str, view: str) -> bytes:
    return b"\x00".join([FORMAT.encode(), b"view", form.encode(), view.encode()])


# Integers a JSON reader holds exactly in a double (the browser's): beyond, two readers could
# see two values, so they are refused on both sides.
MAX_SAFE_INTEGER = 2**53 - 1


def _unsafe_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER


def _check_values(values: Mapping[str, FieldValue]) -> None:
    if not 1 <= len(values) <= MAX_FIELDS:
        raise ValueError("a view holds 1 to MAX_FIELDS fields")
    for field, value in values.items():
        if _FIELD_ID.fullmatch(field) is None:
            raise ValueError(f"not a field id: {field!r}")
        if not (value is None or isinstance(value, str | int | bool)):
            raise ValueError(f"field {field} holds a {type(value).__name__}")
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"field {field} is longer than {MAX_VALUE_CHARS} characters")
        if _unsafe_integer(value):
            raise ValueError(f"field {field} holds an integer beyond ±(2**53 - 1)")


def seal(
    *,
    secrets: DeviceSecrets,
    user: str,
    org: str,
    case: str,
    charter: CharterRef,
    consent: str | None,
    purpose: str,
    directory: str,
    views: Sequence[ViewPlan],
    now: datetime,
    form_id: str | None = None,
    files: Sequence[Attachment] = (),
) -> Envelope:
    """Seal a form: encrypt each attachment once and each view under a fresh key, seal the
    view key to each of its recipients (a view carries the keys of the attachments of its
    fields), sign the manifest. The result is parsed back and verified before it is returned,
    so a sender never sends what a recipient would refuse."""
    form = form_id or new_form_id()
    if len(files) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} attachments")
    listed = {f for plan in views for f in plan.values}
    parts: list[FilePart] = []
    part_ciphertexts: dict[str, bytes] = {}
    part_keys: list[tuple[FilePart, Attachment, bytes]] = []
    for position, attachment in enumerate(files, 1):
        attachment.check()
        if attachment.field not in listed:
            raise ValueError(f"no view holds {attachment.field}: nobody could open its file")
        file_id = f"p{position}"
        file_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_SIZE)
        ciphertext = nonce + AESGCM(file_key).encrypt(
            nonce, attachment.data, _file_aad(form, file_id)
        )
        part = FilePart(file_id, attachment.field, hashlib.sha256(ciphertext).digest())
        parts.append(part)
        part_ciphertexts[file_id] = ciphertext
        part_keys.append((part, attachment, file_key))
    view_entries: list[View] = []
    ciphertexts: dict[str, bytes] = {}
    for position, plan in enumerate(views, 1):
        _check_values(plan.values)
        view_id = f"v{position}"
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_SIZE)
        content: dict[str, Any] = {"fields": dict(plan.values)}
        carried = {
            part.id: {"key": b64e(file_key), "name": attachment.name, "type": attachment.type}
            for part, attachment, file_key in part_keys
            if part.field in plan.values
        }
        if carried:
            content["files"] = carried
        plaintext = canonical_json(content)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(form, view_id))
        ciphertexts[view_id] = ciphertext
        view_entries.append(
            View(
                id=view_id,
                fields=tuple(sorted(plan.values)),
                digest=hashlib.sha256(ciphertext).digest(),
                recipients=tuple(
                    Recipient(
                        device=device.key_id,
                        suite=device.suite,
                        sealed_key=hpke_seal(
                            device.suite, device.kem, key, _info(form, view_id, device.key_id)
                        ),
                    )
                    for device in plan.recipients
                ),
            )
        )
    manifest = Manifest(
        form=form,
        case=case,
        charter=charter,
        consent=consent,
        purpose=purpose,
        sender=Sender(device=secrets.public.key_id, user=user, org=org),
        created=now.astimezone(UTC).replace(microsecond=0),
        directory=directory,
        views=tuple(view_entries),
        files=tuple(parts),
    )
    return _sign(manifest, ciphertexts, secrets, part_ciphertexts)


def _sign(
    manifest: Manifest,
    ciphertexts: Mapping[str, bytes],
    secrets: DeviceSecrets,
    files: Mapping[str, bytes] | None = None,
) -> Envelope:
    """Sign ``manifest`` and assemble the envelope (also used to build the test vectors)."""
    header = {"alg": ALGORITHM, "kid": secrets.public.key_id, "typ": JWS_TYPE}
    signing_input = (
        b64e(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64e(json.dumps(manifest.to_json(), separators=(",", ":"), ensure_ascii=False).encode())
    )
    signature = secrets.sign(signing_input.encode("ascii"))
    # The signature checked once with the public key (a faulty signer must not release it: a
    # fault in deterministic EdDSA can leak the key); the digests need no second look, they
    # were computed from these very ciphertexts. The envelope is parsed as a receiver would,
    # so one outside the limits fails here rather than at the hub.
    secrets.public.verify(signature, signing_input.encode("ascii"))
    return parse(_body(signing_input + "." + b64e(signature), ciphertexts, files or {}))


# -- opening ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedForm:
    """A form opened by one recipient device: the verified manifest, its view, the values and
    the attachments of its fields (by file id)."""

    manifest: Manifest
    view: str
    values: dict[str, FieldValue]
    files: dict[str, Attachment] = dc_field(default_factory=dict)


def open_form(
    envelope: Envelope | bytes, *, secrets: DeviceSecrets, sender_key: DeviceKey
) -> OpenedForm:
    """Open a received form with this device's keys; the caller has looked ``sender_key`` up
    in the verified key directory.

    1. the envelope reads (:func:`parse`);
    2. the shared checks hold (:func:`verify`: sender key, signature, digests);
    3. this device is a recipient, of exactly one view, with its own suite;
    4. the view key opens with this device's HPKE key, bound to form, view and device;
    5. the view decrypts, bound to form and view;
    6. it holds exactly the fields the signed manifest lists for it, with scalar values.
    """
    # 1.
    parsed = parse(envelope) if isinstance(envelope, bytes) else envelope
    # 2.
    manifest = verify(parsed, sender_key)
    # 3.
    me = secrets.public
    mine = [(view, r) for view in manifest.views for r in view.recipients if r.device == me.key_id]
    if len(mine) != 1:
        raise VerificationError(
            "not_a_recipient", "Cet appareil n'est pas destinataire de cette fiche."
        )
    view, recipient = mine[0]
    if recipient.suite is not me.suite:
        raise VerificationError(
            "seal_invalid", "La clé scellée n'est pas de la suite de l'appareil."
        )
    # 4.
    key = secrets.receiving.open(recipient.sealed_key, _info(manifest.form, view.id, me.key_id))
    if len(key) != _VIEW_KEY_SIZE:
        raise VerificationError("seal_invalid", "La clé de vue n'a pas la bonne taille.")
    # 5.
    ciphertext = parsed.views[view.id]
    if len(ciphertext) < _NONCE_SIZE + 16:
        raise VerificationError("view_invalid", "La vue chiffrée est tronquée.")
    try:
        plaintext = AESGCM(key).decrypt(
            ciphertext[:_NONCE_SIZE], ciphertext[_NONCE_SIZE:], _aad(manifest.form, view.id)
        )
    except InvalidTag:
        raise VerificationError("view_invalid", "La vue ne se déchiffre pas.") from None
    # 6.
    try:
        body = parse_json_object(plaintext, what="la vue", max_bytes=MAX_ENVELOPE_BYTES)
        values = members(body, what="la vue", required={"fields"}, optional={"files"})["fields"]
    except MalformedError:
        raise VerificationError("fields_mismatch", "La vue déchiffrée est illisible.") from None
    if not isinstance(values, dict) or sorted(values) != list(view.fields):
        raise VerificationError(
            "fields_mismatch",
            "Les champs déchiffrés ne sont pas ceux que le manifeste annonce.",
        )
    if not all(
        (v is None or isinstance(v, str | int | bool)) and not _unsafe_integer(v)
        for v in values.values()
    ):
        raise VerificationError("fields_mismatch", "Une valeur de la vue n'est pas simple.")
    # 7. The attachments of its fields, exactly, each opening with the key the view gives.
    files = _open_files(parsed, view, body.get("files", {}))
    return OpenedForm(manifest=manifest, view=view.id, values=values, files=files)


def _open_files(envelope: Envelope, view: View, carried: object) -> dict[str, Attachment]:
    expected = [p for p in envelope.manifest.files if p.field in view.fields]
    if not isinstance(carried, dict) or sorted(carried) != sorted(p.id for p in expected):
        raise VerificationError(
            "fields_mismatch", "Les pièces jointes de la vue ne sont pas celles de ses champs."
        )
    opened: dict[str, Attachment] = {}
    for part in expected:
        try:
            entry = members(
                carried[part.id], what="une pièce jointe", required={"key", "name", "type"}
            )
            key = b64d(entry["key"], what="key", max_bytes=_VIEW_KEY_SIZE)
        except MalformedError:
            raise VerificationError("fields_mismatch", "Pièce jointe illisible.") from None
        kind = entry["type"]
        if (
            len(key) != _VIEW_KEY_SIZE
            or not isinstance(kind, str)  # a list or an object is not hashable: refused first
            or kind not in FILE_TYPES
            or not _file_name_ok(entry["name"])
        ):
            raise VerificationError("fields_mismatch", "Pièce jointe illisible.")
        ciphertext = envelope.files[part.id]
        try:
            data = AESGCM(key).decrypt(
                ciphertext[:_NONCE_SIZE],
                ciphertext[_NONCE_SIZE:],
                _file_aad(envelope.manifest.form, part.id),
            )
        except (InvalidTag, ValueError):
            raise VerificationError(
                "view_invalid", "La pièce jointe %(file)s ne se déchiffre pas.", file=part.id
            ) from None
        if not data.startswith(FILE_MAGIC[kind]):
            raise VerificationError(
                "fields_mismatch",
                "La pièce jointe %(file)s n'est pas du type annoncé.",
                file=part.id,
            )
        opened[part.id] = Attachment(part.field, entry["name"], kind, data)
    return opened
