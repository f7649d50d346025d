"""API authentication for organisation systems: RFC 7523 ``private_key_jwt`` client assertions
exchanged for short-lived access tokens.

Algorithms are pinned to ``Ed25519`` (RFC 9864's fully-specified name for EdDSA over Ed25519);
keys come only from our own registry — header ``jwk``/``jku``/``x5u``/``x5c`` are refused and a
``kid`` must name the registered key — so no header can choose the key or the algorithm.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from hub.i18n import N_
from hub.models import ApiClient, UsedAssertion

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


def parse_public_jwk(text: str) -> OKPKey:
    """An Ed25519 public key from JWK JSON; anything else raises :class:`ValueError`."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("kty") != "OKP" or data.get("crv") != "Ed25519":
        raise ValueError("an Ed25519 OKP JWK is required")
    if "d" in data:
        raise ValueError("a public key is required, not a private one")
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": data["x"]})
    return key


def _header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise _invalid_client()
    try:
        compact = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeEncodeError) as exc:
        raise _invalid_client() from exc
    header = dict(compact.protected)
    if header.get("alg") != ALGORITHM or _FORBIDDEN_HEADERS & header.keys():
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
        header = _header(assertion)
        claims = _unverified_claims(assertion)
        client = self._active_client(claims.get("iss"))
        if "kid" in header and header["kid"] != client.key_id:
            raise _invalid_client()
        try:
            key = parse_public_jwk(client.public_jwk)
            token = jwt.decode(assertion, key, algorithms=[ALGORITHM])
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
            header = _header(token)
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
