"""Sealed liaison forms in process (DESIGN §11, issue 10 point 10): every figure beside a
same-run baseline, in alternating rounds.

- **hub acceptance of a 10-recipient form**: what ``POST /api/v1/fiches`` does once the
  caller is authenticated — :meth:`exchange.server.relay.Relay.accept` with the hub's
  entitlements (envelope read, sender device, signature and digests, idempotency lookup,
  charter × consent × case team for the sender and for every recipient device, the recipients'
  devices in force, ciphertext stored), the durable audit append of the send, the commit —
  against one raw Ed25519 verify of the same manifest plus one audit append on the same store.
  Target: ≥ 60 % of the baseline's rate;
- the same through the whole Flask view (bearer token, JSON answer, notifications of the
  recipients queued), reported beside it;
- **Python seal for 10 recipients** (:func:`exchange.envelope.seal`: one view per owner, four
  views here, each under its own AES-256-GCM key, the key sealed to each of the owner's
  devices, the manifest signed, the result read back and verified) against 10 HPKE seals of a
  32-byte key plus one Ed25519 sign of a manifest as long (:mod:`exchange.hpke`). Target:
  ≥ 70 % of the baseline's rate.

Each form can be accepted once (its id is the idempotency key), so the forms are sealed before
each round and the acceptance rate is the number of forms over the time to accept them all. The
acceptance figures are followed by where the time goes (one more pass, timed by parts). No
assertion on time anywhere.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask.testing import FlaskClient

from exchange.envelope import parse, verify
from exchange.hpke import seal as hpke_seal
from exchange.server.relay import Relay
from hub import liaison
from hub.liaison import HubEntitlements
from hub.models import ApiClient
from tests.benchmarks.common import Result, alternate, rate, rate_over, ratios, spread
from tests.benchmarks.liaison_territory import Territory, bench_env, prepare, sealed_forms


def _accept_in_process(territory: Territory) -> Callable[[bytes], None]:
    """One form accepted as the view does it, without Flask: relay, audit append, commit."""
    hub_state = territory.state

    def accept(data: bytes) -> None:
        with territory.app.app_context(), hub_state.session_factory() as session:
            client = session.get(ApiClient, territory.client_row)  # the bearer check's load
            assert client is not None
            relay = liaison.relay(session, hub_state, client)
            accepted = relay.accept(data, caller=liaison.client_owner(client))
            if not accepted.stored:
                raise RuntimeError("a benchmark form was not stored")
            hub_state.audit_log.append(territory.send_event(accepted.manifest.form))
            session.commit()

    return accept


def _baseline(territory: Territory, sample: bytes) -> Callable[[], None]:
    """One raw Ed25519 verify of a real manifest and one audit append on the same store."""
    envelope = parse(sample)
    public = Ed25519PublicKey.from_public_bytes(territory.sender.public.sign)
    signature, signing_input = envelope.signature, envelope.signing_input
    log = territory.state.audit_log
    form = envelope.manifest.form

    def one() -> None:
        public.verify(signature, signing_input)
        log.append(territory.send_event(form))

    return one


class _View:
    """``POST /api/v1/fiches`` through the Flask test client, with a fresh token per round."""

    def __init__(self, territory: Territory) -> None:
        self.territory = territory
        self.http: FlaskClient = territory.app.test_client()
        self.headers: dict[str, str] = {}

    def refresh(self) -> None:
        """A new access token (they last five minutes)."""
        audience = f"{self.territory.state.config.base_url}/api/v1/token"
        answer = self.http.post("/api/v1/token", data=self.territory.token_form(audience))
        if answer.status_code != 200:
            raise RuntimeError(f"no access token: {answer.get_json()}")
        self.headers = {"Authorization": f"Bearer {answer.get_json()['access_token']}"}

    def post(self, data: bytes) -> None:
        """Send one form; it must be stored."""
        answer = self.http.post(
            "/api/v1/fiches", data=data, content_type="application/json", headers=self.headers
        )
        if answer.status_code != 201:
            raise RuntimeError(f"the hub answered {answer.status_code}: {answer.get_json()}")


@dataclass
class _Parts:
    """Seconds spent in each part of acceptance over a breakdown pass."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


