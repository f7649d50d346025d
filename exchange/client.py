"""A partner system's client of the hub: authentication, directory sync, devices, forms.

No Flask, no SQLAlchemy: the standard library's HTTP client, ``cryptography`` and ``joserfc``
only. The client never trusts the hub's word about keys: it keeps a verified replica of the
key directory (:mod:`exchange.directory`) and seals only to keys found in it; what the hub
says of recipients (who may see which field) is checked by the hub again on receipt, and by
every recipient on opening.

The network is behind a :class:`Fetcher` (one method), so tests run the client against the
hub's test client, and the CLI against a real hub over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import OKPKey

from exchange.directory import Directory
from exchange.encoding import b64e
from exchange.envelope import (
    MAX_ENVELOPE_BYTES,
    Attachment,
    CharterRef,
    FieldValue,
    Manifest,
    OpenedForm,
    ViewPlan,
    open_form,
    parse,
    seal,
)
from exchange.errors import ExchangeError, VerificationError
from exchange.keys import DeviceKey, DeviceSecrets

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The largest answer is an envelope (attachments included), with room for the JSON around.
MAX_RESPONSE_BYTES = MAX_ENVELOPE_BYTES + 64 * 1024


class HubError(ExchangeError):
    """The hub refused a call: its HTTP status, stable code, French message and details."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(code, "%(text)s", text=message)
        self.status = status
        self.details = dict(details)


@dataclass(frozen=True)
class Response:
    """An HTTP answer, body capped at :data:`MAX_RESPONSE_BYTES`."""

    status: int
    body: bytes
    content_type: str = ""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body.decode("utf-8"))


class Fetcher(Protocol):
    """One HTTP exchange with the hub (``path`` starts with ``/``)."""

    def __call__(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """Send and return the answer; raise ``OSError`` when the hub cannot be reached."""
        ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as they come, never followed: following one would carry the
    bearer token to another address (or from https down to http)."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
# On this machine, never through a proxy from the environment: over plain http the bearer
# token would go to it in clear.
_LOCAL_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _read_capped(answer: Any) -> bytes:
    body = bytes(answer.read(MAX_RESPONSE_BYTES + 1))
    if len(body) > MAX_RESPONSE_BYTES:
        # Refused rather than cut: a truncated page of entries or envelope must not be read.
        raise OSError(f"the hub's answer exceeds {MAX_RESPONSE_BYTES} bytes")
    return body


@dataclass(frozen=True)
class HttpFetcher:
    """The real network: ``urllib`` towards ``base_url`` (https, or http on this machine's
    loopback only), certificates verified, redirects never followed."""

    base_url: str
    timeout: float = 30.0

    def __post_init__(self) -> None:
        url = self.base_url.rstrip("/")
        parts = urlsplit(url)
        # The host must be exactly a loopback name for plain http: a prefix test would let
        # "http://localhost.attacker.example" or "http://localhost@attacker.example" through.
        plain_ok = parts.scheme == "http" and parts.hostname in _LOOPBACK
        if (
            not (parts.scheme == "https" or plain_ok)
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
        ):
            raise ValueError("the hub's address must be https (or http on this machine)")
        object.__setattr__(self, "base_url", url)

    def __call__(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """See :class:`Fetcher`."""
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.base_url + path, data=body, method=method, headers=dict(headers)
        )
        try:
            opener = _LOCAL_OPENER if urlsplit(self.base_url).hostname in _LOOPBACK else _OPENER
            with opener.open(request, timeout=self.timeout) as answer:
                return Response(
                    answer.status, _read_capped(answer), answer.headers.get("Content-Type", "")
                )
        except urllib.error.HTTPError as error:
            return Response(error.code, _read_capped(error), error.headers.get("Content-Type", ""))


@dataclass
class Credentials:
    """An organisation's API client: its id, the hub's address and its private key."""

    client_id: str
    hub_url: str
    key: Ed25519PrivateKey

    def assertion(self, now: datetime) -> str:
        """An RFC 7523 client assertion (two minutes, one use), signed with ``alg: Ed25519``."""
        jwk = OKPKey.import_key(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64e(self.key.public_key().public_bytes_raw()),
                "d": b64e(self.key.private_bytes_raw()),
            }
        )
        issued = int(now.timestamp())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": f"{self.hub_url.rstrip('/')}/api/v1/token",
            "iat": issued,
            "exp": issued + 120,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": "Ed25519", "typ": "JWT", "kid": jwk.thumbprint()}
        return jwt.encode(header, claims, jwk, algorithms=["Ed25519"])


