"""API authentication for organisation systems: RFC 7523 ``private_key_jwt`` client assertions
exchanged for short-lived access tokens.

The algorithm is bound to the registered key, never taken from the token: an Ed25519 key verifies
``Ed25519`` (RFC 9864) or its older name ``EdDSA`` (the same scheme), a P-256 key ``ES256``, an
RSA key of 3072 bits or more ``PS256`` — what partners' Java and .NET JOSE libraries sign with.
Keys come only from our own registry — header ``jwk``/``jku``/``x5u``/``x5c`` are refused and a
``kid`` must name the registered key — so no header can choose the key or the algorithm. Access
tokens are the hub's own and stay ``Ed25519`` only.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from hub.i18n import N_, MessageError
from hub.models import ApiClient, UsedAssertion

# The hub's own access tokens: signed and verified with the server's Ed25519 key only.
ALGORITHM = "Ed25519"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type
MAX_TOKEN_BYTES = 8192
_FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "zip"})
LEEWAY_SECONDS = 30


class ApiAuthError(Exception):
    """A refused API authentication; ``code`` is stable, ``message`` is French."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _invalid_client() -> ApiAuthError:
    return ApiAuthError("invalid_client", N_("Authentification du client refusée."))


def _invalid_token() -> ApiAuthError:
    return ApiAuthError("invalid_token", N_("Jeton d'accès invalide ou expiré."))


def public_jwk(key: Ed25519PrivateKey) -> dict[str, Any]:
    """The public JWK of an Ed25519 key (for registering a client or publishing the server key)."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return dict(OKPKey.import_key(pem).as_dict(private=False))


@functools.lru_cache(maxsize=4)
def _okp_private(key: Ed25519PrivateKey) -> tuple[OKPKey, str]:
    # Cached by key object: the server key lives as long as the app, and an ApiAuth is built
    # per request (re-importing the key cost ~80 µs a call, its thumbprint ~20 µs more).
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    imported = OKPKey.import_key(pem)
    return imported, imported.thumbprint()


# Every API call looks its client up: one statement, built once, with the organisation.
_CLIENT = (
    select(ApiClient)
    .where(ApiClient.client_id == bindparam("client_id"))
    .options(joinedload(ApiClient.organisation))
)


# -- client keys: the registered key decides the algorithm ---------------------------------

RSA_MIN_BITS = 3072
# joserfc refuses signatures longer than 1024 bytes: a larger modulus could never authenticate.
RSA_MAX_BITS = 8192

# Members only a private or secret JWK carries (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class ClientKeyError(MessageError):
    """A JWK refused as a client key; the French message says why."""


@dataclass(frozen=True)
class _KeyType:
    """An accepted kind of client key: how its JWK reads and the algorithms it verifies."""

    label: str
    kty: str
    crv: str | None
    members: tuple[str, ...]
    algorithms: tuple[str, ...]
    importer: type[OKPKey] | type[ECKey] | type[RSAKey] = field(repr=False)


_KEY_TYPES = (
    # "EdDSA" is the RFC 8037 name most libraries still write; RFC 9864 renamed the same
    # signature scheme over this curve "Ed25519".
    _KeyType("Ed25519", "OKP", "Ed25519", ("x",), ("Ed25519", "EdDSA"), OKPKey),
    _KeyType("P-256", "EC", "P-256", ("x", "y"), ("ES256",), ECKey),
    # PSS only: RS256 (PKCS#1 v1.5) is what a key meant for something else would sign with.
    _KeyType("RSA", "RSA", None, ("n", "e"), ("PS256",), RSAKey),
)
CLIENT_ALGORITHMS = frozenset(alg for kind in _KEY_TYPES for alg in kind.algorithms)


def _eddsa_as_ed25519() -> JWSAlgModel:
    # joserfc's "EdDSA" takes an Ed25519 or an Ed448 key and warns at each use (RFC 9864). Bound
    # to a registered Ed25519 key the name means exactly Ed25519: verify it with the
    # curve-checked Ed25519 verifier under the older name.
    alias = copy.copy(jws.JWSRegistry.algorithms["Ed25519"])
    alias.name = "EdDSA"
    return alias


class _ClientAssertionRegistry(jws.JWSRegistry):
    """A JWS registry that knows the client algorithms only.

    ``none``, HMAC, ``RS256``, ``ES384``… do not exist for it, so no header can reach them even
    if a check before it were wrong; each key type gets an instance pinned to its algorithms.
    """

    algorithms = {  # noqa: RUF012 - replaces, for this registry only, joserfc's table
        "Ed25519": jws.JWSRegistry.algorithms["Ed25519"],
        "EdDSA": _eddsa_as_ed25519(),
        "ES256": jws.JWSRegistry.algorithms["ES256"],
        "PS256": jws.JWSRegistry.algorithms["PS256"],
    }
    recommended: list[str] = []  # noqa: RUF012 - nothing is allowed unless pinned


_REGISTRIES = {
    kind.label: _ClientAssertionRegistry(algorithms=kind.algorithms) for kind in _KEY_TYPES
}


@dataclass(frozen=True)
class ClientKey:
    """A client's public key and the only algorithms it verifies, derived from its type."""

    key: OKPKey | ECKey | RSAKey
    label: str
    algorithms: tuple[str, ...]

    @property
    def key_id(self) -> str:
        """The RFC 7638 thumbprint: the only ``kid`` an assertion may carry."""
        return self.key.thumbprint()

    def to_json(self) -> str:
        """The JWK as stored: the public members that define the key, nothing else."""
        return json.dumps(self.key.as_dict(private=False))

    def verify(self, token: str) -> jwt.Token:
        """The decoded token if this key signed it with one of its algorithms.

        Raises :class:`~joserfc.errors.JoseError` (or :class:`ValueError`) otherwise.
        """
        return jwt.decode(token, self.key, registry=_REGISTRIES[self.label])