class _TimedEntitlements(HubEntitlements):
    """The hub's entitlements, timing the sender's and the recipients' decisions."""

    parts: _Parts

    def sender(self, manifest: Any, fields: frozenset[str]) -> Any:
        with self.parts.timed("entitlements.sender (case, context, consent, charter)"):
            return super().sender(manifest, fields)

    def recipient(self, sending: Any, manifest: Any, owner: Any, fields: Any) -> Any:
        with self.parts.timed("entitlements.recipient × 10 devices"):
            return super().recipient(sending, manifest, owner, fields)


def _breakdown(territory: Territory, forms: list[bytes]) -> list[tuple[str, float]]:
    """Milliseconds per form spent in each part of in-process acceptance (one pass over
    ``forms``; reading and verifying the envelope is timed apart, on the same forms)."""
    hub_state = territory.state
    parts = _Parts()
    for data in forms:
        with (
            territory.app.app_context(),
            hub_state.session_factory() as session,
            parts.timed("total"),
        ):
            client = session.get(ApiClient, territory.client_row)
            assert client is not None
            entitlements = _TimedEntitlements(hub_state.cases(session), client)
            entitlements.parts = parts
            relay = Relay(session, clock=hub_state.clock, entitlements=entitlements)
            with parts.timed(_ACCEPT):
                accepted = relay.accept(data, caller=liaison.client_owner(client))
            with parts.timed("audit append (durable)"):
                hub_state.audit_log.append(territory.send_event(accepted.manifest.form))
            with parts.timed("commit of the form (durable)"):
                session.commit()
    sender_key = territory.sender.public
    with parts.timed(_VERIFY):
        for data in forms:
            verify(parse(data), sender_key)
    per_form = {k: v * 1e3 / len(forms) for k, v in parts.seconds.items()}
    inside = [k for k in per_form if k.startswith("entitlements.")] + [_VERIFY]
    per_form["  rest of Relay.accept (device lookups, idempotency, inserts)"] = per_form[
        _ACCEPT
    ] - sum(per_form[k] for k in inside)
    order = [
        "total",
        _ACCEPT,
        *(f"  {k}" for k in inside),
        "  rest of Relay.accept (device lookups, idempotency, inserts)",
        "audit append (durable)",
        "commit of the form (durable)",
    ]
    per_form.update({f"  {k}": per_form.pop(k) for k in inside})
    return [(k, per_form[k]) for k in order]


_ACCEPT = "Relay.accept"
_VERIFY = "parse + verify (envelope, signature, digests; timed apart)"


def _seal_baseline(territory: Territory, sample: bytes) -> Callable[[], None]:
    """10 HPKE seals of a 32-byte key (one per recipient device, with the envelope's ``info``
    length) and one Ed25519 sign of a message as long as the sample's signing input."""
    keys = [device for plan in territory.plans for device in plan.recipients]
    envelope = parse(sample)
    message = envelope.signing_input
    view_key = os.urandom(32)
    infos = [b"maillon/fiche/1\x00" + b"f" * 28 + b"\x00v1\x00" + k.key_id.encode() for k in keys]
    secrets = territory.sender

    def one() -> None:
        for key, info in zip(keys, infos, strict=True):
            hpke_seal(key.suite, key.kem, view_key, info)
        secrets.sign(message)

    return one


