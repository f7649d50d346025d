"""What the load's clients send: the headers nginx would add, and for an organisation's system,
RFC 7523 client assertions signed with its Ed25519 key, exchanged for access tokens
(``docs/api.md``). Shared by the locust users and the crash test; no Flask, no hub import."""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The public host nginx serves (MAILLON_BASE_URL is https://maillon.test during the runs).
FORWARDED_HOST = "maillon.test"
BASE_URL = f"https://{FORWARDED_HOST}"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Access tokens live 300 s (MAILLON_ACCESS_TOKEN_SECONDS): renew a little before.
TOKEN_RENEW_SECONDS = 240


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(pem: str) -> Ed25519PrivateKey:
    """The client's private key from its PEM text."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("the load's API clients use Ed25519 keys")
    return key


def client_assertion(key: Ed25519PrivateKey, client_id: str, base_url: str) -> str:
    """A fresh signed assertion (unique ``jti``, two minutes of validity)."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{base_url}/api/v1/token",
        "exp": now + 120,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    signing_input = (
        f"{_b64(json.dumps({'alg': 'Ed25519', 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps(claims).encode())}"
    )
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def token_form(key: Ed25519PrivateKey, client_id: str, base_url: str) -> str:
    """The urlencoded body of ``POST /api/v1/token``."""
    return urlencode(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(key, client_id, base_url),
        }
    )


def forwarded_for(index: int) -> str:
    """A distinct client address per simulated person or system, from 198.18.0.0/15 (RFC 2544:
    benchmarking), as nginx would forward it."""
    return f"198.18.{index // 250}.{index % 250 + 1}"


def forwarded_headers(index: int) -> dict[str, str]:
    """What nginx adds in front of gunicorn for the client with address number ``index``."""
    return {
        "Host": FORWARDED_HOST,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": forwarded_for(index),
    }