def _key_type(data: dict[str, Any]) -> _KeyType:
    for kind in _KEY_TYPES:
        if data.get("kty") == kind.kty and (kind.crv is None or data.get("crv") == kind.crv):
            return kind
    shown = " ".join(str(data[m])[:20] for m in ("kty", "crv") if m in data) or "?"
    raise ClientKeyError(
        N_(
            "Clé refusée : type de clé non accepté (%(kind)s). Sont acceptées les clés "
            "publiques Ed25519 (OKP), P-256 (EC) et RSA de 3072 bits au moins."
        ),
        kind=shown,
    )


def _check_declared_use(data: dict[str, Any], kind: _KeyType) -> None:
    # A JWK may say what it is for. One meant for encryption or another algorithm (an RSA key
    # marked RS256, say) would fail at every token request: refuse it now, saying why.
    use, key_ops, alg = data.get("use"), data.get("key_ops"), data.get("alg")
    if (
        (use is not None and use != "sig")
        or (key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops))
        or (alg is not None and alg not in kind.algorithms)
    ):
        raise ClientKeyError(
            N_(
                "Clé refusée : le JWK se déclare pour un autre usage (« use », « key_ops » ou "
                "« alg ») ; une clé %(kind)s n'est acceptée que pour signer en %(algorithms)s."
            ),
            kind=kind.label,
            algorithms=" / ".join(kind.algorithms),
        )


