"""Envelope v1: sealing, opening, and every way a form can be forged or damaged.

The committed vectors (``tests/fixtures/envelope/v1.json``, docs/envelope.md) are the reference
both implementations must pass; the other tests drive the Python implementation directly.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OKPKey

from exchange.encoding import b64d, b64e
from exchange.envelope import (
    MAX_ENVELOPE_BYTES,
    CharterRef,
    ViewPlan,
    open_form,
    parse,
    plan_views,
    seal,
    verify,
)
from exchange.errors import ExchangeError, MalformedError, VerificationError
from exchange.hpke import Suite
from exchange.keys import DeviceKey, DeviceSecrets

VECTORS = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "envelope" / "v1.json").read_text(encoding="utf-8")
)
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CHARTER = CharterRef("charte-type-clspd", 2, "sha256:" + "a" * 64)


def _device(name: str) -> DeviceSecrets:
    return DeviceSecrets.from_private_record(VECTORS["devices"][name]["private"])


def _seal(sender: DeviceSecrets, plans: list[ViewPlan], **overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "secrets": sender,
        "user": "u-1",
        "org": "o-1",
        "case": "C-7K3Q-X9M2",
        "charter": CHARTER,
        "consent": "k-1",
        "purpose": "suivi_parcours",
        "directory": "checkpoint",
        "views": plans,
        "now": NOW,
    }
    arguments.update(overrides)
    return seal(**arguments).to_bytes()


# -- the vectors -----------------------------------------------------------------------------


def test_vector_devices_have_the_published_ids_and_numbers() -> None:
    for name, device in VECTORS["devices"].items():
        secrets = _device(name)
        assert secrets.public.record() == device["public"]
        assert secrets.public.key_id == device["key_id"]
        assert secrets.public.fingerprint == device["fingerprint"]
        assert DeviceKey.from_record(device["public"]) == secrets.public


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_open_for_their_recipients_only(vector: dict[str, Any]) -> None:
    data = vector["envelope"].encode()
    sender = _device(VECTORS["sender"]).public
    for name, expected in vector["opens"].items():
        opened = open_form(data, secrets=_device(name), sender_key=sender)
        assert (opened.view, opened.values) == (expected["view"], expected["values"])
        files = [
            {"field": f.field, "name": f.name, "type": f.type,
             "sha256": hashlib.sha256(f.data).hexdigest()}
            for f in opened.files.values()
        ]  # fmt: skip
        assert files == expected.get("files", [])
    for name, code in vector["refused"].items():
        with pytest.raises(VerificationError) as refused:
            open_form(data, secrets=_device(name), sender_key=sender)
        assert refused.value.code == code


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused_at_their_step_with_their_code(vector: dict[str, Any]) -> None:
    data = vector["envelope"].encode()
    sender = _device(VECTORS["sender"]).public
    step = vector["step"]
    if step == "parse":
        with pytest.raises(MalformedError) as refused:
            parse(data)
    elif step == "verify":
        envelope = parse(data)  # reads fine...
        with pytest.raises(VerificationError) as refused:
            verify(envelope, sender)  # ...but the hub refuses it
    else:
        verify(parse(data), sender)  # the hub cannot tell: only the recipient can
        with pytest.raises(VerificationError) as refused:
            open_form(data, secrets=_device(vector["recipient"]), sender_key=sender)
    assert refused.value.code == vector["code"]


# -- behaviour ---------------------------------------------------------------------------------


def test_each_recipient_gets_exactly_the_fields_it_is_entitled_to() -> None:
    sender, a, b = DeviceSecrets.generate(), DeviceSecrets.generate(), DeviceSecrets.generate()
    values = {"sortie.date_prevue": "2026-12-15", "parcours.besoins": "logement"}
    plans = plan_views(
        values,
        {
            a.public: frozenset(values),
            b.public: frozenset({"sortie.date_prevue", "sante.traitement"}),  # not in the form
            DeviceSecrets.generate().public: frozenset({"sante.traitement"}),  # nothing to see
        },
    )
    assert [sorted(p.values) for p in plans] == [
        ["parcours.besoins", "sortie.date_prevue"],
        ["sortie.date_prevue"],
    ]
    data = _seal(sender, plans)
    assert open_form(data, secrets=a, sender_key=sender.public).values == values
    assert open_form(data, secrets=b, sender_key=sender.public).values == {
        "sortie.date_prevue": "2026-12-15"
    }
    assert b"logement" not in data  # nothing in clear


def test_a_form_opens_only_with_the_sender_key_the_directory_gave() -> None:
    sender, recipient, impostor = (DeviceSecrets.generate() for _ in range(3))
    data = _seal(sender, [ViewPlan({"sortie.date_prevue": "x"}, [recipient.public])])
    with pytest.raises(VerificationError) as refused:
        open_form(data, secrets=recipient, sender_key=impostor.public)
    assert refused.value.code == "sender_key_mismatch"


def test_a_hub_that_substitutes_a_recipient_key_is_caught_by_that_recipient() -> None:
    # The hub swapped Bob's key for its own in the directory: the sender sealed to the hub's
    # key, so Bob's real device cannot open (and the directory proofs catch the swap first).
    sender, bob, hub_key = (DeviceSecrets.generate() for _ in range(3))
    data = _seal(sender, [ViewPlan({"sortie.date_prevue": "x"}, [hub_key.public])])
    with pytest.raises(VerificationError) as refused:
        open_form(data, secrets=bob, sender_key=sender.public)
    assert refused.value.code == "not_a_recipient"


def test_an_oversized_envelope_is_refused_before_it_is_read() -> None:
    with pytest.raises(MalformedError) as refused:
        parse(b'{"format":"' + b"x" * MAX_ENVELOPE_BYTES + b'"}')
    assert refused.value.code == "too_large"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"null",
        b'{"format":"maillon/fiche/1"}',
        b"\xff\xfe",
        b'{"a":1,"a":2}',
        b"{" * 5000,
    ],
)
def test_garbage_is_malformed_never_a_crash(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse(data)


def test_sealing_refuses_values_that_are_not_scalars() -> None:
    sender, recipient = DeviceSecrets.generate(), DeviceSecrets.generate()
    with pytest.raises(ValueError, match="holds a"):
        _seal(sender, [ViewPlan({"parcours.besoins": {"nested": 1}}, [recipient.public])])  # type: ignore[dict-item]


def test_every_flipped_byte_is_refused() -> None:
    # One bit flipped anywhere in the signed or encrypted parts never opens to other values.
    sender, recipient = DeviceSecrets.generate(), DeviceSecrets.generate()
    data = _seal(sender, [ViewPlan({"sortie.date_prevue": "2026-12-15"}, [recipient.public])])
    outer = json.loads(data)
    header, payload, signature = outer["manifest"].split(".")
    parts = {
        "header": header,
        "payload": payload,
        "signature": signature,
        "view": outer["views"]["v1"],
    }
    for name, text in parts.items():
        raw = b64d(text, what=name)
        for position in range(0, len(raw), max(1, len(raw) // 40)):
            changed = bytearray(raw)
            changed[position] ^= 0x04
            copy = dict(parts, **{name: b64e(bytes(changed))})
            body = json.dumps(
                {
                    "format": outer["format"],
                    "manifest": f"{copy['header']}.{copy['payload']}.{copy['signature']}",
                    "views": {"v1": copy["view"]},
                }
            ).encode()
            with pytest.raises(ExchangeError):
                open_form(body, secrets=recipient, sender_key=sender.public)


def test_our_manifest_is_a_standard_jws_and_a_standard_one_reads() -> None:
    # Interoperability with an independent JOSE library (joserfc), algorithm pinned.
    sender, recipient = DeviceSecrets.generate(), DeviceSecrets.generate()
    data = _seal(sender, [ViewPlan({"sortie.date_prevue": "x"}, [recipient.public])])
    envelope = parse(data)
    jwk = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64e(sender.public.sign)})
    decoded = jws.deserialize_compact(envelope.jws, jwk, algorithms=["Ed25519"])
    assert decoded.payload == envelope.manifest_bytes
    # joserfc signs the same header and payload: our parser and verifier accept it
    private = OKPKey.import_key(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64e(sender.public.sign),
            "d": b64e(sender.signing.private_bytes_raw()),
        }
    )
    token = jws.serialize_compact(
        dict(envelope.header), envelope.manifest_bytes, private, algorithms=["Ed25519"]
    )
    outer = json.loads(data)
    outer["manifest"] = token
    rebuilt = json.dumps(outer).encode()
    assert open_form(rebuilt, secrets=recipient, sender_key=sender.public).values == {
        "sortie.date_prevue": "x"
    }


_FIELDS = st.from_regex(r"[a-z]{1,4}\.[a-z]{1,4}", fullmatch=True)
_VALUES = st.one_of(st.text(max_size=40), st.integers(-(2**53), 2**53), st.booleans(), st.none())


@settings(max_examples=25, deadline=None)
@given(
    values=st.dictionaries(_FIELDS, _VALUES, min_size=1, max_size=6),
    grants=st.lists(st.lists(st.integers(0, 5), max_size=6), min_size=1, max_size=5),
    suites=st.lists(st.sampled_from(list(Suite)), min_size=5, max_size=5),
)
def test_every_device_opens_exactly_its_grant_or_is_refused(
    values: dict[str, Any], grants: list[list[int]], suites: list[Suite]
) -> None:
    fields = sorted(values)
    sender = DeviceSecrets.generate()
    devices = [DeviceSecrets.generate(suites[i]) for i in range(len(grants))]
    entitled = {
        device.public: frozenset(fields[i] for i in grant if i < len(fields))
        for device, grant in zip(devices, grants, strict=True)
    }
    plans = plan_views(values, entitled)
    if not plans:
        return
    data = _seal(sender, plans)
    for device in devices:
        granted = entitled[device.public]
        if granted:
            opened = open_form(data, secrets=device, sender_key=sender.public)
            assert opened.values == {f: values[f] for f in granted}
        else:
            with pytest.raises(VerificationError):
                open_form(data, secrets=device, sender_key=sender.public)
