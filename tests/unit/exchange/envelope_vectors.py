"""Build the envelope v1 test vectors (``tests/fixtures/envelope/v1.json``).

Run ``python -m tests.unit.exchange.envelope_vectors`` to write them anew (the keys and the
random parts change each time; the committed file is the reference both implementations must
pass). Valid vectors say which device opens which view with which values, and which device is
refused; invalid vectors are named after their defect and give the stable error code and the
step that must refuse them (``parse``: anyone reading it, the hub first; ``verify``: the hub and
every recipient; ``open``: the named recipient).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.encoding import b64d, b64e
from exchange.envelope import Attachment, CharterRef, Envelope, ViewPlan, seal
from exchange.hpke import Suite
from exchange.keys import DeviceSecrets

OUT = Path(__file__).parents[2] / "fixtures" / "envelope" / "v1.json"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
CHARTER = CharterRef("charte-type-clspd", 2, "sha256:" + "3" * 64)
# A checkpoint note as the key directory signs them (the directory is checked elsewhere).
DIRECTORY = (
    "maillon.example.fr/cles\n42\nq2Lk1zZKMGiNO6Rn0Il7ajaaQ1Lqx9KZzvl2ShXwDk8=\n\n"
    "\u2014 maillon.example.fr/cles AAAAAH7lZ4cS0xZ5tBlR0e2lS9l+3hZ2K9yF1k3wZq0JhXx8mX3i0w==\n"
)


def _devices() -> dict[str, DeviceSecrets]:
    return {
        "sender": DeviceSecrets.generate(),
        "alice": DeviceSecrets.generate(Suite.MLKEM768_X25519),
        "bob": DeviceSecrets.generate(),
        "carol": DeviceSecrets.generate(),
        "mallory": DeviceSecrets.generate(),
    }


def _envelope(
    devices: dict[str, DeviceSecrets], plans: list[ViewPlan], files: list[Attachment] | None = None
) -> Envelope:
    return seal(
        secrets=devices["sender"],
        user="u-3f2a9c",
        org="o-spip-demoville",
        case="C-7K3Q-X9M2",
        charter=CHARTER,
        consent="k-18",
        purpose="suivi_parcours",
        directory=DIRECTORY,
        views=plans,
        now=NOW,
        files=files or [],
    )


def _split(envelope: Envelope) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    outer = json.loads(envelope.to_bytes())
    header_b64, payload_b64, _sig = outer["manifest"].split(".")
    return (
        outer,
        json.loads(b64d(header_b64, what="header")),
        json.loads(b64d(payload_b64, what="manifest")),
    )


def _resign(
    envelope: Envelope,
    secrets: DeviceSecrets,
    change: Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None],
) -> bytes:
    """The envelope with its parts changed by ``change`` then signed again by ``secrets``: a
    sender (or a rigged client) producing a well-signed but wrong form."""
    outer, header, manifest = _split(envelope)
    change(outer, header, manifest)
    signing_input = (
        b64e(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64e(json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode())
    )
    outer["manifest"] = signing_input + "." + b64e(secrets.sign(signing_input.encode()))
    return json.dumps(outer, separators=(",", ":")).encode()


def _edit(envelope: Envelope, change: Callable[[dict[str, Any]], None]) -> bytes:
    outer = json.loads(envelope.to_bytes())
    change(outer)
    return json.dumps(outer, separators=(",", ":")).encode()


def _flip(text: str, position: int) -> str:
    """``text`` (base64url) with one bit of its decoded bytes flipped."""
    data = bytearray(b64d(text, what="x"))
    data[position] ^= 0x01
    return b64e(bytes(data))


def build() -> dict[str, Any]:
    """The vectors, with fresh keys."""
    devices = _devices()
    values = {
        "parcours.besoins": "Hébergement d'urgence à trouver avant la sortie ; suivi santé.",
        "parcours.referent": "u-7c1e55",
        "sortie.date_prevue": "2026-12-15",
    }
    main = _envelope(
        devices,
        [
            ViewPlan(values, [devices["alice"].public]),
            ViewPlan(
                {"sortie.date_prevue": "2026-12-15"},
                [devices["bob"].public, devices["carol"].public],
            ),
        ],
    )
    unicode_values: dict[str, str | int | bool | None] = {
        "contact.nom_usage": "Zoë Ŧhé « Ø » 🌱",
        "parcours.vide": "",
        "parcours.nombre": 3,
        "parcours.accord": True,
        "parcours.inconnu": None,
    }
    scalars = _envelope(devices, [ViewPlan(unicode_values, [devices["bob"].public])])
    # Attachments follow their field: the report goes with the needs (alice's view only), the
    # summons with the release date (every view).
    report = Attachment(
        "parcours.besoins", "bilan « santé » 🌱.pdf", "application/pdf",
        b"%PDF-1.4\n% Maillon test vector\n" + bytes(range(256)),
    )  # fmt: skip
    summons = Attachment(
        "sortie.date_prevue", "convocation.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64)
    )
    with_files = _envelope(
        devices,
        [
            ViewPlan(values, [devices["alice"].public]),
            ViewPlan(
                {"sortie.date_prevue": "2026-12-15"},
                [devices["bob"].public, devices["carol"].public],
            ),
        ],
        [report, summons],
    )

    def described(*files: Attachment) -> list[dict[str, str]]:
        return [
            {"field": f.field, "name": f.name, "type": f.type,
             "sha256": hashlib.sha256(f.data).hexdigest()}
            for f in files
        ]  # fmt: skip

    def flip_file(o: dict[str, Any]) -> None:
        o["files"]["p2"] = _flip(o["files"]["p2"], 20)

    def drop_file(o: dict[str, Any]) -> None:
        del o["files"]["p1"]

    def move_file(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        m["files"][0]["field"] = "sortie.date_prevue"

    sender = devices["sender"]
    alice_view = dict(sorted(values.items()))
    date_view = {"sortie.date_prevue": "2026-12-15"}

    def swap_sealed_key(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        bob, carol = m["views"][1]["recipients"]
        carol["key"] = bob["key"]

    def list_other_fields(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        m["views"][1]["fields"] = ["parcours.referent"]

    def duplicate_recipient(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        m["views"][0]["recipients"].append(m["views"][1]["recipients"][0])

    def kid_not_sender(_o: dict[str, Any], h: dict[str, Any], _m: dict[str, Any]) -> None:
        h["kid"] = devices["mallory"].public.key_id

    def unknown_member(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        m["priorite"] = "haute"

    def truncated_sealed_key(_o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        key = m["views"][0]["recipients"][0]["key"]
        m["views"][0]["recipients"][0]["key"] = b64e(b64d(key, what="k")[:-1])

    def views_out_of_order(o: dict[str, Any], _h: dict[str, Any], m: dict[str, Any]) -> None:
        m["views"][0]["id"], m["views"][1]["id"] = "v2", "v1"
        o["views"] = {"v1": o["views"]["v2"], "v2": o["views"]["v1"]}

    def alg(name: str, signature: str) -> Callable[[dict[str, Any]], None]:
        def change(o: dict[str, Any]) -> None:
            header, payload, _ = o["manifest"].split(".")
            head = json.loads(b64d(header, what="h"))
            head["alg"] = name
            o["manifest"] = (
                b64e(json.dumps(head, separators=(",", ":")).encode())
                + "."
                + payload
                + "."
                + signature
            )

        return change

    def charter_version(o: dict[str, Any]) -> None:
        header, payload, signature = o["manifest"].split(".")
        manifest = json.loads(b64d(payload, what="m"))
        manifest["charter"]["version"] = 1
        changed = b64e(json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode())
        o["manifest"] = f"{header}.{changed}.{signature}"

    def flip_signature(o: dict[str, Any]) -> None:
        header, payload, signature = o["manifest"].split(".")
        o["manifest"] = f"{header}.{payload}.{_flip(signature, 10)}"

    def flip_view(o: dict[str, Any]) -> None:
        o["views"]["v2"] = _flip(o["views"]["v2"], 20)

    def drop_view(o: dict[str, Any]) -> None:
        del o["views"]["v2"]

    def bad_base64(o: dict[str, Any]) -> None:
        o["views"]["v1"] = o["views"]["v1"][:-2] + "+/"

    main_bytes = main.to_bytes()
    invalid = [
        ("manifest_alg_none", _edit(main, alg("none", "")), "alg_not_allowed", "parse", None),
        ("manifest_alg_hs256", _edit(main, alg("HS256", "c2lnbmF0dXJl")), "alg_not_allowed", "parse", None),
        ("manifest_signature_flipped", _edit(main, flip_signature), "signature_invalid", "verify", None),
        ("manifest_charter_version_changed", _edit(main, charter_version), "signature_invalid", "verify", None),
        ("view_byte_flipped", _edit(main, flip_view), "digest_mismatch", "verify", None),
        ("view_missing", _edit(main, drop_view), "views_mismatch", "parse", None),
        ("view_invalid_base64", _edit(main, bad_base64), "invalid_base64", "parse", None),
        ("envelope_truncated", main_bytes[: len(main_bytes) // 2], "invalid_json", "parse", None),
        ("manifest_kid_not_sender", _resign(main, sender, kid_not_sender), "sender_key_mismatch", "verify", None),
        ("manifest_unknown_member", _resign(main, sender, unknown_member), "unknown_member", "parse", None),
        ("manifest_duplicate_recipient", _resign(main, sender, duplicate_recipient), "duplicate_recipient", "parse", None),
        ("manifest_sealed_key_truncated", _resign(main, sender, truncated_sealed_key), "invalid_member", "parse", None),
        ("manifest_views_out_of_order", _resign(main, sender, views_out_of_order), "invalid_member", "parse", None),
        ("sealed_key_of_another_recipient", _resign(main, sender, swap_sealed_key), "seal_invalid", "open", "carol"),
        ("fields_not_those_listed", _resign(main, sender, list_other_fields), "fields_mismatch", "open", "bob"),
        ("attachment_byte_flipped", _edit(with_files, flip_file), "digest_mismatch", "verify", None),
        ("attachment_missing", _edit(with_files, drop_file), "views_mismatch", "parse", None),
        ("attachment_moved_to_another_field", _resign(with_files, sender, move_file), "fields_mismatch", "open", "bob"),
    ]  # fmt: skip
    return {
        "format": "maillon/fiche/1",
        "about": (
            "Envelope v1 test vectors (docs/envelope.md). Private keys are test keys. Valid: "
            "each named device opens its view with exactly these values (and these "
            "attachments, by SHA-256 of their bytes, when listed), the others are "
            "refused with not_a_recipient. Invalid: refused with this code at this step "
            "(parse, verify, or open by the named device)."
        ),
        "devices": {
            name: {
                "private": secrets.to_private_record(),
                "public": secrets.public.record(),
                "key_id": secrets.public.key_id,
                "fingerprint": secrets.public.fingerprint,
            }
            for name, secrets in devices.items()
        },
        "sender": "sender",
        "valid": [
            {
                "name": "two_views_three_recipients",
                "envelope": main_bytes.decode(),
                "opens": {
                    "alice": {"view": "v1", "values": alice_view},
                    "bob": {"view": "v2", "values": date_view},
                    "carol": {"view": "v2", "values": date_view},
                },
                "refused": {"mallory": "not_a_recipient"},
            },
            {
                "name": "scalar_values_in_every_script",
                "envelope": scalars.to_bytes().decode(),
                "opens": {"bob": {"view": "v1", "values": dict(sorted(unicode_values.items()))}},
                "refused": {"alice": "not_a_recipient", "mallory": "not_a_recipient"},
            },
            {
                "name": "attachments_follow_their_field",
                "envelope": with_files.to_bytes().decode(),
                "opens": {
                    "alice": {
                        "view": "v1",
                        "values": alice_view,
                        "files": described(report, summons),
                    },
                    "bob": {"view": "v2", "values": date_view, "files": described(summons)},
                    "carol": {"view": "v2", "values": date_view, "files": described(summons)},
                },
                "refused": {"mallory": "not_a_recipient"},
            },
        ],
        "invalid": [
            {"name": name, "envelope": data.decode("utf-8", "replace"), "code": code, "step": step}
            | ({"recipient": who} if who else {})
            for name, data, code, step, who in invalid
        ],
    }


def main() -> int:
    """Write the vectors file."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