def parse_public_jwk(text: str | bytes) -> ClientKey:
    """A client's public key from JWK JSON, with the algorithms its type allows.

    Accepted: a public Ed25519 (OKP), P-256 (EC) or RSA key of 3072 to 8192 bits. Anything else,
    a JWK with a private member, or one declared for another use raises :class:`ClientKeyError`.
    Only the members that define the key are kept (``kid``, ``alg``, ``x5c``… are dropped).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:  # bad JSON, or bytes in no UTF encoding
        raise ClientKeyError(N_("Clé refusée : le fichier n'est pas une clé JWK (JSON).")) from exc
    if not isinstance(data, dict):
        raise ClientKeyError(N_("Clé refusée : le fichier n'est pas une clé JWK (JSON)."))
    private = [member for member in _PRIVATE_MEMBERS if member in data]
    if private:
        raise ClientKeyError(
            N_(
                "Clé refusée : ce JWK contient une partie privée (%(members)s). Enregistrez la "
                "clé publique seule : la clé privée ne quitte jamais l'organisation."
            ),
            members=", ".join(private),
        )
    kind = _key_type(data)
    malformed = ClientKeyError(N_("Clé refusée : la clé %(kind)s est mal formée."), kind=kind.label)
    if not all(isinstance(data.get(member), str) and data[member] for member in kind.members):
        raise malformed
    members: dict[str, str | list[str]] = {"kty": kind.kty}
    if kind.crv:
        members["crv"] = kind.crv
    members.update({member: data[member] for member in kind.members})
    try:
        # Importing checks the key itself: point on the curve, 32-byte Ed25519 key, 3 <= e < n.
        key = kind.importer.import_key(members)
    except (JoseError, ValueError, TypeError) as exc:
        raise malformed from exc
    if isinstance(key, RSAKey) and not RSA_MIN_BITS <= key.public_key.key_size <= RSA_MAX_BITS:
        raise ClientKeyError(
            N_("Clé refusée : clé RSA de %(bits)s bits ; il en faut de %(min)s à %(max)s."),
            bits=key.public_key.key_size,
            min=RSA_MIN_BITS,
            max=RSA_MAX_BITS,
        )
    _check_declared_use(data, kind)
    return ClientKey(key, kind.label, kind.algorithms)


@functools.lru_cache(maxsize=256)
def _registered_key(public_jwk: str) -> ClientKey:
    # The stored key goes through the registration rules again, so a row that no longer passes
    # them authenticates nothing; cached by its text, as parsing an RSA key costs at each call.
    return parse_public_jwk(public_jwk)


def _header(token: str, algorithms: Collection[str]) -> dict[str, Any]:
    # A cheap first filter, before any database look-up; the key's own algorithms come after.
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise _invalid_client()
    try:
        compact = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeEncodeError) as exc:
        raise _invalid_client() from exc
    header = dict(compact.protected)
    if header.get("alg") not in algorithms or _FORBIDDEN_HEADERS & header.keys():
        raise _invalid_client()
    return header


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeEncodeError) as exc:
        raise _invalid_client() from exc
    if not isinstance(claims, dict):
        raise _invalid_client()
    return claims


@dataclass(frozen=True)
class IssuedToken:
    """An access token and its lifetime."""

    access_token: str
    expires_in: int


class ApiAuth:
    """Verifies client assertions, issues and checks access tokens."""

    def __init__(
        self,
        session: Session,
        server_key: Ed25519PrivateKey,
        *,
        issuer: str,
        clock: Callable[[], datetime],
        token_seconds: int = 300,
        assertion_max_seconds: int = 300,
    ) -> None:
        self.session = session
        self.issuer = issuer
        self.clock = clock
        self.token_seconds = token_seconds
        self.assertion_max_seconds = assertion_max_seconds
        self._signing_key, self._server_kid = _okp_private(server_key)

    @property
    def token_endpoint(self) -> str:
        """The ``aud`` a client assertion must carry."""
        return f"{self.issuer}/api/v1/token"

    @property
    def audience(self) -> str:
        """The ``aud`` of access tokens."""
        return f"{self.issuer}/api"

    def _active_client(self, client_id: Any) -> ApiClient:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            raise _invalid_client()
        client = self.session.scalar(_CLIENT, {"client_id": client_id})
        if client is None or not client.active or not client.organisation.active:
            raise _invalid_client()
        return client

    def authenticate_client(self, assertion_type: str, assertion: str) -> ApiClient:
        """Verify a client assertion and record its ``jti`` so it cannot be replayed."""
        if assertion_type != ASSERTION_TYPE or not assertion:
            raise ApiAuthError(
                "invalid_request", N_("Assertion du client manquante ou mal typée."), 400
            )
        header = _header(assertion, CLIENT_ALGORITHMS)
        claims = _unverified_claims(assertion)
        client = self._active_client(claims.get("iss"))
        try:
            key = _registered_key(client.public_jwk)
        except ClientKeyError as exc:
            raise _invalid_client() from exc
        # The registered key decides the algorithm; the token's "alg" may only agree with it.
        if header["alg"] not in key.algorithms:
            raise _invalid_client()
        if "kid" in header and header["kid"] != client.key_id:
            raise _invalid_client()
        try:
            token = key.verify(assertion)
            now = int(self.clock().timestamp())
            jwt.JWTClaimsRegistry(
                now=now,
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": client.client_id},
                sub={"essential": True, "value": client.client_id},
                aud={"essential": True, "value": self.token_endpoint},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise _invalid_client() from exc
        exp = token.claims["exp"]
        jti = token.claims["jti"]
        if (
            not isinstance(exp, int)
            or exp - now > self.assertion_max_seconds
            or not isinstance(jti, str)
            or not 8 <= len(jti) <= 128
        ):
            raise _invalid_client()
        try:
            with self.session.begin_nested():
                self.session.add(
                    UsedAssertion(
                        client_id=client.client_id,
                        jti=jti,
                        expires_at=datetime.fromtimestamp(exp, tz=self.clock().tzinfo)
                        + timedelta(seconds=LEEWAY_SECONDS),
                    )
                )
        except IntegrityError as exc:
            raise ApiAuthError("invalid_client", N_("Assertion déjà utilisée.")) from exc
        return client

    def issue_token(self, client: ApiClient) -> IssuedToken:
        """A signed, short-lived access token for ``client``."""
        now = int(self.clock().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "org": client.organisation.public_id,
            "iat": now,
            "exp": now + self.token_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": self._server_kid}
        token = jwt.encode(header, claims, self._signing_key, algorithms=[ALGORITHM])
        return IssuedToken(access_token=token, expires_in=self.token_seconds)

    def verify_access_token(self, token: str) -> ApiClient:
        """The client an access token was issued to, if the token and the client are valid now."""
        try:
            header = _header(token, (ALGORITHM,))
        except ApiAuthError as exc:
            raise _invalid_token() from exc
        if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("kid") != self._server_kid:
            raise _invalid_token()
        try:
            decoded = jwt.decode(token, self._signing_key, algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(
                now=int(self.clock().timestamp()),
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise _invalid_token() from exc
        try:
            return self._active_client(decoded.claims["sub"])
        except ApiAuthError as exc:
            raise _invalid_token() from exc
