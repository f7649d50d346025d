"""The HPKE the envelope seals keys with passes the official vectors of its suites.

RFC 9180's vector for DHKEM(X25519, HKDF-SHA256)/HKDF-SHA256/AES-256-GCM and draft-ietf-hpke-pq's
for MLKEM768-X25519 (X-Wing) are reproduced by an independent reference (``hpke_reference``), and
:mod:`exchange.hpke` — ``cryptography``'s HPKE — opens what the reference seals from the vectors'
own keys and shared secrets, and the reference opens what it seals. The vectors' messages carry
an aad, which the single-shot API the envelope uses does not take (it binds context in ``info``):
the interoperability checks therefore seal the vectors' plaintexts with an empty aad.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchange.errors import MalformedError, VerificationError
from exchange.hpke import KemPrivateKey, Suite, seal
from tests.unit.exchange import hpke_reference as ref

FIXTURES = Path(__file__).parents[2] / "fixtures" / "hpke"
H = bytes.fromhex


def _vector(name: str) -> dict[str, Any]:
    (vector,) = json.loads((FIXTURES / name).read_text())
    return dict(vector)


RFC9180 = _vector("rfc9180-x25519-sha256-aes256gcm.json")
XWING = _vector("hpke-pq-mlkem768x25519-sha256-chacha20poly1305.json")


# -- suite x25519 against RFC 9180 --------------------------------------------------------------


def test_the_reference_reproduces_every_value_of_the_rfc9180_vector() -> None:
    v = RFC9180
    assert (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) == (0, 0x20, 1, 2)
    secret, public = ref.dhkem_derive_key_pair(H(v["ikmR"]))
    assert (secret, public) == (H(v["skRm"]), H(v["pkRm"]))
    ephemeral, _ = ref.dhkem_derive_key_pair(H(v["ikmE"]))
    assert ephemeral == H(v["skEm"])
    shared, enc = ref.dhkem_encap(public, ephemeral)
    assert (shared, enc) == (H(v["shared_secret"]), H(v["enc"]))
    assert ref.dhkem_decap(enc, secret) == shared
    context = ref.key_schedule(ref.KEM_X25519, ref.AEAD_AES_256_GCM, shared, H(v["info"]))
    for name in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        assert getattr(context, name) == H(v[name]), name
    for seq, message in enumerate(v["encryptions"]):
        assert context.nonce(seq) == H(message["nonce"])
        assert context.seal(seq, H(message["aad"]), H(message["pt"])) == H(message["ct"])
    sid = ref.suite_id(ref.KEM_X25519, ref.AEAD_AES_256_GCM)
    for export in v["exports"]:
        assert context.export(sid, H(export["exporter_context"]), export["L"]) == H(
            export["exported_value"]
        )


def test_our_hpke_opens_with_the_rfc9180_key_and_shared_secret() -> None:
    # The vector's enc and recipient key, the vector's key schedule, the first plaintext
    # sealed without aad: our HPKE must derive the same shared secret and key from them.
    v = RFC9180
    context = ref.key_schedule(
        ref.KEM_X25519, ref.AEAD_AES_256_GCM, H(v["shared_secret"]), H(v["info"])
    )
    plaintext = H(v["encryptions"][0]["pt"])
    sealed = H(v["enc"]) + context.seal(0, b"", plaintext)
    recipient = KemPrivateKey(Suite.X25519, H(v["skRm"]))
    assert recipient.public_bytes() == H(v["pkRm"])
    assert recipient.open(sealed, H(v["info"])) == plaintext


def test_the_reference_opens_what_our_hpke_seals() -> None:
    recipient = KemPrivateKey(Suite.X25519, H(RFC9180["skRm"]))
    sealed = seal(Suite.X25519, recipient.public_bytes(), b"cle de vue " * 3, b"contexte")
    assert ref.open_single_shot(ref.KEM_X25519, recipient.secret, b"contexte", sealed) == (
        b"cle de vue " * 3
    )


# -- suite mlkem768-x25519 against draft-ietf-hpke-pq -------------------------------------------


def test_an_xwing_private_key_is_the_vector_seed() -> None:
    v = XWING
    assert (v["mode"], v["kem_id"], v["kdf_id"]) == (0, 0x647A, 1)
    recipient = KemPrivateKey(Suite.MLKEM768_X25519, H(v["skRm"]))
    assert recipient.public_bytes() == H(v["pkRm"]) == ref.xwing_public(H(v["skRm"]))
    assert ref.xwing_decap(H(v["enc"]), H(v["skRm"])) == H(v["shared_secret"])


def test_the_reference_reproduces_the_xwing_vector_key_schedule() -> None:
    # The published vector uses ChaCha20-Poly1305; the KEM values do not depend on the AEAD.
    v = XWING
    context = ref.key_schedule(
        ref.KEM_XWING, ref.AEAD_CHACHA20_POLY1305, H(v["shared_secret"]), H(v["info"])
    )
    assert (context.key, context.base_nonce, context.exporter_secret) == (
        H(v["key"]),
        H(v["base_nonce"]),
        H(v["exporter_secret"]),
    )
    for seq, message in enumerate(v["encryptions"]):
        assert context.open(seq, H(message["aad"]), H(message["ct"])) == H(message["pt"])


def test_our_hpke_opens_with_the_xwing_vector_key_and_shared_secret() -> None:
    v = XWING
    context = ref.key_schedule(
        ref.KEM_XWING, ref.AEAD_AES_256_GCM, H(v["shared_secret"]), H(v["info"])
    )
    plaintext = H(v["encryptions"][0]["pt"])
    sealed = H(v["enc"]) + context.seal(0, b"", plaintext)
    recipient = KemPrivateKey(Suite.MLKEM768_X25519, H(v["skRm"]))
    assert recipient.open(sealed, H(v["info"])) == plaintext


def test_the_reference_opens_what_our_xwing_hpke_seals() -> None:
    recipient = KemPrivateKey.generate(Suite.MLKEM768_X25519)
    sealed = seal(Suite.MLKEM768_X25519, recipient.public_bytes(), b"k" * 32, b"contexte")
    assert len(sealed) == 1120 + 32 + 16
    assert ref.open_single_shot(ref.KEM_XWING, recipient.secret, b"contexte", sealed) == b"k" * 32


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite))
def test_a_seal_opens_only_with_its_key_and_its_info(suite: Suite) -> None:
    recipient = KemPrivateKey.generate(suite)
    other = KemPrivateKey.generate(suite)
    sealed = seal(suite, recipient.public_bytes(), b"secret", b"form/view/device")
    assert recipient.open(sealed, b"form/view/device") == b"secret"
    for key, info, blob in [
        (other, b"form/view/device", sealed),
        (recipient, b"form/view/other", sealed),
        (recipient, b"form/view/device", sealed[:-1] + bytes([sealed[-1] ^ 1])),
        (recipient, b"form/view/device", sealed[:10]),
    ]:
        with pytest.raises(VerificationError) as refused:
            key.open(blob, info)
        assert refused.value.code == "seal_invalid"


def test_a_public_key_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(MalformedError) as refused:
        seal(Suite.MLKEM768_X25519, b"\x01" * 32, b"x", b"")
    assert refused.value.code == "invalid_key"