def run(quick: bool) -> list[Result]:
    """Measure acceptance (relay and view) and sealing against their baselines."""
    rounds = 2 if quick else 5
    per_round = 5 if quick else 150  # forms accepted per round (each is sealed beforehand)
    seconds = 0.1 if quick else 1.0
    with tempfile.TemporaryDirectory(prefix="bench-liaison-") as tmp:
        # Nothing listens on the port: it only names the token endpoint's audience.
        territory = prepare(bench_env(Path(tmp) / "var", 5000))
        try:
            return _measure(territory, rounds=rounds, per_round=per_round, seconds=seconds)
        finally:
            territory.dispose()


def _measure(territory: Territory, *, rounds: int, per_round: int, seconds: float) -> list[Result]:
    accept = _accept_in_process(territory)
    view = _View(territory)
    warm = sealed_forms(territory, 10)
    view.refresh()
    for data in warm[:5]:
        accept(data)  # compiled charters, prepared statements, the audit writer warm
    for data in warm[5:]:
        view.post(data)
    baseline = _baseline(territory, warm[0])
    pools: dict[str, list[bytes]] = {}

    def relay_round(_n: int) -> float:
        return rate_over(accept, pools["relay"])

    def view_round(_n: int) -> float:
        view.refresh()
        return rate_over(view.post, pools["view"])

    def base_round(_n: int) -> float:
        # Seal the next round's forms first (outside any timing).
        pools["relay"] = sealed_forms(territory, per_round)
        pools["view"] = sealed_forms(territory, per_round)
        return rate(baseline, seconds=seconds)

    acceptance = alternate(
        {"baseline": base_round, "relay": relay_round, "view": view_round}, rounds=rounds
    )
    base = acceptance["baseline"]
    print(f"  baseline verify+append per round: {spread(base, ',.0f')} /s")
    print(f"  relay acceptance per round:       {spread(acceptance['relay'], ',.1f')} forms/s")
    print(f"  view acceptance per round:        {spread(acceptance['view'], ',.1f')} forms/s")
    print(
        f"  ratio per round: relay {spread(ratios(acceptance['relay'], base))}, "
        f"view {spread(ratios(acceptance['view'], base))}"
    )
    print(f"  where the time goes (ms per form, {per_round} forms, one timed pass):")
    for part, millis in _breakdown(territory, sealed_forms(territory, per_round)):
        print(f"    {part:<66} {millis:8.3f}")

    sample = warm[0]
    seal_base = _seal_baseline(territory, sample)
    sealing = alternate(
        {
            "baseline": lambda _n: rate(seal_base, seconds=seconds),
            "seal": lambda _n: rate(territory.seal, seconds=seconds),
        },
        rounds=rounds,
    )
    print(f"  10 HPKE seals + 1 sign per round: {spread(sealing['baseline'], ',.0f')} /s")
    print(f"  envelope.seal per round:          {spread(sealing['seal'], ',.0f')} /s")
    print(f"  ratio per round: {spread(ratios(sealing['seal'], sealing['baseline']))}")

    n = f"median, {rounds} rounds"
    views = len(territory.plans)
    recipients = territory.recipients
    median = statistics.median
    return [
        Result(f"form acceptance, {recipients} recipients, in process ({n})",
               median(acceptance["relay"]), "forms/s",
               "1 Ed25519 verify + 1 audit append", median(base), "≥ 60 % of baseline",
               min_ratio=0.60, rounds=tuple(acceptance["relay"]), baseline_rounds=tuple(base)),
        Result(f"same through the Flask view, test client ({n})",
               median(acceptance["view"]), "forms/s",
               "1 Ed25519 verify + 1 audit append", median(base), "reported",
               rounds=tuple(acceptance["view"]), baseline_rounds=tuple(base)),
        Result(f"Python seal, {recipients} recipients, {views} views ({n})",
               median(sealing["seal"]), "forms/s",
               f"{recipients} HPKE seals + 1 Ed25519 sign", median(sealing["baseline"]),
               "≥ 70 % of baseline", min_ratio=0.70, rounds=tuple(sealing["seal"]),
               baseline_rounds=tuple(sealing["baseline"])),
    ]  # fmt: skip
