"""API authentication (RFC 7523 private_key_jwt) and the classic JWT attacks.

Clients register an Ed25519, P-256 or RSA (3072+ bits) key; the key decides the algorithm.
Assertions a partner's software would send are made here by PyJWT, a JOSE library independent of
the hub's (joserfc); the attacks are crafted by hand so that every header and byte is ours.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import select

from hub.api_auth import ASSERTION_TYPE, ClientKeyError, parse_public_jwk
from hub.models import ApiClient, Organisation
from tests.conftest import FakeClock

TOKEN_URL = "http://localhost/api/v1/token"

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# The accepted key types, and the algorithms each may sign with (bound to the key).
KEY_TYPES = {"Ed25519": ("Ed25519", "EdDSA"), "P-256": ("ES256",), "RSA-3072": ("PS256",)}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@functools.cache
def private_key(kind: str, which: int = 0) -> PrivateKey:
    """A private key of ``kind``; ``which`` tells the client's (0) from an attacker's (1).

    Made once per session: generating RSA keys at each of ~200 tests would take a minute.
    """
    if kind == "Ed25519":
        return Ed25519PrivateKey.generate()
    if kind == "P-256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(kind.removeprefix("RSA-"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def kind_of(alg: str) -> str:
    """The key type that signs with ``alg`` (for an attacker's key of the right type)."""
    return next(kind for kind, algs in KEY_TYPES.items() if alg in algs)


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def sign_as(key: PrivateKey, alg: str, message: bytes) -> bytes:
    """A JWS signature by ``key`` in the scheme ``alg`` names, when the key can make one (RS256 or
    PS384 with an RSA key, ES384 with a P-256 key…): a genuine signature under a refused
    algorithm. Otherwise the key's own scheme."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    digest = _HASHES.get(alg[2:], hashes.SHA256)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not alg.startswith("ES"):
            digest = hashes.SHA256
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(digest())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg.startswith("RS"):
        return key.sign(message, padding.PKCS1v15(), digest())
    if not alg.startswith("PS"):
        digest = hashes.SHA256
    pss = padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest.digest_size)
    return key.sign(message, pss, digest())


def foreign_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public JWK as PyJWT writes it (what a partner would hand over)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(public, as_dict=True))


def rfc7638(jwk: dict[str, Any]) -> str:
    """The JWK thumbprint, computed by hand (RFC 7638 §3): required members, sorted, no spaces."""
    required = {
        "OKP": ("crv", "kty", "x"),
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
    }
    canonical = json.dumps(
        {m: jwk[m] for m in required[jwk["kty"]]}, separators=(",", ":"), sort_keys=True
    )
    return b64(hashlib.sha256(canonical.encode()).digest())


@dataclass
class Client:
    client_id: str
    key: PrivateKey
    kid: str

    @property
    def alg(self) -> str:
        """The algorithm this client's software signs with by default."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return "ES256"
        if isinstance(self.key, rsa.RSAPrivateKey):
            return "PS256"
        return "Ed25519"

    def sign(self, message: bytes) -> bytes:
        return sign_as(self.key, self.alg, message)

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
            header or {"alg": self.alg, "typ": "JWT", "kid": self.kid},
            self.claims(now, **changes),
            self.sign,
        )


def register_client(app: Flask, key: PrivateKey, org_name: str = "SPIP système") -> Client:
    """Register ``key``'s public JWK, as PyJWT writes it, through the hub's registration parser."""
    registered = parse_public_jwk(json.dumps(foreign_jwk(key)))
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = Organisation(name=org_name, kind="spip")
        client = ApiClient(
            organisation=org,
            name="Logiciel APPI",
            public_jwk=registered.to_json(),
            key_id=registered.key_id,
        )
        session.add(client)
        session.commit()
        return Client(client.client_id, key, registered.key_id)


@pytest.fixture
def api_client(app: Flask) -> Client:
    return register_client(app, Ed25519PrivateKey.generate())


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


# -- what partners' software sends: made by an independent JOSE library ---------------------


def pyjwt_assertion(client: Client, clock: FakeClock, alg: str, *, with_kid: bool = True) -> str:
    """The assertion as PyJWT signs it. PyJWT knows Ed25519 only by its older name ``EdDSA``:
    the RFC 9864 name is registered as the same scheme, as newer libraries do."""
    signer = pyjwt.PyJWS()
    signer.register_algorithm("Ed25519", OKPAlgorithm())
    payload = json.dumps(client.claims(clock)).encode()
    headers = {"kid": client.kid} if with_kid else None
    return signer.encode(payload, client.key, algorithm=alg, headers=headers)


ACCEPTED = [
    ("Ed25519", "Ed25519"),
    ("Ed25519", "EdDSA"),
    ("P-256", "ES256"),
    ("RSA-3072", "PS256"),
    ("RSA-4096", "PS256"),
]


