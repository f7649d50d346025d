"""The key directory as a client keeps it: a verified replica of a transparency log.

Every key addition and revocation is a leaf of the hub's directory log (an RFC 6962 tree, the
audit log's own code: :mod:`audit.merkle`), whose tree heads the hub signs as C2SP checkpoints
(:mod:`audit.checkpoint`) under the directory's own key name. A client does not ask the hub
"what is Bob's key?": it downloads every entry since the last checkpoint it verified, checks that
they extend the tree it knew to exactly the newly signed root, and only then answers from its own
copy (DESIGN §6.3). So the hub cannot show a key to one client and hide it from another, cannot
drop a revocation, cannot roll back, and cannot rewrite history without the client refusing.

A replica also answers for another party's checkpoint — the one a sender put in a form's
manifest: equal sizes must have equal roots, a smaller one must be a prefix of ours (a hub
showing two parties two directories is caught: *split view*).

:class:`Directory` is a pure state machine (python-tuf's trusted set is the model): each method
takes bytes, verifies, and returns a *new* replica; the old one is never changed, so a refused
update leaves the trusted state as it was. :func:`save` persists it atomically.

Entries (canonical JSON, the bytes the leaf hashes; ``time`` in UTC seconds)::

    {"v": 1, "type": "key.add", "time": "…Z", "device": "<key id>", "key": <device record>,
     "owner": "user:<public id>" | "client:<client id>", "org": "<org public id>"}
    {"v": 1, "type": "key.revoke", "time": "…Z", "device": "<key id>", "reason": "owner" | "admin"}
    {"v": 1, "type": "module.release", "time": "…Z", "module": "js/echange.js",
     "sha256": "<hex>", "release": "<version>"}

The last kind publishes the SHA-256 of the browser code the hub serves for each release, so a
witness can check that what it serves is what it logged (docs/browser.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from audit import merkle
from audit.checkpoint import Checkpoint, NoteVerifier
from audit.errors import AuditError
from exchange.encoding import b64d, b64e, canonical_json, members, parse_json_object
from exchange.errors import MalformedError, VerificationError
from exchange.keys import DeviceKey
from exchange.keystore import write_atomically

ENTRY_VERSION = 1
MAX_ENTRY_BYTES = 8192
REVOKE_REASONS = frozenset({"owner", "admin"})
_OWNER = re.compile(r"(user|client):[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # ASCII only
_STATE_FORMAT = "maillon/annuaire/1"
_MODULE = re.compile(r"[a-z0-9._/-]{1,128}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_RELEASE = re.compile(r"[A-Za-z0-9._+-]{1,64}")


def _real_time(text: str) -> bool:
    """Whether ``text`` (of the ``_TIME`` shape) names a real instant (no 13th month)."""
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_added(key: DeviceKey, *, owner: str, org: str, now: datetime) -> bytes:
    """The entry that publishes ``key`` for ``owner`` (``user:<id>`` or ``client:<id>``)."""
    if _OWNER.fullmatch(owner) is None or _ORG.fullmatch(org) is None:
        raise ValueError("owner is user:<id> or client:<id>, org a public id")
    return canonical_json(
        {
            "v": ENTRY_VERSION,
            "type": "key.add",
            "time": _time_text(now),
            "device": key.key_id,
            "key": key.record(),
            "owner": owner,
            "org": org,
        }
    )


def key_revoked(key_id: str, *, reason: str, now: datetime) -> bytes:
    """The entry that revokes the device key ``key_id``."""
    if reason not in REVOKE_REASONS:
        raise ValueError(f"reason is one of {sorted(REVOKE_REASONS)}")
    return canonical_json(
        {"v": ENTRY_VERSION, "type": "key.revoke", "time": _time_text(now), "device": key_id,
         "reason": reason}
    )  # fmt: skip


def module_released(module: str, sha256: str, *, release: str, now: datetime) -> bytes:
    """The entry that publishes the SHA-256 (hex) of the browser code ``module`` the hub serves
    from ``release`` on."""
    if not (_MODULE.fullmatch(module) and _SHA256_HEX.fullmatch(sha256)):
        raise ValueError("module is a static path, sha256 64 lowercase hex digits")
    if _RELEASE.fullmatch(release) is None:
        raise ValueError("release is 1 to 64 of A-Z a-z 0-9 . _ + -")
    return canonical_json(
        {"v": ENTRY_VERSION, "type": "module.release", "time": _time_text(now), "module": module,
         "sha256": sha256, "release": release}
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    """A directory entry, read and checked."""

    kind: str
    time: str
    device: str
    key: DeviceKey | None = None
    owner: str = ""
    org: str = ""
    reason: str = ""
    module: str = ""
    sha256: str = ""
    release: str = ""


def parse_entry(data: bytes) -> Entry:
    """Read an entry strictly; it must be in canonical form (one byte string per entry)."""
    obj = parse_json_object(data, what="l'entrée d'annuaire", max_bytes=MAX_ENTRY_BYTES)
    try:
        canonical = canonical_json(obj)
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: no UTF-8 spelling
        canonical = b""
    if canonical != data:
        raise MalformedError("not_canonical", "L'entrée d'annuaire n'est pas sous forme canonique.")
    kind = obj.get("type")
    if kind == "key.add":
        members(
            obj, what="key.add", required={"v", "type", "time", "device", "key", "owner", "org"}
        )
    elif kind == "key.revoke":
        members(obj, what="key.revoke", required={"v", "type", "time", "device", "reason"})
    elif kind == "module.release":
        members(
            obj, what="module.release",
            required={"v", "type", "time", "module", "sha256", "release"},
        )  # fmt: skip
    else:
        raise MalformedError("unknown_entry", "Type d'entrée d'annuaire inconnu.")
    if type(obj["v"]) is not int or obj["v"] != ENTRY_VERSION or not isinstance(obj["time"], str):
        raise MalformedError("unknown_version", "Version d'entrée d'annuaire inconnue.")
    if _TIME.fullmatch(obj["time"]) is None or not _real_time(obj["time"]):
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="time")
    if kind == "module.release":
        for name, pattern in (("module", _MODULE), ("sha256", _SHA256_HEX), ("release", _RELEASE)):
            if not isinstance(obj[name], str) or pattern.fullmatch(obj[name]) is None:
                raise MalformedError("invalid_member", "%(what)s est invalide.", what=name)
        return Entry(
            "module.release", obj["time"], "", module=obj["module"], sha256=obj["sha256"],
            release=obj["release"],
        )  # fmt: skip
    if not isinstance(obj["device"], str):
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="device")
    if kind == "key.revoke":
        if not isinstance(obj["reason"], str) or obj["reason"] not in REVOKE_REASONS:
            raise MalformedError("invalid_member", "%(what)s est invalide.", what="reason")
        return Entry("key.revoke", obj["time"], obj["device"], reason=obj["reason"])
    key = DeviceKey.from_record(obj["key"])
    if key.key_id != obj["device"]:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="device")
    owner, org = obj["owner"], obj["org"]
    if not isinstance(owner, str) or _OWNER.fullmatch(owner) is None:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="owner")
    if not isinstance(org, str) or _ORG.fullmatch(org) is None:
        raise MalformedError("invalid_member", "%(what)s est invalide.", what="org")
    return Entry("key.add", obj["time"], key.key_id, key=key, owner=owner, org=org)


@dataclass(frozen=True, slots=True)
class KeyState:
    """A device key as the directory knows it: whose it is, where it was added, if revoked."""

    key: DeviceKey
    owner: str
    org: str
    added: int
    revoked: int | None = None
    revoked_reason: str = ""  # "owner" (a rotation) or "admin"
    revoked_time: str = ""  # as the revocation entry states it (signed into the log)

    @property
    def current(self) -> bool:
        """Whether the key may still be sealed to and its signatures accepted."""
        return self.revoked is None


@dataclass(frozen=True, slots=True)
class Release:
    """A release of browser code as the directory logged it."""

    module: str
    sha256: str
    release: str
    index: int


@dataclass(frozen=True)
class Directory:
    """A verified replica: every leaf hash, the keys they describe, the browser code releases,
    the last checkpoint."""

    verifier: NoteVerifier
    leaves: tuple[bytes, ...] = ()
    keys: Mapping[str, KeyState] = field(default_factory=lambda: MappingProxyType({}))
    note: str = ""
    releases: tuple[Release, ...] = ()

    @classmethod
    def empty(cls, vkey: str) -> Directory:
        """A replica that trusts only the directory key ``vkey`` (pinned out of band)."""
        try:
            return cls(NoteVerifier.from_vkey(vkey))
        except AuditError as error:
            raise MalformedError("invalid_key", "Clé de l'annuaire invalide.") from error

    @property
    def size(self) -> int:
        """How many entries the replica holds."""
        return len(self.leaves)

    def root_at(self, size: int) -> bytes:
        """The tree root over the first ``size`` entries (``size`` at most :attr:`size`)."""
        if not 0 <= size <= self.size:
            raise ValueError("size outside the replica")
        return merkle.root_from_leaf_hashes(self.leaves[:size])

    def _checkpoint(self, note: str) -> Checkpoint:
        try:
            return self.verifier.verify_checkpoint(note)
        except AuditError as error:
            raise VerificationError(
                "checkpoint_invalid", "Le point de contrôle de l'annuaire n'est pas signé par lui."
            ) from error

    def update(self, entries: Sequence[bytes], note: str) -> Directory:
        """The replica extended by ``entries`` (those after :attr:`size`, in order) up to the
        signed checkpoint ``note``; :class:`VerificationError` (and nothing changed) when the
        checkpoint is not the directory's, goes back, or does not sign exactly this tree."""
        checkpoint = self._checkpoint(note)
        if checkpoint.size < self.size:
            raise VerificationError(
                "rollback", "L'annuaire présenté est plus ancien que celui déjà vérifié."
            )
        if checkpoint.size != self.size + len(entries):
            raise VerificationError(
                "entries_missing", "Les entrées reçues ne mènent pas à la taille signée."
            )
        leaves = list(self.leaves)
        keys = dict(self.keys)
        releases = list(self.releases)
        for data in entries:
            leaves.append(merkle.leaf_hash(data))
            entry = parse_entry(data)
            if entry.kind == "module.release":
                releases.append(Release(entry.module, entry.sha256, entry.release, len(leaves) - 1))
                continue
            _apply(keys, entry, len(leaves) - 1)
        if merkle.root_from_leaf_hashes(leaves) != checkpoint.root:
            # Same size, other root; or entries that are not the signed ones: a fork.
            raise VerificationError(
                "fork", "L'annuaire signé ne correspond pas aux entrées reçues."
            )
        return replace(
            self,
            leaves=tuple(leaves),
            keys=MappingProxyType(keys),
            note=note,
            releases=tuple(releases),
        )

    def check_peer(self, note: str) -> Checkpoint:
        """Check another party's checkpoint (a form's sender's) against this replica: same
        size, same root; smaller, a prefix of ours. A larger one cannot be judged yet: the
        caller updates first (``checkpoint_ahead``)."""
        checkpoint = self._checkpoint(note)
        if checkpoint.size > self.size:
            raise VerificationError(
                "checkpoint_ahead", "L'expéditeur a vu un annuaire plus récent : mettez à jour."
            )
        if self.root_at(checkpoint.size) != checkpoint.root:
            raise VerificationError(
                "split_view",
                "L'annuaire vu par l'expéditeur diffère du vôtre : le hub montre deux annuaires.",
            )
        return checkpoint

    def latest_release(self, module: str) -> Release | None:
        """The last release of ``module`` the directory logged."""
        found = [r for r in self.releases if r.module == module]
        return found[-1] if found else None

    def state(self, key_id: str) -> KeyState | None:
        """What the directory says of ``key_id`` (``None``: never published)."""
        return self.keys.get(key_id)

    def key(self, key_id: str) -> DeviceKey:
        """The current key ``key_id``; :class:`VerificationError` if unknown or revoked."""
        found = self.state(key_id)
        if found is None:
            raise VerificationError("key_unknown", "Clé d'appareil absente de l'annuaire.")
        if not found.current:
            raise VerificationError("key_revoked", "Clé d'appareil révoquée.")
        return found.key

    def history(self, owner: str) -> list[KeyState]:
        """Every key ever published for ``owner``, revoked ones included, oldest first."""
        return sorted((s for s in self.keys.values() if s.owner == owner), key=lambda s: s.added)

    def devices(self, owners: Iterable[str]) -> list[KeyState]:
        """The current keys of ``owners`` (``user:<id>`` / ``client:<id>``), oldest first."""
        wanted = set(owners)
        return sorted(
            (s for s in self.keys.values() if s.current and s.owner in wanted),
            key=lambda s: s.added,
        )


