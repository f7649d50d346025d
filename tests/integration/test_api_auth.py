"""API authentication (RFC 7523 private_key_jwt) and the classic JWT attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from hub.api_auth import ASSERTION_TYPE, public_jwk
from hub.models import ApiClient, Organisation
from tests.conftest import FakeClock

TOKEN_URL = "http://localhost/api/v1/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@dataclass
class Client:
    client_id: str
    key: Ed25519PrivateKey
    kid: str

    def claims(self, now: FakeClock, **changes: Any) -> dict[str, Any]:
        base = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": TOKEN_URL,
            "exp": int(now().timestamp()) + 120,
            "iat": int(now().timestamp()),
            "jti": uuid.uuid4().hex,
        }
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def assertion(
        self, now: FakeClock, header: dict[str, Any] | None = None, **changes: Any
    ) -> str:
        return compact(
            header or {"alg": "Ed25519", "typ": "JWT", "kid": self.kid},
            self.claims(now, **changes),
            self.key.sign,
        )


@pytest.fixture
def api_client(app: Flask) -> Client:
    key = Ed25519PrivateKey.generate()
    jwk = public_jwk(key)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = Organisation(name="SPIP système", kind="spip")
        session.add(org)
        from joserfc.jwk import OKPKey

        kid = OKPKey.import_key(jwk).thumbprint()
        client = ApiClient(
            organisation=org, name="Logiciel APPI", public_jwk=json.dumps(jwk), key_id=kid
        )
        session.add(client)
        session.commit()
        return Client(client.client_id, key, kid)


def request_token(client: FlaskClient, assertion: str, **extra: str) -> Any:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    data.update(extra)
    return client.post("/api/v1/token", data=data)


def get_token(client: FlaskClient, api_client: Client, clock: FakeClock) -> str:
    response = request_token(client, api_client.assertion(clock))
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def test_a_signed_assertion_gets_a_short_lived_token_that_opens_the_api(
    client: FlaskClient, api_client: Client, clock: FakeClock
) -> None:
    response = request_token(client, api_client.assertion(clock))
    body = response.get_json()
    assert (
        response.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 300
    )
    me = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["client_id"] == api_client.client_id


def test_access_token_expires(client: FlaskClient, api_client: Client, clock: FakeClock) -> None:
    token = get_token(client, api_client, clock)
    clock.advance(seconds=300 + 31)
    response = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def _attacker_key_pem(api_client: Client, encoding: str) -> bytes:
    public = api_client.key.public_key()
    if encoding == "pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if encoding == "der":
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


BAD_ASSERTIONS = {
    "alg none": lambda c, t: compact({"alg": "none"}, c.claims(t), lambda _: b""),
    "alg none, no signature": lambda c, t: (
        compact({"alg": "none"}, c.claims(t), lambda _: b"")[:-1] + ""
    ),
    "HS256 with public key PEM": lambda c, t: compact(
        {"alg": "HS256"},
        c.claims(t),
        lambda m: hmac.new(_attacker_key_pem(c, "pem"), m, hashlib.sha256).digest(),
    ),
    "HS256 with public key DER": lambda c, t: compact(
        {"alg": "HS256"},
        c.claims(t),
        lambda m: hmac.new(_attacker_key_pem(c, "der"), m, hashlib.sha256).digest(),
    ),
    "HS256 with raw public key": lambda c, t: compact(
        {"alg": "HS256"},
        c.claims(t),
        lambda m: hmac.new(_attacker_key_pem(c, "raw"), m, hashlib.sha256).digest(),
    ),
    "EdDSA name not accepted": lambda c, t: compact({"alg": "EdDSA"}, c.claims(t), c.key.sign),
    "wrong audience": lambda c, t: c.assertion(t, aud="http://localhost/other"),
    "wrong issuer": lambda c, t: c.assertion(t, iss="someone-else"),
    "subject differs from issuer": lambda c, t: c.assertion(t, sub="someone-else"),
    "expired": lambda c, t: c.assertion(t, exp=int(t().timestamp()) - 60),
    "no expiry": lambda c, t: c.assertion(t, exp=None),
    "expiry too far": lambda c, t: c.assertion(t, exp=int(t().timestamp()) + 3600),
    "no jti": lambda c, t: c.assertion(t, jti=None),
    "kid of another key": lambda c, t: c.assertion(t, header={"alg": "Ed25519", "kid": "another"}),
    "signature of another key": lambda c, t: compact(
        {"alg": "Ed25519"}, c.claims(t), Ed25519PrivateKey.generate().sign
    ),
    "tampered payload": lambda c, t: _tamper(c.assertion(t), c, t),
    "garbage": lambda c, t: "not.a.jwt",
    "too long": lambda c, t: "a" * 9000 + ".b.c",
}


def _injected_jwk(c: Client, t: FakeClock) -> str:
    attacker = Ed25519PrivateKey.generate()
    return compact({"alg": "Ed25519", "jwk": public_jwk(attacker)}, c.claims(t), attacker.sign)


def _injected_jku(c: Client, t: FakeClock) -> str:
    attacker = Ed25519PrivateKey.generate()
    return compact(
        {"alg": "Ed25519", "jku": "https://evil.example/jwks.json"}, c.claims(t), attacker.sign
    )


BAD_ASSERTIONS["injected jwk header"] = _injected_jwk
BAD_ASSERTIONS["injected jku header"] = _injected_jku


def _tamper(token: str, c: Client, t: FakeClock) -> str:
    header, _payload, signature = token.split(".")
    forged = b64(json.dumps(c.claims(t, sub=c.client_id, extra="admin")).encode())
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("attack", sorted(BAD_ASSERTIONS))
def test_forged_or_invalid_assertions_are_refused(
    client: FlaskClient, api_client: Client, clock: FakeClock, attack: str, app: Flask
) -> None:
    response = request_token(client, BAD_ASSERTIONS[attack](api_client, clock))
    assert response.status_code in (400, 401), attack
    body = response.get_json()
    assert body["error"] in {"invalid_client", "invalid_request"} and body["message"]
    assert "access_token" not in body


def test_an_assertion_cannot_be_replayed(
    client: FlaskClient, api_client: Client, clock: FakeClock
) -> None:
    assertion = api_client.assertion(clock)
    assert request_token(client, assertion).status_code == 200
    replay = request_token(client, assertion)
    assert replay.status_code == 401 and replay.get_json() == {
        "error": "invalid_client",
        "message": "Assertion déjà utilisée.",
    }


def test_wrong_grant_type_and_assertion_type_are_refused(
    client: FlaskClient, api_client: Client, clock: FakeClock
) -> None:
    assert (
        request_token(client, api_client.assertion(clock), grant_type="password").get_json()[
            "error"
        ]
        == "unsupported_grant_type"
    )
    response = request_token(client, api_client.assertion(clock), client_assertion_type="urn:other")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def _server_public_bytes(app: Flask, encoding: str) -> bytes:
    public = app.extensions["maillon"].server_key.public_key()
    if encoding == "pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "attack",
    [
        "none",
        "hs256-pem",
        "hs256-der",
        "tampered",
        "assertion-as-token",
        "other-key",
        "wrong-audience",
    ],
)
def test_forged_access_tokens_are_refused(
    client: FlaskClient, api_client: Client, clock: FakeClock, app: Flask, attack: str
) -> None:
    good = get_token(client, api_client, clock)
    header = json.loads(base64.urlsafe_b64decode(good.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    forged = {
        "none": lambda: compact({**header, "alg": "none"}, claims, lambda _: b""),
        "hs256-pem": lambda: compact(
            {**header, "alg": "HS256"},
            claims,
            lambda m: hmac.new(_server_public_bytes(app, "pem"), m, hashlib.sha256).digest(),
        ),
        "hs256-der": lambda: compact(
            {**header, "alg": "HS256"},
            claims,
            lambda m: hmac.new(_server_public_bytes(app, "der"), m, hashlib.sha256).digest(),
        ),
        "tampered": lambda: ".".join(
            [
                good.split(".")[0],
                b64(json.dumps({**claims, "exp": claims["exp"] + 86400}).encode()),
                good.split(".")[2],
            ]
        ),
        "assertion-as-token": lambda: api_client.assertion(clock),
        "other-key": lambda: compact(header, claims, Ed25519PrivateKey.generate().sign),
        "wrong-audience": lambda: compact(header, {**claims, "aud": TOKEN_URL}, lambda _: b"x"),
    }[attack]()
    response = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_bearer_token_is_a_json_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/moi")
    assert response.status_code == 401
    assert response.get_json() == {"error": "missing_token", "message": "Jeton d'accès manquant."}


@pytest.mark.parametrize("what", ["client", "organisation"])
def test_tokens_are_refused_once_the_client_or_its_organisation_is_disabled(
    client: FlaskClient, api_client: Client, clock: FakeClock, app: Flask, what: str
) -> None:
    token = get_token(client, api_client, clock)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        row = session.scalar(select(ApiClient).where(ApiClient.client_id == api_client.client_id))
        assert row is not None
        if what == "client":
            row.active = False
        else:
            row.organisation.active = False
        session.commit()
    response = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert request_token(client, api_client.assertion(clock)).status_code == 401


def test_the_token_endpoint_needs_no_csrf_but_pages_do(
    client: FlaskClient, api_client: Client, clock: FakeClock
) -> None:
    # Bearer-only API: no cookie is read, so CSRF does not apply; a page POST without token fails.
    assert request_token(client, api_client.assertion(clock)).status_code == 200
    assert client.post("/connexion", data={}).status_code == 400