@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
@pytest.mark.parametrize(("kind", "alg"), ACCEPTED, ids=[f"{k}-{a}" for k, a in ACCEPTED])
def test_assertions_from_an_independent_jose_library_are_accepted(
    app: Flask, client: FlaskClient, clock: FakeClock, kind: str, alg: str, with_kid: bool
) -> None:
    # Given a client registered with the public JWK PyJWT exports for its key
    api = register_client(app, private_key(kind))
    assert api.kid == rfc7638(foreign_jwk(api.key))
    # When its software signs an assertion with PyJWT
    assertion = pyjwt_assertion(api, clock, alg, with_kid=with_kid)
    header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))
    assert header["alg"] == alg
    # Then the hub gives it an access token that opens the API
    response = request_token(client, assertion)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    me = client.get("/api/v1/moi", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.get_json()["client_id"] == api.client_id


def test_an_ed25519_key_is_not_tied_to_one_name(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    # The same client may sign with either name: one scheme, one key, no per-client choice.
    api = register_client(app, private_key("Ed25519"))
    for alg in ("EdDSA", "Ed25519", "EdDSA"):
        assert request_token(client, pyjwt_assertion(api, clock, alg)).status_code == 200


# -- the attack suite, for each key type ---------------------------------------------------


def _public_bytes(key: PrivateKey, encoding: str) -> bytes:
    """The client's public key as an attacker could find it, to use as an HMAC secret."""
    public = key.public_key()
    if encoding == "jwk":
        return json.dumps(foreign_jwk(key)).encode()
    if encoding == "pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if encoding == "der":
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if isinstance(public, rsa.RSAPublicKey):
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _hs(alg: str, encoding: str) -> Callable[[Client, FakeClock], str]:
    bits = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return lambda c, t: compact(
        {"alg": alg, "kid": c.kid},
        c.claims(t),
        lambda m: hmac.new(_public_bytes(c.key, encoding), m, bits).digest(),
    )


def _attacker(c: Client) -> PrivateKey:
    kind = {"ES256": "P-256", "PS256": "RSA-3072"}.get(c.alg, "Ed25519")
    return private_key(kind, which=1)


def _injected(member: str) -> Callable[[Client, FakeClock], str]:
    def forge(c: Client, t: FakeClock) -> str:
        attacker = _attacker(c)
        value: Any = foreign_jwk(attacker) if member == "jwk" else "https://evil.example/key"
        return compact(
            {"alg": c.alg, member: value}, c.claims(t), lambda m: sign_as(attacker, c.alg, m)
        )

    return forge


def _tamper(token: str, c: Client, t: FakeClock) -> str:
    header, _payload, signature = token.split(".")
    forged = b64(json.dumps(c.claims(t, sub=c.client_id, extra="admin")).encode())
    return f"{header}.{forged}.{signature}"


def _der_signature(c: Client, t: FakeClock) -> str:
    # Java's JCA signs ECDSA in DER; JWS wants the fixed-size R || S form (RFC 7518 §3.4).
    key = c.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return compact(
        {"alg": "ES256", "kid": c.kid},
        c.claims(t),
        lambda m: key.sign(m, ec.ECDSA(hashes.SHA256())),
    )


BAD_ASSERTIONS: dict[str, Callable[[Client, FakeClock], str]] = {
    "alg none": lambda c, t: compact({"alg": "none"}, c.claims(t), lambda _: b""),
    "alg none, no signature": lambda c, t: (
        compact({"alg": "none"}, c.claims(t), lambda _: b"")[:-1] + ""
    ),
    "alg None": lambda c, t: compact({"alg": "None"}, c.claims(t), lambda _: b""),
    "HS256 with public key PEM": _hs("HS256", "pem"),
    "HS256 with public key DER": _hs("HS256", "der"),
    "HS256 with raw public key": _hs("HS256", "raw"),
    "HS256 with public JWK": _hs("HS256", "jwk"),
    "HS512 with public key PEM": _hs("HS512", "pem"),
    "wrong audience": lambda c, t: c.assertion(t, aud="http://localhost/other"),
    "wrong issuer": lambda c, t: c.assertion(t, iss="someone-else"),
    "subject differs from issuer": lambda c, t: c.assertion(t, sub="someone-else"),
    "expired": lambda c, t: c.assertion(t, exp=int(t().timestamp()) - 60),
    "no expiry": lambda c, t: c.assertion(t, exp=None),
    "expiry too far": lambda c, t: c.assertion(t, exp=int(t().timestamp()) + 3600),
    "no jti": lambda c, t: c.assertion(t, jti=None),
    "kid of another key": lambda c, t: c.assertion(t, header={"alg": c.alg, "kid": "another"}),
    "kid naming the attacker's key": lambda c, t: compact(
        {"alg": c.alg, "kid": rfc7638(foreign_jwk(_attacker(c)))},
        c.claims(t),
        lambda m: sign_as(_attacker(c), c.alg, m),
    ),
    "signature of another key": lambda c, t: compact(
        {"alg": c.alg}, c.claims(t), lambda m: sign_as(_attacker(c), c.alg, m)
    ),
    "tampered payload": lambda c, t: _tamper(c.assertion(t), c, t),
    "injected jwk header": _injected("jwk"),
    "injected jku header": _injected("jku"),
    "injected x5u header": _injected("x5u"),
    "garbage": lambda c, t: "not.a.jwt",
    "too long": lambda c, t: "a" * 9000 + ".b.c",
}

# Algorithms no client key accepts: the client's own key signs for real where it can (RS256 or
# PS384 with the RSA key, ES384 with the P-256 key), so only the binding refuses them.
REFUSED_ALGORITHMS = ("RS256", "RS512", "PS384", "PS512", "ES384", "ES512", "ES256K", "Ed448")


def _genuine_signature_as(alg: str) -> Callable[[Client, FakeClock], str]:
    return lambda c, t: compact(
        {"alg": alg, "kid": c.kid}, c.claims(t), lambda m: sign_as(c.key, alg, m)
    )


def _other_key_type(alg: str) -> Callable[[Client, FakeClock], str]:
    # An algorithm accepted for another key type, signed by a real key of that type: the
    # registered key, not the token, decides.
    def forge(c: Client, t: FakeClock) -> str:
        attacker = private_key(kind_of(alg), which=1)
        return compact({"alg": alg, "kid": c.kid}, c.claims(t), lambda m: sign_as(attacker, alg, m))

    return forge


def _own_signature_named(alg: str) -> Callable[[Client, FakeClock], str]:
    # The client's own valid signature, with the header naming another key type's algorithm.
    return lambda c, t: compact(
        {"alg": alg, "kid": c.kid}, c.claims(t), lambda m: sign_as(c.key, c.alg, m)
    )


def attacks_for(kind: str) -> dict[str, Callable[[Client, FakeClock], str]]:
    """The attack suite for a client whose key is of ``kind``."""
    attacks = dict(BAD_ASSERTIONS)
    for alg in REFUSED_ALGORITHMS:
        attacks[f"genuine {alg} signature"] = _genuine_signature_as(alg)
    for other, algs in KEY_TYPES.items():
        if other != kind:
            for alg in algs:
                attacks[f"{alg} from a {other} key"] = _other_key_type(alg)
                attacks[f"own signature labelled {alg}"] = _own_signature_named(alg)
    if kind == "P-256":
        attacks["ES256 signature in DER"] = _der_signature
    return attacks


ATTACKS = [(kind, attack) for kind in KEY_TYPES for attack in sorted(attacks_for(kind))]


@pytest.mark.parametrize(("kind", "attack"), ATTACKS, ids=[f"{k}: {a}" for k, a in ATTACKS])
def test_forged_or_invalid_assertions_are_refused(
    app: Flask, client: FlaskClient, clock: FakeClock, kind: str, attack: str
) -> None:
    # Given a registered client whose own assertions are accepted
    api = register_client(app, private_key(kind))
    # When the attack is tried
    response = request_token(client, attacks_for(kind)[attack](api, clock))
    # Then nothing comes out but a stable, French refusal
    body = response.get_json()
    assert response.status_code == 401 and body == {
        "error": "invalid_client",
        "message": "Authentification du client refusée.",
    }, attack
    # and the client itself still gets in (the refusal was the attack's, not a broken setup)
    assert request_token(client, api.assertion(clock)).status_code == 200


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_an_assertion_cannot_be_replayed(
    app: Flask, client: FlaskClient, clock: FakeClock, kind: str
) -> None:
    api_client = register_client(app, private_key(kind))
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


# -- registration: the key types accepted, and the refusals ----------------------------------


def _raw_okp(key: Ed448PrivateKey | X25519PrivateKey, crv: str) -> dict[str, Any]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": crv, "x": b64(raw)}


def _private_jwk(kind: str) -> dict[str, Any]:
    jwk = foreign_jwk(private_key(kind))
    return {**jwk, "d": b64(b"\x01" * 32)}


REFUSED_JWKS: dict[str, tuple[Callable[[], str], str]] = {
    # case: (JWK text, what the French message must say)
    "not JSON": (lambda: "{kty: OKP", "n'est pas une clé JWK"),
    "a JSON list": (lambda: json.dumps([foreign_jwk(private_key("Ed25519"))]), "pas une clé JWK"),
    "private Ed25519": (lambda: json.dumps(_private_jwk("Ed25519")), "partie privée (d)"),
    "private P-256": (lambda: json.dumps(_private_jwk("P-256")), "partie privée (d)"),
    "RSA with p and q": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "p": "AQ", "q": "AQ"}),
        "partie privée (p, q)",
    ),
    "symmetric key": (lambda: json.dumps({"kty": "oct", "k": b64(b"s" * 32)}), "partie privée (k)"),
    "RSA 2048 bits": (
        lambda: json.dumps(foreign_jwk(private_key("RSA-2048"))),
        "clé RSA de 2048 bits ; il en faut de 3072 à 8192",
    ),
    "P-384": (
        lambda: json.dumps(
            ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
        ),
        "type de clé non accepté (EC P-384)",
    ),
    "secp256k1": (
        lambda: json.dumps(
            ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256K1()).public_key(), as_dict=True)
        ),
        "type de clé non accepté (EC secp256k1)",
    ),
    "Ed448": (lambda: json.dumps(_raw_okp(Ed448PrivateKey.generate(), "Ed448")), "(OKP Ed448)"),
    "X25519": (lambda: json.dumps(_raw_okp(X25519PrivateKey.generate(), "X25519")), "(OKP X25519)"),
    "no kty": (lambda: json.dumps({"x": "AAAA"}), "type de clé non accepté (?)"),
    "point off the curve": (
        lambda: json.dumps(
            {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)}
        ),
        "la clé P-256 est mal formée",
    ),
    "Ed25519 key of 31 bytes": (
        lambda: json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64(b"\x01" * 31)}),
        "la clé Ed25519 est mal formée",
    ),
    "x not a string": (
        lambda: json.dumps({"kty": "OKP", "crv": "Ed25519", "x": 5}),
        "la clé Ed25519 est mal formée",
    ),
    "RSA exponent 1": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "e": "AQ"}),
        "la clé RSA est mal formée",
    ),
    "RSA key marked RS256": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "alg": "RS256"}),
        "une clé RSA n'est acceptée que pour signer en PS256",
    ),
    "Ed25519 key marked ES256": (
        lambda: json.dumps({**foreign_jwk(private_key("Ed25519")), "alg": "ES256"}),
        "que pour signer en Ed25519 / EdDSA",
    ),
    "P-256 key for encryption": (
        lambda: json.dumps({**foreign_jwk(private_key("P-256")), "use": "enc"}),
        "autre usage",
    ),
    "RSA key_ops without verify": (
        lambda: json.dumps({**foreign_jwk(private_key("RSA-3072")), "key_ops": ["encrypt"]}),
        "autre usage",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_JWKS))
