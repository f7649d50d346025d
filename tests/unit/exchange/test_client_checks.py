"""What the client refuses on its own, whatever the hub says: weak keys, oversized numbers, a
form passed off as another partner's, a key it never registered, an unsafe hub address, a
redirect carrying its token elsewhere."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle
from audit.checkpoint import Checkpoint, NoteSigner
from exchange.client import (
    HttpFetcher,
    check_own_keys,
    open_received,
    sender_key,
)
from exchange.directory import Directory, key_added
from exchange.encoding import b64e, parse_json_object
from exchange.envelope import CharterRef, ViewPlan, parse, seal
from exchange.errors import MalformedError, VerificationError
from exchange.hpke import Suite
from exchange.keys import DeviceKey, DeviceSecrets

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
P = 2**255 - 19
SIGNER = NoteSigner("maillon.test/cles", Ed25519PrivateKey.generate())


# -- weak keys -------------------------------------------------------------------------------

LOW_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,  # non-canonical 0
    P + 1,  # non-canonical 1
]


@pytest.mark.parametrize("u", LOW_ORDER_U)
@pytest.mark.parametrize("suite", list(Suite))
def test_a_low_order_hpke_key_is_refused(u: int, suite: Suite) -> None:
    # Every shared secret with it is zero: sealing to it would fail for every sender
    good = DeviceSecrets.generate(suite).public
    kem = good.kem[:-32] + u.to_bytes(32, "little")
    with pytest.raises(MalformedError) as refused:
        DeviceKey(good.sign, suite, kem)
    assert refused.value.code == "invalid_key"


Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022


@pytest.mark.parametrize("y", [1, P - 1, Y8, P - Y8, P, P + 1])
@pytest.mark.parametrize("sign", [0, 1])
def test_a_small_order_or_non_canonical_signing_key_is_refused(y: int, sign: int) -> None:
    # With such a key, (R = identity, S = 0) "signs" any manifest
    encoded = bytearray(y.to_bytes(32, "little"))
    encoded[31] |= sign << 7
    good = DeviceSecrets.generate().public
    with pytest.raises(MalformedError):
        DeviceKey(bytes(encoded), good.suite, good.kem)


def test_genuine_keys_still_load() -> None:
    for _ in range(50):
        key = DeviceSecrets.generate().public
        assert DeviceKey(key.sign, key.suite, key.kem).key_id == key.key_id


def test_a_number_too_long_to_read_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedError) as refused:
        parse_json_object(b'{"v": ' + b"9" * 5000 + b"}", what="x", max_bytes=10_000)
    assert refused.value.code == "invalid_json"


# -- who signed ------------------------------------------------------------------------------


def _directory(*entries: bytes) -> tuple[Directory, str]:
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])
    note = str(SIGNER.sign_checkpoint(Checkpoint(SIGNER.name, len(entries), root, NOW)))
    return Directory.empty(SIGNER.verifier().vkey()).update(list(entries), note), note


def _form(sender: DeviceSecrets, user: str, org: str, to: DeviceSecrets, note: str) -> bytes:
    return seal(
        secrets=sender,
        user=user,
        org=org,
        case="C-7K3Q-X9M2",
        charter=CharterRef("charte", 1, "sha256:" + "0" * 64),
        consent=None,
        purpose="orientation",
        directory=note,
        views=[ViewPlan({"contact.telephone": "06"}, [to.public])],
        now=NOW,
    ).to_bytes()


def test_a_form_signed_by_one_partner_cannot_pass_for_anothers() -> None:
    spip, rogue = DeviceSecrets.generate(), DeviceSecrets.generate()
    mission_locale = DeviceSecrets.generate()
    replica, note = _directory(
        key_added(spip.public, owner="client:spip", org="o-spip", now=NOW),
        key_added(rogue.public, owner="client:rogue", org="o-rogue", now=NOW),
        key_added(mission_locale.public, owner="client:ml", org="o-ml", now=NOW),
    )
    # The honest form opens, and says who sent it
    honest = _form(spip, "client:spip", "o-spip", mission_locale, note)
    opened = open_received(honest, secrets=mission_locale, replica=replica)
    assert opened.manifest.sender.user == "client:spip"
    # A form signed by the rogue's key but naming the SPIP (user, or organisation) is refused
    for user, org in (("client:spip", "o-spip"), ("client:rogue", "o-spip")):
        forged = _form(rogue, user, org, mission_locale, note)
        with pytest.raises(VerificationError) as refused:
            open_received(forged, secrets=mission_locale, replica=replica)
        assert refused.value.code == "sender_mismatch"


def test_a_signing_key_the_sender_had_not_seen_is_refused() -> None:
    # The sender's checkpoint (size 1) predates its own key (entry 1): a hub-made form
    spip, mission_locale = DeviceSecrets.generate(), DeviceSecrets.generate()
    first = key_added(mission_locale.public, owner="client:ml", org="o-ml", now=NOW)
    _small, early_note = _directory(first)
    replica, _note = _directory(
        first, key_added(spip.public, owner="client:spip", org="o-spip", now=NOW)
    )
    manifest = parse(_form(spip, "client:spip", "o-spip", mission_locale, early_note)).manifest
    with pytest.raises(VerificationError) as refused:
        sender_key(replica, manifest)
    assert refused.value.code == "sender_key_unseen"


def test_a_key_this_system_never_registered_stops_it() -> None:
    mine, injected = DeviceSecrets.generate().public, DeviceSecrets.generate().public
    replica, _note = _directory(
        key_added(mine, owner="client:ml", org="o-ml", now=NOW),
        key_added(injected, owner="client:ml", org="o-ml", now=NOW),
    )
    check_own_keys(replica, "client:other", [])  # others' keys are not its business
    with pytest.raises(VerificationError) as refused:
        check_own_keys(replica, "client:ml", [mine.key_id])
    assert refused.value.code == "foreign_key" and injected.key_id in str(refused.value)
    check_own_keys(replica, "client:ml", [mine.key_id, injected.key_id])


# -- the network -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://maillon.example.fr",
        "http://localhost.attacker.example",
        "http://127.0.0.1.nip.io",
        "http://localhost@attacker.example",
        "https://user:secret@maillon.example.fr",
        "ftp://maillon.example.fr",
        "https://maillon.example.fr/?x=1",
        "https://",
    ],
)
def test_only_https_or_this_machine_over_http(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        HttpFetcher(url)


@pytest.mark.parametrize(
    "url", ["https://maillon.example.fr", "http://127.0.0.1:5000", "http://localhost:8080/"]
)
def test_hub_addresses_accepted(url: str) -> None:
    assert HttpFetcher(url).base_url == url.rstrip("/")


@pytest.fixture
def servers() -> Iterator[tuple[str, list[str]]]:
    """A hub that redirects everything to a second server recording what it receives."""
    seen: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}/steal")
            self.end_headers()

    hub = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (hub, other)]
    for thread in threads:
        thread.start()
    yield f"http://127.0.0.1:{hub.server_port}", seen
    for server in (hub, other):
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_and_the_token_stays_home(
    servers: tuple[str, list[str]],
) -> None:
    url, seen = servers
    answer = HttpFetcher(url)(
        "GET", "/api/v1/moi", body=None, headers={"Authorization": "Bearer T"}
    )
    assert answer.status == 302 and seen == []


def test_a_low_order_key_record_is_refused_as_published() -> None:
    # The path the directory and the relay read keys through
    key = DeviceSecrets.generate().public
    record = key.record()
    record["kem"]["pk"] = b64e(bytes(32))
    with pytest.raises(MalformedError):
        DeviceKey.from_record(record)


def test_a_form_signed_before_its_key_was_rotated_opens_for_a_while() -> None:
    from datetime import timedelta

    from exchange.client import ROTATION_GRACE
    from exchange.directory import key_revoked

    spip, mission_locale = DeviceSecrets.generate(), DeviceSecrets.generate()
    entries = [
        key_added(spip.public, owner="client:spip", org="o-spip", now=NOW),
        key_added(mission_locale.public, owner="client:ml", org="o-ml", now=NOW),
    ]
    _before, before_note = _directory(*entries)
    sealed_before = _form(spip, "client:spip", "o-spip", mission_locale, before_note)
    for reason, later, opens in (
        ("owner", timedelta(days=1), True),  # a rotation, recent: it opens
        ("owner", ROTATION_GRACE + timedelta(days=1), False),  # too long ago
        ("admin", timedelta(0), False),  # revoked by an administrator: never
    ):
        revoked = [*entries, key_revoked(spip.public.key_id, reason=reason, now=NOW)]
        replica, after_note = _directory(*revoked)
        if opens:
            opened = open_received(
                sealed_before, secrets=mission_locale, replica=replica, now=NOW + later
            )
            assert opened.values
        else:
            with pytest.raises(VerificationError) as refused:
                open_received(
                    sealed_before, secrets=mission_locale, replica=replica, now=NOW + later
                )
            assert refused.value.code == "key_revoked"
        # Sealed citing a checkpoint that already shows the revocation: always refused
        sealed_after = _form(spip, "client:spip", "o-spip", mission_locale, after_note)
        with pytest.raises(VerificationError) as refused:
            open_received(sealed_after, secrets=mission_locale, replica=replica, now=NOW)
        assert refused.value.code == "key_revoked"


def test_a_key_added_then_revoked_under_this_systems_name_is_still_caught() -> None:
    from exchange.directory import key_revoked

    mine, injected = DeviceSecrets.generate().public, DeviceSecrets.generate().public
    replica, _note = _directory(
        key_added(mine, owner="client:ml", org="o-ml", now=NOW),
        key_added(injected, owner="client:ml", org="o-ml", now=NOW),
        key_revoked(injected.key_id, reason="admin", now=NOW),
    )
    with pytest.raises(VerificationError) as refused:
        check_own_keys(replica, "client:ml", [mine.key_id])
    assert refused.value.code == "foreign_key"