def _apply(keys: dict[str, KeyState], entry: Entry, index: int) -> None:
    """One entry applied to the key map; an impossible history is a verification failure."""
    if entry.kind == "key.add":
        assert entry.key is not None  # parse_entry guarantees it
        if entry.device in keys:
            raise VerificationError("entry_invalid", "Clé d'appareil publiée deux fois.")
        keys[entry.device] = KeyState(entry.key, entry.owner, entry.org, index)
        return
    known = keys.get(entry.device)
    if known is None or not known.current:
        raise VerificationError("entry_invalid", "Révocation d'une clé inconnue ou déjà révoquée.")
    keys[entry.device] = replace(
        known, revoked=index, revoked_reason=entry.reason, revoked_time=entry.time
    )


def replay(vkey: str, entries: Sequence[bytes], note: str) -> Directory:
    """A replica built from the whole log: every entry from the first, and a checkpoint."""
    return Directory.empty(vkey).update(entries, note)


def save(path: Path, directory: Directory, entries: Sequence[bytes]) -> None:
    """Persist the replica — its pinned key, last note and entries — atomically (after a
    successful update only)."""
    document = {
        "format": _STATE_FORMAT,
        "vkey": directory.verifier.vkey(),
        "note": directory.note,
        "entries": [b64e(e) for e in entries],
    }
    write_atomically(path, json.dumps(document).encode("ascii"))


def load(path: Path, vkey: str) -> tuple[Directory, list[bytes]]:
    """A saved replica, checked again from its entries (the file is not trusted more than the
    network: its note must verify under the pinned ``vkey`` and its entries rebuild it)."""
    obj = parse_json_object(path.read_bytes(), what="l'annuaire enregistré", max_bytes=2**30)
    members(obj, what="l'annuaire enregistré", required={"format", "vkey", "note", "entries"})
    if obj["format"] != _STATE_FORMAT or obj["vkey"] != vkey:
        raise MalformedError("unknown_version", "Annuaire enregistré d'un autre format ou hub.")
    entries = [b64d(e, what="entrée", max_bytes=MAX_ENTRY_BYTES) for e in obj["entries"]]
    if not obj["note"]:
        return Directory.empty(vkey), []
    return replay(vkey, entries, obj["note"]), entries