def test_registration_refuses_other_keys_with_a_clear_french_message(case: str) -> None:
    text, expected = REFUSED_JWKS[case]
    with pytest.raises(ClientKeyError) as refused:
        parse_public_jwk(text())
    assert str(refused.value).startswith("Clé refusée : ") and expected in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("Ed25519", {"alg": "EdDSA", "kid": "partner-2026"}),
        ("Ed25519", {"alg": "Ed25519", "use": "sig"}),
        ("P-256", {"alg": "ES256", "use": "sig", "x5c": ["MIIB…"]}),
        ("RSA-3072", {"alg": "PS256", "key_ops": ["verify"]}),
        ("RSA-4096", {}),
    ],
)
def test_registration_keeps_only_the_members_that_define_the_key(
    kind: str, extra: dict[str, Any]
) -> None:
    jwk = {**foreign_jwk(private_key(kind)), **extra}
    registered = parse_public_jwk(json.dumps(jwk))
    stored = json.loads(registered.to_json())
    defining = {
        "OKP": {"kty", "crv", "x"},
        "EC": {"kty", "crv", "x", "y"},
        "RSA": {"kty", "n", "e"},
    }
    assert set(stored) == defining[jwk["kty"]]
    assert {m: jwk[m] for m in stored} == stored
    assert registered.key_id == rfc7638(jwk)
    assert registered.algorithms == KEY_TYPES[kind if kind in KEY_TYPES else "RSA-3072"]


def test_a_stored_key_that_breaks_the_rules_authenticates_nothing(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    # Given a 2048-bit RSA client written straight into the database (an edited row, say)
    key = private_key("RSA-2048")
    jwk = {m: foreign_jwk(key)[m] for m in ("kty", "n", "e")}
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        row = ApiClient(
            organisation=Organisation(name="SPIP ancien", kind="spip"),
            name="Ancien logiciel",
            public_jwk=json.dumps(jwk),
            key_id=rfc7638(jwk),
        )
        session.add(row)
        session.commit()
        api = Client(row.client_id, key, row.key_id)
    # When its software signs a well-formed PS256 assertion
    response = request_token(client, pyjwt_assertion(api, clock, "PS256"))
    # Then verification applies the registration's rules again: refused
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