@dataclass
class HubClient:
    """The hub's API, as a partner system calls it."""

    fetch: Fetcher
    credentials: Credentials
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    progress: Callable[[str], None] = field(default=lambda _text: None)
    _token: str = ""
    _token_until: float = 0.0

    # -- plumbing ------------------------------------------------------------------------------

    def _authenticate(self) -> str:
        if self._token and time.monotonic() < self._token_until:
            return self._token
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.credentials.assertion(self.clock()),
            }
        ).encode("ascii")
        answer = self.fetch(
            "POST",
            "/api/v1/token",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        body = self._checked(answer)
        self._token = str(body["access_token"])
        # Renewed a little before it expires rather than after a refusal.
        self._token_until = time.monotonic() + max(10, int(body["expires_in"]) - 30)
        return self._token

    @staticmethod
    def _checked(answer: Response) -> Any:
        try:
            body = answer.json() if answer.body else {}
        except (ValueError, UnicodeDecodeError):
            body = {}
        if answer.status >= 300:  # a redirect is not followed: it is no answer
            details = body if isinstance(body, dict) else {}
            raise HubError(
                answer.status,
                str(details.get("error", f"http_{answer.status}")),
                str(details.get("message", "Réponse inattendue du hub.")),
                details,
            )
        return body

    def call(
        self, method: str, path: str, *, json_body: Any = None, raw: bytes | None = None
    ) -> Any:
        """An authenticated call; the JSON answer, or :class:`HubError`."""
        return self._checked(self.raw(method, path, json_body=json_body, raw=raw))

    def raw(
        self, method: str, path: str, *, json_body: Any = None, raw: bytes | None = None
    ) -> Response:
        """An authenticated call; the answer as it came."""
        headers = {"Authorization": f"Bearer {self._authenticate()}"}
        body = raw
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.fetch(method, path, body=body, headers=headers)

    # -- directory -----------------------------------------------------------------------------

    def sync(self, replica: Directory, entries: list[bytes]) -> tuple[Directory, list[bytes]]:
        """Bring ``replica`` up to the hub's latest signed checkpoint, verifying every entry;
        ``entries`` (kept by the caller) grows with the new ones. Shows progress."""
        head = self.call("GET", "/api/v1/annuaire")
        size = int(head["size"])
        new: list[bytes] = []
        start = replica.size
        while start + len(new) < size:
            page = self.call("GET", f"/api/v1/annuaire/entrees?debut={start + len(new)}&fin={size}")
            batch = [base64.urlsafe_b64decode(e + "=" * (-len(e) % 4)) for e in page["entries"]]
            if not batch:
                break
            new.extend(batch)
            self.progress(f"Annuaire : {start + len(new)}/{size} entrées")
        # The update checks the new entries lead exactly to the signed root.
        updated = replica.update(new, head["checkpoint"])
        return updated, [*entries, *new]

    def directory_vkey(self) -> str:
        """The directory key the hub announces (trust it only after comparing it out of band)."""
        return str(self.call("GET", "/api/v1/annuaire")["vkey"])

    # -- devices -------------------------------------------------------------------------------

    def register(self, key: DeviceKey, label: str) -> dict[str, Any]:
        """Publish this system's device key."""
        return dict(
            self.call("POST", "/api/v1/appareils", json_body={"key": key.record(), "label": label})
        )

    def devices(self) -> list[dict[str, Any]]:
        """This system's device keys in force."""
        return list(self.call("GET", "/api/v1/appareils")["devices"])

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke one of this system's device keys."""
        return dict(self.call("POST", f"/api/v1/appareils/{quote(key_id, safe='')}/revocation"))

    # -- forms ---------------------------------------------------------------------------------

    def recipients(self, case: str, purpose: str, fields: Sequence[str]) -> dict[str, Any]:
        """Who may receive which of ``fields`` on ``case`` for ``purpose`` (the hub's view)."""
        query = urlencode({"finalite": purpose, "champs": ",".join(sorted(fields))})
        return dict(
            self.call("GET", f"/api/v1/dossiers/{quote(case, safe='')}/destinataires?{query}")
        )

    def send(self, envelope: bytes) -> dict[str, Any]:
        """Relay a sealed form (a retry with the same form id is answered as the first)."""
        return dict(self.call("POST", "/api/v1/fiches", raw=envelope))

    def inbox(self) -> list[dict[str, Any]]:
        """Forms received by this system's devices."""
        return list(self.call("GET", "/api/v1/fiches")["forms"])

    def fetch_form(self, form: str, key_id: str) -> bytes:
        """The envelope of ``form`` for the device ``key_id``."""
        path = f"/api/v1/fiches/{quote(form, safe='')}?appareil={quote(key_id, safe='')}"
        answer = self.raw("GET", path)
        if answer.status >= 400:
            self._checked(answer)  # raises HubError with the hub's code
        return answer.body

    def acknowledge(self, form: str, key_id: str, *, violation: str = "") -> None:
        """Report the form opened and checked, or found in violation (``violation``: its code)."""
        path = f"/api/v1/fiches/{quote(form, safe='')}/" + (
            "violation" if violation else "ouverture"
        )
        body: dict[str, str] = {"appareil": key_id}
        if violation:
            body["code"] = violation
        self.call("POST", path, json_body=body)


@dataclass(frozen=True)
class Plan:
    """A form ready to seal: which recipient gets which fields, checked against the directory."""

    case: str
    purpose: str
    charter: CharterRef
    views: tuple[ViewPlan, ...]
    owners: tuple[tuple[str, tuple[str, ...], int], ...]  # owner, fields, devices
    left_out: tuple[str, ...]  # asked-for fields nobody may receive


def plan_form(
    answer: Mapping[str, Any],
    values: Mapping[str, FieldValue],
    replica: Directory,
    purpose: str,
    *,
    case: str | None = None,
) -> Plan:
    """One view per distinct set of fields, sealed only to keys the verified directory holds for
    the owner the hub named. A key the hub names but the directory does not (or for someone
    else) stops everything: the hub may be substituting keys. ``case``: the case asked about,
    which the answer must be about."""
    if case is not None and answer.get("case") != case:
        raise VerificationError(
            "case_mismatch", "Le hub répond pour un autre dossier que celui demandé."
        )
    views: dict[tuple[str, ...], list[DeviceKey]] = {}
    owners: list[tuple[str, tuple[str, ...], int]] = []
    given: set[str] = set()
    for recipient in answer["recipients"]:
        fields = tuple(sorted(f for f in recipient["fields"] if f in values))
        if not fields or not recipient["devices"]:
            continue
        keys: list[DeviceKey] = []
        for key_id in recipient["devices"]:
            state = replica.state(key_id)
            if state is None or not state.current or state.owner != recipient["owner"]:
                raise VerificationError(
                    "key_not_in_directory",
                    "Le hub propose une clé que l'annuaire vérifié ne lui attribue pas : "
                    "envoi arrêté.",
                )
            keys.append(state.key)
        # Every key in force of the owner, as the directory says (not only those the hub listed).
        for state in replica.devices([recipient["owner"]]):
            if state.key not in keys:
                keys.append(state.key)
        views.setdefault(fields, []).extend(keys)
        owners.append((recipient["owner"], fields, len(keys)))
        given.update(fields)
    charter = answer["charter"]
    return Plan(
        case=str(answer["case"]),
        purpose=purpose,
        charter=CharterRef(str(charter["id"]), int(charter["version"]), str(charter["digest"])),
        views=tuple(
            ViewPlan({f: values[f] for f in fields}, sorted(keys, key=lambda k: k.key_id))
            for fields, keys in sorted(views.items())
        ),
        owners=tuple(owners),
        left_out=tuple(sorted(set(values) - given)),
    )


def seal_plan(
    plan: Plan,
    *,
    secrets: DeviceSecrets,
    sender: str,
    org: str,
    directory_note: str,
    now: datetime,
    files: Sequence[Attachment] = (),
) -> bytes:
    """The sealed envelope of ``plan`` (with ``files`` for the fields they support), signed by
    this device."""
    return seal(
        secrets=secrets,
        user=sender,
        org=org,
        case=plan.case,
        charter=plan.charter,
        consent=None,
        purpose=plan.purpose,
        directory=directory_note,
        views=list(plan.views),
        now=now,
        files=files,
    ).to_bytes()


# How long after its owner rotated a key the forms it signed before still open (a form waits
# in the inbox; a key revoked by an administrator, lost or stolen, gets no such grace).
ROTATION_GRACE = timedelta(days=30)


def sender_key(replica: Directory, manifest: Manifest, *, now: datetime | None = None) -> DeviceKey:
    """The key that must have signed ``manifest``, from the verified directory, checked before
    anything is opened:

    - the directory's owner and organisation for it are the sender and organisation the
      manifest names — otherwise a hub could pass off a form signed by any key it holds as
      coming from another partner (``sender_mismatch``);
    - the sender's checkpoint is consistent with this replica (``split_view``,
      ``checkpoint_ahead``) and already held the key (``sender_key_unseen``);
    - the key is in force (``key_revoked``), with one exception: its owner rotated it after
      the checkpoint the sender cites, less than :data:`ROTATION_GRACE` ago (the revocation's
      own time, signed into the log), so a form sealed before a rotation still opens for a
      while. The checkpoint is the sender's claim: whoever holds a rotated key could sign a
      form citing an older checkpoint during that window. A key revoked by an administrator
      (lost, stolen, its owner disabled) never opens.
    """
    state = replica.state(manifest.sender.device)
    if state is None:
        raise VerificationError("key_unknown", "Clé d'appareil absente de l'annuaire.")
    if state.owner != manifest.sender.user or state.org != manifest.sender.org:
        raise VerificationError(
            "sender_mismatch",
            "Selon l'annuaire vérifié, la clé de signature n'est pas celle de l'expéditeur "
            "annoncé.",
        )
    checkpoint = replica.check_peer(manifest.directory)
    if state.added >= checkpoint.size:
        raise VerificationError(
            "sender_key_unseen",
            "La clé de signature n'était pas dans l'annuaire vu par l'expéditeur.",
        )
    if state.revoked is not None:
        rotated = datetime.strptime(state.revoked_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        within_grace = (now or datetime.now(UTC)) - rotated <= ROTATION_GRACE
        if not (
            state.revoked >= checkpoint.size and state.revoked_reason == "owner" and within_grace
        ):
            raise VerificationError("key_revoked", "Clé d'appareil révoquée.")
    return state.key


def open_received(
    data: bytes, *, secrets: DeviceSecrets, replica: Directory, now: datetime | None = None
) -> OpenedForm:
    """Open a received form: the sender's key as :func:`sender_key` establishes it from the
    verified directory, then the form's own checks (:func:`~exchange.envelope.open_form`)."""
    envelope = parse(data)
    key = sender_key(replica, envelope.manifest, now=now)
    return open_form(envelope, secrets=secrets, sender_key=key)


@dataclass(frozen=True)
class CodeCheck:
    """One browser script: the digest the directory last logged for it, and the served one's."""

    module: str
    logged: str
    served: str

    @property
    def matches(self) -> bool:
        """Whether the hub serves what it logged (and logged it at all)."""
        return bool(self.logged) and hmac.compare_digest(self.logged, self.served)


# The scripts a hub's pages run on forms (hub/assets.py serves and logs exactly these). Pinned
# here rather than taken from the directory: a hub could otherwise log nothing, or make its
# pages load a script it never logged, and a witness would have nothing to compare.
BROWSER_SCRIPTS = ("js/echange.js", "js/fiches.js")


def check_served_code(replica: Directory, served: Callable[[str], bytes]) -> list[CodeCheck]:
    """Compare each of :data:`BROWSER_SCRIPTS` as the hub serves it (``served(module)``: its
    bytes as fetched from ``/static/<module>``) with the last release the verified directory
    logged for it; a script never logged, or a logged one this client does not know, is a
    mismatch too. A mismatch means the pages could run code nobody can check
    (docs/browser.md)."""
    checks = []
    for module in BROWSER_SCRIPTS:
        release = replica.latest_release(module)
        served_digest = hashlib.sha256(served(module)).hexdigest()
        checks.append(CodeCheck(module, release.sha256 if release else "", served_digest))
    unknown = sorted({r.module for r in replica.releases} - set(BROWSER_SCRIPTS))
    checks.extend(CodeCheck(module, "", "") for module in unknown)
    return checks


def check_own_keys(replica: Directory, owner: str, known: Sequence[str]) -> None:
    """Refuse a directory that gives ``owner`` (this system) a key it never registered, in
    force or since revoked: the hub (or whoever holds its signing key) could read forms sealed
    to it or sign in its name. Every client watches its own entries this way on each sync;
    ``maillon keys trust`` accepts a key of another installation of the same system."""
    # Revoked ones included: a key added under this name and revoked before this system's
    # next sync could still have read forms sealed to it, or signed forms in its name.
    foreign = [s.key.key_id for s in replica.history(owner) if s.key.key_id not in known]
    if foreign:
        raise VerificationError(
            "foreign_key",
            "ALERTE : l'annuaire attribue à ce système des clés qu'il n'a pas enregistrées "
            "(%(keys)s). Prévenez le DPO et l'exploitant du hub ; rien n'est envoyé.",
            keys=", ".join(foreign),
        )
