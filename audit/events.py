"""Audit events: the stable action vocabulary, the event record and its canonical encoding.

An event says who (opaque user and organisation ids), did what (an :class:`Action`), to which
object (type and pseudonymous id), why (purpose), with which outcome (decision and the charter
rule or article that decided it), under which charter version, in which request, from which
client (a keyed hash of the IP address). It never carries a name or any form content
(DESIGN §8): every free-form field is restricted to a short identifier charset without spaces,
so a sentence or a "Firstname Lastname" cannot be stored by mistake.

Canonical encoding (hashed into the Merkle leaf, exported one per line)
----------------------------------------------------------------------
UTF-8 JSON object, keys sorted by code point, no insignificant whitespace
(``separators=(",", ":")``), ASCII only (every field is ASCII by validation), with exactly
these keys::

    v                format version, integer 1
    seq              leaf index, integer >= 0
    time             UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always 6 fraction digits)
    action           an Action value, e.g. "case.view"
    actor_user       opaque id or null (system actions)
    actor_org        opaque id or ""
    object_type      lower-case identifier or ""
    object_id        pseudonymous id or ""
    purpose          identifier or ""
    decision         "allow", "deny" or ""
    rule             charter rule or article id or ""
    charter_version  identifier or ""
    request_id       identifier or ""
    ip_hash          64 lower-case hex digits (HMAC-SHA256) or ""

The leaf hash is ``SHA-256(0x00 || canonical bytes)`` (RFC 6962 §2.1).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from audit.errors import InvalidEvent

FORMAT_VERSION = 1

# Identifiers: no spaces, no "@" (no e-mail addresses), bounded. Ids are opaque or pseudonymous.
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_OBJECT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,31}")
_IP_HASH = re.compile(r"[0-9a-f]{64}")
# Public so that callers (search forms) validate input with exactly the log's own rules.
IDENT = _IDENT
OBJECT_TYPE = _OBJECT_TYPE
_MIN_IP_KEY = 16


class Action(StrEnum):
    """The stable vocabulary of audited actions.

    Values are part of the signed log: never rename or reuse one; only add new members.
    """

    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_REFUSED = "auth.login.refused"
    AUTH_LOCKOUT = "auth.lockout"
    AUTH_LOGOUT = "auth.logout"
    AUTH_MFA_ENROL = "auth.mfa.enrol"
    AUTH_PASSWORD_CHANGE = "auth.password.change"  # noqa: S105 - an action name
    AUTH_REAUTH = "auth.reauth"
    AUTH_REAUTH_REFUSED = "auth.reauth.refused"
    CASE_CREATE = "case.create"
    CASE_VIEW = "case.view"
    CASE_UPDATE = "case.update"
    CASE_CLOSE = "case.close"
    CASE_LIST = "case.list"
    CASE_REFERENT = "case.referent"
    CASE_PARTNER = "case.partner"
    CASE_TEAM_ADD = "case.team.add"
    CASE_TEAM_REMOVE = "case.team.remove"
    GROUP_MEETING = "group.meeting"
    GROUP_MEETING_MOVE = "group.meeting.move"
    GROUP_MEETING_CANCEL = "group.meeting.cancel"
    GROUP_MEMBERS = "group.members"
    GROUP_COORDINATOR = "group.coordinator"
    FORM_SEND = "form.send"
    FORM_SEND_REFUSED = "form.send.refused"
    FORM_DELIVER = "form.deliver"
    FORM_OPEN = "form.open"
    FORM_VIOLATION = "form.violation"
    CONSENT_INFORMATION = "consent.information"
    CONSENT_RECORD = "consent.record"
    CONSENT_WITHDRAW = "consent.withdraw"
    CONSENT_EXPIRE = "consent.expire"
    CONSENT_ADHESION = "consent.adhesion"
    CONSENT_REFUSE = "consent.refuse"
    CONSENT_READ = "consent.read"
    CONSENT_RECEIPT = "consent.receipt"
    NOTIFICATION_SEND = "notification.send"
    CHARTER_PUBLISH = "charter.publish"
    CHARTER_SIGN = "charter.sign"
    CHARTER_DECLINE = "charter.decline"
    KEY_REGISTER = "key.register"
    KEY_REVOKE = "key.revoke"
    # A person's recovery backup kept by the hub (sealed under a passphrase it never sees).
    KEY_BACKUP = "key.backup"
    # A witness's cosignature of a key directory checkpoint, kept (allow) or refused (deny).
    KEY_COSIGN = "key.cosign"
    ADMIN_ORG_CREATE = "admin.org.create"
    ADMIN_ORG_SUSPEND = "admin.org.suspend"
    ADMIN_ORG_ACTIVATE = "admin.org.activate"
    ADMIN_READ = "admin.read"
    ADMIN_GROUP_CREATE = "admin.group.create"
    ADMIN_GROUP_UPDATE = "admin.group.update"
    ADMIN_API_CLIENT_REGISTER = "admin.api_client.register"
    ADMIN_API_CLIENT_DISABLE = "admin.api_client.disable"
    ADMIN_USER_INVITE = "admin.user.invite"
    ADMIN_USER_DISABLE = "admin.user.disable"
    ADMIN_USER_ENABLE = "admin.user.enable"
    ADMIN_USER_UNLOCK = "admin.user.unlock"
    ADMIN_USER_RESET_MFA = "admin.user.reset_mfa"
    ADMIN_KEY_ROTATE = "admin.key.rotate"
    API_TOKEN_ISSUE = "api.token.issue"  # noqa: S105 - an action name
    API_TOKEN_REFUSED = "api.token.refused"  # noqa: S105 - an action name
    API_READ = "api.read"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_PRUNE = "audit.prune"
    # A witness's cosignature of a checkpoint, stored (allow) or refused (deny, rule: the code).
    AUDIT_COSIGN = "audit.cosign"
    ADMIN_WITNESS_ADD = "admin.witness.add"
    ADMIN_WITNESS_REMOVE = "admin.witness.remove"
    RETENTION_DESTROY = "retention.destroy"
    ACCESS_REFUSED = "access.refused"
    # Refused anonymous requests of one client in one minute beyond the first, counted in one
    # event (object_id: how many) so that nobody can grow the log one request at a time.
    ACCESS_REFUSED_BURST = "access.refused.burst"


class Decision(StrEnum):
    """Outcome recorded with an event; ``NONE`` for acts that are not access decisions."""

    ALLOW = "allow"
    DENY = "deny"
    NONE = ""


def _check_ident(name: str, value: str, *, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string")
    if value == "" and allow_empty:
        return
    if _IDENT.fullmatch(value) is None:
        raise InvalidEvent(
            f"{name} must be 1-128 characters among A-Z a-z 0-9 . _ : / - (no spaces, no names)"
        )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """The fields a caller supplies; the log adds ``seq`` and ``time`` when it appends.

    Construction validates every field and raises :class:`InvalidEvent` on bad input.
    """

    action: Action
    actor_user: str | None = None
    actor_org: str = ""
    object_type: str = ""
    object_id: str = ""
    purpose: str = ""
    decision: Decision = Decision.NONE
    rule: str = ""
    charter_version: str = ""
    request_id: str = ""
    ip_hash: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "action", Action(self.action))
        except ValueError:
            raise InvalidEvent(f"unknown action {self.action!r}") from None
        try:
            object.__setattr__(self, "decision", Decision(self.decision))
        except ValueError:
            raise InvalidEvent("decision must be 'allow', 'deny' or ''") from None
        if self.actor_user is not None:
            _check_ident("actor_user", self.actor_user, allow_empty=False)
        for name in ("actor_org", "object_id", "purpose", "rule", "charter_version", "request_id"):
            _check_ident(name, getattr(self, name))
        if not isinstance(self.object_type, str) or (
            self.object_type and _OBJECT_TYPE.fullmatch(self.object_type) is None
        ):
            raise InvalidEvent("object_type must be a lower-case identifier of at most 32 chars")
        if not isinstance(self.ip_hash, str) or (
            self.ip_hash and _IP_HASH.fullmatch(self.ip_hash) is None
        ):
            raise InvalidEvent("ip_hash must be 64 lower-case hex digits (use hash_ip)")
        if self.object_id and not self.object_type:
            raise InvalidEvent("object_id needs an object_type")


def utc_time(value: datetime) -> datetime:
    """``value`` converted to UTC; naive datetimes are refused (their zone is unknown)."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent("time must be a timezone-aware datetime")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """The canonical text of a UTC time: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return utc_time(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch (how the store keeps times: exact and sortable)."""
    delta = utc_time(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """Inverse of :func:`to_micros`."""
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One appended audit event, as stored, exported and hashed."""

    seq: int
    time: datetime
    action: Action
    actor_user: str | None = None
    actor_org: str = ""
    object_type: str = ""
    object_id: str = ""
    purpose: str = ""
    decision: Decision = Decision.NONE
    rule: str = ""
    charter_version: str = ""
    request_id: str = ""
    ip_hash: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise InvalidEvent("seq must be a non-negative integer")
        object.__setattr__(self, "time", utc_time(self.time))
        # Reuse NewEvent's checks so both records accept exactly the same field values.
        checked = NewEvent(**{f.name: getattr(self, f.name) for f in fields(NewEvent)})
        object.__setattr__(self, "action", checked.action)
        object.__setattr__(self, "decision", checked.decision)

    @classmethod
    def from_new(cls, seq: int, time: datetime, new: NewEvent) -> Event:
        """The event ``new`` becomes once the log gives it a position and a time.

        ``new`` was validated when it was built (it is frozen), so only ``seq`` and ``time``
        are checked here: this is the append hot path.
        """
        if not isinstance(seq, int) or seq < 0:
            raise InvalidEvent("seq must be a non-negative integer")
        event = object.__new__(cls)
        setter = object.__setattr__
        setter(event, "seq", seq)
        setter(event, "time", utc_time(time))
        for name in _NEW_FIELD_NAMES:
            setter(event, name, getattr(new, name))
        return event

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the canonical encoding."""
        return {
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "time": format_time(self.time),
            "action": self.action.value,
            "actor_user": self.actor_user,
            "actor_org": self.actor_org,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "purpose": self.purpose,
            "decision": self.decision.value,
            "rule": self.rule,
            "charter_version": self.charter_version,
            "request_id": self.request_id,
            "ip_hash": self.ip_hash,
        }

    def canonical(self) -> bytes:
        """The canonical bytes (see the module docstring); deterministic for equal events.

        Every field was validated on the way in (identifiers, hex, enum values, ASCII with no
        quote or backslash), so no character needs JSON escaping and the fixed template below
        is exactly ``json.dumps(to_dict(), sort_keys=True, separators=(",", ":"))`` — which
        the tests check — at a fifth of the cost: this runs on every audited request.
        """
        user = "null" if self.actor_user is None else f'"{self.actor_user}"'
        return _CANONICAL.format(
            self.action.value,
            self.actor_org,
            user,
            self.charter_version,
            self.decision.value,
            self.ip_hash,
            self.object_id,
            self.object_type,
            self.purpose,
            self.request_id,
            self.rule,
            self.seq,
            format_time(self.time),
            FORMAT_VERSION,
        ).encode("ascii")

    def canonical_reference(self) -> bytes:
        """:meth:`canonical` through the JSON encoder (the specification, for tests)."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode("ascii")

    def leaf_hash(self) -> bytes:
        """RFC 6962 leaf hash of the canonical bytes."""
        return hashlib.sha256(b"\x00" + self.canonical()).digest()

    @classmethod
    def from_canonical(cls, data: bytes) -> Event:
        """Parse canonical bytes; refuses anything that does not re-encode to the same bytes."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != _KEYS:
            raise InvalidEvent("event keys do not match the canonical set")
        if obj["v"] != FORMAT_VERSION:
            raise InvalidEvent(f"unsupported event format version {obj['v']!r}")
        time_text = obj["time"]
        if not isinstance(time_text, str) or not time_text.endswith("Z"):
            raise InvalidEvent("time must be UTC text ending in Z")
        try:
            when = datetime.fromisoformat(time_text[:-1]).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidEvent("time is not ISO 8601") from None
        args = {k: v for k, v in obj.items() if k not in ("v", "time")}
        try:
            event = cls(time=when, **args)
        except TypeError as exc:
            raise InvalidEvent(str(exc)) from None
        if event.canonical() != data:
            raise InvalidEvent("event bytes are not in canonical form")
        return event


_NEW_FIELD_NAMES = tuple(f.name for f in fields(NewEvent))

# Keys in code-point order, as sort_keys would put them; {2} is the user (quoted, or null).
_CANONICAL = (
    '{{"action":"{0}","actor_org":"{1}","actor_user":{2},"charter_version":"{3}",'
    '"decision":"{4}","ip_hash":"{5}","object_id":"{6}","object_type":"{7}","purpose":"{8}",'
    '"request_id":"{9}","rule":"{10}","seq":{11},"time":"{12}","v":{13}}}'
)

_KEYS = frozenset(
    {
        "v",
        "seq",
        "time",
        "action",
        "actor_user",
        "actor_org",
        "object_type",
        "object_id",
        "purpose",
        "decision",
        "rule",
        "charter_version",
        "request_id",
        "ip_hash",
    }
)


def _canonical_line_pattern() -> bytes:
    """A regular expression for exactly the canonical bytes of a valid event (see
    :data:`CANONICAL_LINES`), built from the same field rules as :class:`NewEvent`."""
    ident = _IDENT.pattern
    optional = f'"(?:{ident})?"'
    actions = "|".join(
        re.escape(a.value) for a in sorted(Action, key=lambda a: len(a.value), reverse=True)
    )
    # Dates that datetime.fromisoformat accepts: year 0001-9999, the days each month has
    # (29 February in leap years only).
    year = r"(?!0000)\d{4}"
    leap = r"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
    day = (
        rf"(?:{year}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
        rf"|{year}-(?:0[13-9]|1[0-2])-(?:29|30)"
        rf"|{year}-(?:0[13578]|1[02])-31"
        rf"|{leap}-02-29)"
    )
    clock = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z"
    text = (
        rf'\{{"action":"(?:{actions})","actor_org":{optional},'
        rf'"actor_user":(?:null|"{ident}"),"charter_version":{optional},'
        r'"decision":"(?:allow|deny|)","ip_hash":"(?:[0-9a-f]{64})?",'
        # object_id needs an object_type: a non-empty one is followed by a non-empty type.
        rf'"object_id":(?:""|"{ident}"(?=,"object_type":"[a-z])),'
        rf'"object_type":"(?:{_OBJECT_TYPE.pattern})?","purpose":{optional},'
        rf'"request_id":{optional},"rule":{optional},"seq":(0|[1-9][0-9]*),'
        rf'"time":"{day}T{clock}","v":{FORMAT_VERSION}\}}'
    )
    return text.encode("ascii")


CANONICAL_LINES = re.compile(b"^" + _canonical_line_pattern() + b"$", re.MULTILINE)
"""Matches, line by line, exactly the canonical bytes of valid events; group 1 is ``seq``.

What :meth:`Event.from_canonical` accepts, without decoding: the offline verifier checks a
million lines with ``CANONICAL_LINES.findall(block)`` (one ``seq`` per line that matches) where
a JSON decode, a validation and a re-encoding per event would cost ten times more. The tests
check both agree; where they would not, the verifier falls back to :meth:`Event.from_canonical`.
"""


def hash_ip(key: bytes, ip: str) -> str:
    """Keyed HMAC-SHA256 of a client IP address, as 64 hex digits.

    The key stays on the hub (rotate it to unlink old and new events); without it the hash of
    the small IPv4 space cannot be reversed by enumeration. The address is normalised first
    so that equal addresses written differently hash alike.
    """
    if len(key) < _MIN_IP_KEY:
        raise InvalidEvent("the IP hashing key must be at least 16 bytes")
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise InvalidEvent("not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return hmac.new(key, address.compressed.encode("ascii"), hashlib.sha256).hexdigest()
