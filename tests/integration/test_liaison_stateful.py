"""Sealed liaison forms against the real relay, as an adversary would try them (issue 10, §11).

Three parts, on SQLite and PostgreSQL both (the ``app`` fixture's parametrisation):

1. **A stateful model.** Organisation systems — the demo's SPIP and Mission Locale, which follow
   the same case, and the PJJ's, which does not — send forms, leave some unfetched, fetch in any
   order with any of their keys (or someone else's), rotate keys (register a new one, revoke the
   old), add and revoke keys, and send with stale plans, with revoked signing keys, or to keys
   they should not seal to. The model predicts every answer: a form accepted opens exactly for
   the devices that were its entitled recipients when it was sent and are still in force, to
   exactly the values of their view; anyone else is refused with a stable code; a form sealed to
   a revoked or unknown key, or leaving out a key in force of a recipient, is refused naming each
   device, with nothing stored and the refusal recorded.
2. **Tampering at the relay**: each defect answered with its documented status and stable code,
   nothing stored, the refusal in the audit log.
3. **A rigged hub caught by the client**: a key substituted in the hub's answer about recipients,
   a directory whose entries do not lead to the signed root, and a split view.

The helpers of ``test_liaison_api`` and ``test_liaison_client`` (``System``, ``_system``,
``_plan``, ``_seal``, the client's workspace) are reused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, update

from audit import merkle
from audit.checkpoint import Checkpoint, NoteSigner, SignedNote
from audit.events import Action, Decision
from exchange.cli import main
from exchange.client import (
    Credentials,
    Fetcher,
    HubClient,
    Plan,
    Response,
    open_received,
    plan_form,
    seal_plan,
)
from exchange.directory import Directory, key_added
from exchange.encoding import b64e
from exchange.envelope import MAX_ENVELOPE_BYTES, OpenedForm, ViewPlan, open_form, parse, seal
from exchange.errors import VerificationError
from exchange.hpke import Suite
from exchange.keys import DeviceKey, DeviceSecrets
from exchange.server.tables import form_recipients, forms
from hub.api_auth import parse_public_jwk, public_jwk
from hub.liaison import directory_signer
from hub.models import ApiClient, Organisation
from tests.conftest import Account, FakeClock
from tests.integration.test_liaison_api import (
    E2E_FIELDS,
    MISSION_LOCALE,
    SPIP,
    System,
    _followed_case,
    _plan,
    _seal,
    _system,
)
from tests.integration.test_liaison_client import FlaskFetcher, _workspace

PJJ = "PJJ — UEMO de Démoville"

# What each code of the exchange answers (docs/api.md, « Sealed liaison forms »).
DOCUMENTED: dict[str, int] = {
    **dict.fromkeys(
        [
            "invalid_json", "invalid_member", "missing_member", "unknown_member",
            "duplicate_member", "invalid_base64", "too_large", "unknown_version",
            "unknown_suite", "invalid_key", "invalid_jws", "alg_not_allowed",
            "duplicate_recipient", "views_mismatch",
        ],
        400,
    ),
    **dict.fromkeys(
        ["signature_invalid", "digest_mismatch", "sender_key_mismatch", "view_invalid"], 422
    ),
    **dict.fromkeys(["form_refused", "not_involved", "sender_device", "sender_mismatch"], 403),
    **dict.fromkeys(["form_exists", "key_exists", "key_revoked", "too_many_devices"], 409),
    **dict.fromkeys(["form_unknown", "form_expired", "key_unknown"], 404),
}  # fmt: skip


def _stored(app: Flask) -> tuple[int, int]:
    """How many forms and recipient rows the hub holds."""
    with app.extensions["maillon"].session_factory() as session:
        return (
            int(session.execute(select(func.count()).select_from(forms)).scalar_one()),
            int(session.execute(select(func.count()).select_from(form_recipients)).scalar_one()),
        )


def _events_during(app: Flask, call: Callable[[], Any]) -> tuple[Any, list[Any]]:
    """What ``call`` returned and the audit events it appended."""
    log = app.extensions["maillon"].audit_log
    before = log.size()
    result = call()
    return result, list(log.events(before, log.size()))


def _post(system: System, data: bytes) -> Any:
    return system.call("POST", "/api/v1/fiches", data=data, content_type="application/json")


def _synced(system: System) -> Directory:
    """``system``'s replica brought up to the hub's signed checkpoint, page by page."""
    head = system.call("GET", "/api/v1/annuaire").get_json()
    replica = system.replica or Directory.empty(head["vkey"])
    entries: list[bytes] = []
    while replica.size + len(entries) < head["size"]:
        start = replica.size + len(entries)
        page = system.call("GET", f"/api/v1/annuaire/entrees?debut={start}&fin={head['size']}")
        entries += [base64.urlsafe_b64decode(e + "==") for e in page.get_json()["entries"]]
    system.replica = replica.update(entries, head["checkpoint"])
    return system.replica


def _open(data: bytes, secrets: DeviceSecrets, replica: Directory) -> OpenedForm:
    """Open a received form as :func:`exchange.client.open_received` does, except that the
    sender's key need only have been in force in the directory the sender saw (the manifest's
    checkpoint, itself checked against ``replica``), not still now: the hub accepted the form
    only from a key in force, and a sender rotating its key must not make its forms in flight
    unreadable (see the expected failure below). When the key is still in force, the client's
    own function must open it the same."""
    envelope = parse(data)
    manifest = envelope.manifest
    seen = replica.check_peer(manifest.directory)
    state = replica.state(manifest.sender.device)
    assert state is not None and state.added < seen.size
    assert state.revoked is None or state.revoked >= seen.size
    opened = open_form(envelope, secrets=secrets, sender_key=state.key)
    if state.current:
        assert open_received(data, secrets=secrets, replica=replica) == opened
    return opened


# -- 1. the stateful model -------------------------------------------------------------------

# Who sends what to whom on the demo's followed case, as the charter-type allows between the two
# systems: the purpose, fields the recipient may see, the recipient. The PJJ takes no part.
ROUTES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "spip": (
        "orientation",
        ("contact.telephone", "identite.nom", "justice.statut", "logement.situation"),
        "ml",
    ),
    "ml": (
        "suivi_parcours",
        ("formation_emploi.projet", "logement.demande", "parcours.etapes", "sortie.type"),
        "spip",
    ),
}
NOBODY_FIELD = "identite.convictions"  # never shared under the charter-type
EXTRAS = ("none", "unknown", "outsider", "revoked")


@dataclass
class Party:
    """One organisation's system in the model: its API client and device keys."""

    name: str
    system: System
    owner: str  # client:<id>, as the directory names it
    org: str  # the organisation's public id
    live: list[DeviceSecrets]
    revoked: list[DeviceSecrets] = field(default_factory=list)

    def live_ids(self) -> set[str]:
        return {d.public.key_id for d in self.live}

    def every(self) -> list[DeviceSecrets]:
        return [*self.live, *self.revoked]


@dataclass(frozen=True)
class SentForm:
    """An accepted form: who sent it, and what each recipient device opens it to."""

    sender: str
    views: Mapping[str, Mapping[str, Any]]


class LiaisonMachine(RuleBasedStateMachine):
    """Organisations' systems on one hub; the subclass made by the test binds the app."""

    app: ClassVar[Flask]
    clock: ClassVar[FakeClock]
    reference: ClassVar[str]
    # The last verified replica of a run, where the next run's systems start (the directory
    # grows with every run; each system still verifies every entry after it).
    known: ClassVar[dict[str, Directory]]

    sent_forms = Bundle("sent_forms")

    def __init__(self) -> None:
        super().__init__()
        # Fresh systems each run, on the hub the test shares between runs: the previous runs'
        # systems are deactivated in teardown, so they are nobody's recipients any more.
        self.parties: dict[str, Party] = {}
        self.owner_of: dict[str, str] = {}  # every key id registered in this run → party
        self.secrets: dict[str, DeviceSecrets] = {}
        for name, org_name in (("spip", SPIP), ("ml", MISSION_LOCALE), ("pjj", PJJ)):
            system = _system(self.app, self.clock, org_name)
            system.replica = self.known.get("replica")
            me = system.call("GET", "/api/v1/moi").get_json()
            party = Party(
                name,
                system,
                f"client:{me['client_id']}",
                me["organisation"]["id"],
                [system.device],
            )
            self.parties[name] = party
            self._know(party, system.device)
        self.sent: dict[str, SentForm] = {}
        self.delivered: set[tuple[str, str]] = set()
        self.plans: dict[str, tuple[Plan, str]] = {}  # each sender's last plan and checkpoint
        self.serial = itertools.count()
        self.baseline = _stored(self.app)

    def teardown(self) -> None:
        self.each_inbox_lists_exactly_its_forms()
        self.known["replica"] = _synced(self.parties["spip"].system)
        client_ids = [p.owner.removeprefix("client:") for p in self.parties.values()]
        state = self.app.extensions["maillon"]
        with state.session_factory() as session:
            session.execute(
                update(ApiClient).where(ApiClient.client_id.in_(client_ids)).values(active=False)
            )
            session.commit()

    # -- model helpers -------------------------------------------------------------------------

    def _know(self, party: Party, device: DeviceSecrets) -> None:
        self.owner_of[device.public.key_id] = party.name
        self.secrets[device.public.key_id] = device

    def _value(self, field_id: str) -> str:
        return f"{field_id} n°{next(self.serial)}"

    def _expected(
        self, sender: Party, signer: DeviceSecrets, listed: list[str]
    ) -> tuple[int, str, set[tuple[str, str]]] | None:
        """The relay's answer to a form signed by ``signer`` and sealed to ``listed``, as the
        model predicts it (``None``: accepted)."""
        if signer.public.key_id not in sender.live_ids():
            return 403, "sender_device", set()
        if sender.name not in ROUTES:
            return 403, "not_involved", set()
        refusals: set[tuple[str, str]] = set()
        owners: set[str] = set()
        for key_id in listed:
            name = self.owner_of.get(key_id)
            if name is not None:
                owners.add(name)  # revoked or not, its owner's keys in force must all be there
            if name is None or key_id not in self.parties[name].live_ids():
                refusals.add(("recipient_key", key_id))
                continue
            if name != ROUTES[sender.name][2]:
                refusals.add(("recipient_not_involved", key_id))
        for name in owners:
            missing = self.parties[name].live_ids() - set(listed)
            refusals |= {("recipient_device_missing", key_id) for key_id in missing}
        return (403, "form_refused", refusals) if refusals else None

    def _extra_key(self, extra: str, plan: Plan, pick: int) -> DeviceKey | None:
        """A key the sender adds to its first view: never published, the PJJ's, or revoked."""
        listed = {k.key_id for v in plan.views for k in v.recipients}
        if extra == "unknown":
            return DeviceSecrets.generate().public
        pool: list[DeviceSecrets] = []
        if extra == "outsider":
            pool = self.parties["pjj"].live
        elif extra == "revoked":
            pool = [d for p in self.parties.values() for d in p.revoked]
        pool = [d for d in pool if d.public.key_id not in listed]
        return pool[pick % len(pool)].public if pool else None

    def _send(self, sender: Party, plan: Plan, note: str, signer_pick: int, extra: str) -> Any:
        signers = sender.every()
        signer = signers[signer_pick % len(signers)]
        added = self._extra_key(extra, plan, signer_pick)
        if added is not None:
            first = plan.views[0]
            plan = replace(
                plan,
                views=(ViewPlan(first.values, [*first.recipients, added]), *plan.views[1:]),
            )
        data = seal_plan(
            plan,
            secrets=signer,
            sender=sender.owner,
            org=sender.org,
            directory_note=note,
            now=self.clock(),
        )
        form = parse(data).manifest.form
        listed = [k.key_id for v in plan.views for k in v.recipients]
        expected = self._expected(sender, signer, listed)
        before = _stored(self.app)
        response, events = _events_during(self.app, lambda: _post(sender.system, data))
        body = response.get_json()
        if expected is None:
            assert response.status_code == 201, body
            assert body == {"form": form, "stored": True, "recipients": len(listed)}
            assert [(e.action, e.decision, e.rule) for e in events] == [
                (Action.FORM_SEND, Decision.ALLOW, form)
            ]
            self.sent[form] = SentForm(
                sender.name,
                {k.key_id: dict(v.values) for v in plan.views for k in v.recipients},
            )
            return form
        status, code, refusals = expected
        assert (response.status_code, body["error"]) == (status, code), body
        if code == "form_refused":
            assert {(r["code"], r["device"]) for r in body["refusals"]} == refusals, body
        # Nothing stored, and the refusal recorded against the case
        assert _stored(self.app) == before
        assert [(e.action, e.decision, e.rule, e.object_id) for e in events] == [
            (Action.FORM_SEND_REFUSED, Decision.DENY, code, self.reference)
        ]
        return multiple()

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        target=sent_forms,
        sender=st.sampled_from(sorted(ROUTES)),
        picks=st.sets(st.integers(0, 3), min_size=1, max_size=4),
        nobody=st.booleans(),
        signer=st.integers(0, 7),
        extra=st.sampled_from(EXTRAS),
    )
    def send(self, sender: str, picks: set[int], nobody: bool, signer: int, extra: str) -> Any:
        """Ask the hub who may receive what, check it against the directory, seal and send."""
        party = self.parties[sender]
        purpose, allowed, to = ROUTES[sender]
        values: dict[str, Any] = {allowed[i]: self._value(allowed[i]) for i in sorted(picks)}
        if nobody:
            values[NOBODY_FIELD] = self._value(NOBODY_FIELD)
        replica = _synced(party.system)
        answer = party.system.call(
            "GET",
            f"/api/v1/dossiers/{self.reference}/destinataires"
            f"?finalite={purpose}&champs={','.join(sorted(values))}",
        ).get_json()
        # The hub names exactly the recipient's keys in force (people have none here)
        recipient = self.parties[to]
        named = {r["owner"]: set(r["devices"]) for r in answer["recipients"] if r["devices"]}
        assert named == ({recipient.owner: recipient.live_ids()} if recipient.live else {})
        plan = plan_form(answer, values, replica, purpose)
        assert NOBODY_FIELD not in {f for v in plan.views for f in v.values}
        if not plan.views:
            return multiple()  # the recipient has no key in force: nothing can be sealed
        self.plans[sender] = (plan, replica.note)
        return self._send(party, plan, replica.note, signer, extra)

    @precondition(lambda self: bool(self.plans))
    @rule(
        target=sent_forms,
        who=st.sampled_from(["spip", "ml", "pjj"]),
        which=st.integers(0, 1),
        signer=st.integers(0, 7),
        extra=st.sampled_from(EXTRAS),
    )
    def send_again_with_an_old_plan(self, who: str, which: int, signer: int, extra: str) -> Any:
        """Seal a new form with a plan made earlier (keys may have changed since), possibly by
        another system (the PJJ's: it takes no part in the case)."""
        plans = [self.plans[name] for name in sorted(self.plans)]
        plan, note = plans[which % len(plans)]
        if who != "pjj" and ROUTES[who][0] != plan.purpose:
            who = next(name for name, route in ROUTES.items() if route[0] == plan.purpose)
        return self._send(self.parties[who], plan, note, signer, extra)

    @rule(
        form=sent_forms,
        who=st.sampled_from(["spip", "ml", "pjj"]),
        pick=st.integers(0, 31),
        foreign=st.booleans(),
    )
    def fetch(self, form: str, who: str, pick: int, foreign: bool) -> None:
        """Fetch a form with one of one's keys (in force or revoked), or someone else's."""
        pool = (
            sorted(k for k, owner in self.owner_of.items() if owner != who)
            if foreign
            else [d.public.key_id for d in self.parties[who].every()]
        )
        self._fetch(form, who, pool[pick % len(pool)])

    @precondition(lambda self: bool(self.sent))
    @rule(order=st.randoms(use_true_random=False), count=st.integers(1, 12))
    def fetch_in_any_order(self, order: Any, count: int) -> None:
        """Every system tries forms with each of its keys (in force or not), in any order: some
        are what was sent to it, others not; the rest is left where it is, perhaps for ever."""
        attempts = sorted(
            (form, party.name, device.public.key_id)
            for form in self.sent
            for party in self.parties.values()
            for device in party.every()
        )
        order.shuffle(attempts)
        for form, who, key_id in attempts[:count]:
            self._fetch(form, who, key_id)

    def _fetch(self, form: str, who: str, key_id: str) -> None:
        party = self.parties[who]
        sent = self.sent[form]
        entitled = (
            key_id in sent.views and self.owner_of[key_id] == who and key_id in party.live_ids()
        )
        response, events = _events_during(
            self.app, lambda: party.system.call("GET", f"/api/v1/fiches/{form}?appareil={key_id}")
        )
        if not entitled:
            assert (response.status_code, response.get_json()["error"]) == (404, "form_unknown")
            assert [(e.action, e.decision, e.rule) for e in events] == [
                (Action.FORM_DELIVER, Decision.DENY, "form_unknown")
            ]
            return
        assert response.status_code == 200, response.get_json()
        assert [(e.action, e.decision, e.rule) for e in events] == [
            (Action.FORM_DELIVER, Decision.ALLOW, form)
        ]
        data = response.get_data()
        replica = _synced(party.system)
        opened = _open(data, self.secrets[key_id], replica)
        assert opened.values == sent.views[key_id]
        # The owner's other keys in force, if they were not recipients, cannot open it
        for other in party.live:
            if other.public.key_id not in sent.views:
                with pytest.raises(VerificationError) as refused:
                    _open(data, other, replica)
                assert refused.value.code == "not_a_recipient"
        ack = party.system.call(
            "POST", f"/api/v1/fiches/{form}/ouverture", json={"appareil": key_id}
        )
        assert ack.status_code == 200
        self.delivered.add((form, key_id))

    @precondition(lambda self: any(len(p.live) < 3 for p in self.parties.values()))
    @rule(who=st.sampled_from(["spip", "ml", "pjj"]), rotate=st.booleans(), pq=st.booleans())
    def new_key(self, who: str, rotate: bool, pq: bool) -> None:
        """Register a new device key; when rotating, revoke the oldest one in force."""
        party = self.parties[who]
        if len(party.live) >= 3:
            return
        device = DeviceSecrets.generate(Suite.MLKEM768_X25519 if pq else Suite.X25519)
        response = party.system.call(
            "POST", "/api/v1/appareils", json={"key": device.public.record(), "label": "Nouveau"}
        )
        assert response.status_code == 201, response.get_json()
        self._know(party, device)
        old = party.live[0] if rotate and party.live else None
        party.live.append(device)
        if old is not None:
            self._revoke(party, old)

    @precondition(lambda self: any(p.live for p in self.parties.values()))
    @rule(who=st.sampled_from(["spip", "ml", "pjj"]), pick=st.integers(0, 7))
    def revoke(self, who: str, pick: int) -> None:
        """Revoke one of one's keys in force (perhaps the last)."""
        party = self.parties[who]
        if party.live:
            self._revoke(party, party.live[pick % len(party.live)])

    def _revoke(self, party: Party, device: DeviceSecrets) -> None:
        key_id = device.public.key_id
        response = party.system.call("POST", f"/api/v1/appareils/{key_id}/revocation")
        assert response.status_code == 200, response.get_json()
        party.live.remove(device)
        party.revoked.append(device)

    @rule(who=st.sampled_from(["spip", "ml", "pjj"]), pick=st.integers(0, 31))
    def revoke_what_one_cannot(self, who: str, pick: int) -> None:
        """Revoking someone else's key, a revoked one or an unknown one changes nothing."""
        party = self.parties[who]
        choices = [(k, "not_owner", 403) for k, o in self.owner_of.items() if o != who]
        choices += [(d.public.key_id, "key_revoked", 409) for d in party.revoked]
        choices.append((DeviceSecrets.generate().public.key_id, "key_unknown", 404))
        key_id, code, status = choices[pick % len(choices)]
        response = party.system.call("POST", f"/api/v1/appareils/{key_id}/revocation")
        assert (response.status_code, response.get_json()["error"]) == (status, code)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def the_hub_holds_exactly_the_accepted_forms(self) -> None:
        recipients = sum(len(s.views) for s in self.sent.values())
        assert _stored(self.app) == (
            self.baseline[0] + len(self.sent),
            self.baseline[1] + recipients,
        )

    @rule()
    def each_inbox_lists_exactly_its_forms(self) -> None:
        """Checked whenever chosen and at the end of every run (each is three API calls)."""
        for name, party in self.parties.items():
            listed = party.system.call("GET", "/api/v1/fiches").get_json()["forms"]
            got = {(f["form"], f["device"]): (f["delivered"], f["opened"]) for f in listed}
            want = {
                (form, key_id): ((form, key_id) in self.delivered,) * 2
                for form, sent in self.sent.items()
                for key_id in sent.views
                if self.owner_of[key_id] == name
            }
            assert got == want, name


@pytest.mark.config(ratelimit_enabled=False)
def test_every_form_opens_exactly_for_its_recipients_through_sends_rotations_and_revocations(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    machine = type(
        "LiaisonOnThisHub",
        (LiaisonMachine,),
        {"app": app, "clock": clock, "reference": _followed_case(app), "known": {}},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_a_form_sent_before_its_sender_rotates_its_key_still_opens(scene: Scene) -> None:
    sent = _post(scene.spip, scene.sealed())
    assert sent.status_code == 201
    form = sent.get_json()["form"]
    # The SPIP's software rotates its key before the Mission Locale's fetches the form
    new = DeviceSecrets.generate()
    assert scene.spip.call("POST", "/api/v1/appareils", json={"key": new.public.record()})
    old = scene.spip.device.public.key_id
    assert scene.spip.call("POST", f"/api/v1/appareils/{old}/revocation").status_code == 200
    key_id = scene.ml.device.public.key_id
    fetched = scene.ml.call("GET", f"/api/v1/fiches/{form}?appareil={key_id}")
    assert fetched.status_code == 200
    replica = _synced(scene.ml)
    # It opens under the key in force in the directory the sender saw
    assert _open(fetched.get_data(), scene.ml.device, replica).manifest.form == form
    # And the client opens it too
    opened = open_received(fetched.get_data(), secrets=scene.ml.device, replica=replica)
    assert opened.manifest.form == form


# -- 2. tampering at the relay -------------------------------------------------------------------


@dataclass
class Scene:
    """The SPIP's software about to send a form on the followed case to the Mission Locale's;
    the PJJ's software takes no part in the case."""

    app: Flask
    clock: FakeClock
    spip: System
    ml: System
    pjj: System
    reference: str
    answer: dict[str, Any]
    plans: list[ViewPlan]
    purpose: str

    def replan(self) -> None:
        """Ask the hub again who receives what (after a key change), checked as before."""
        self.answer, self.plans, self.purpose = _plan(self.spip, self.reference, E2E_FIELDS)

    def sealed(self, plans: list[ViewPlan] | None = None) -> bytes:
        return _seal(self.spip, self.answer, plans or self.plans, self.purpose, self.clock())

    def refused(
        self, data: bytes, code: str | set[str], *, by: System | None = None
    ) -> dict[str, Any]:
        """Post ``data``: refused with a documented status and stable code (one of ``code``),
        nothing stored, nobody told, the refusal recorded. The answer's body."""
        before, inbox = _stored(self.app), self.ml.call("GET", "/api/v1/fiches").get_json()
        response, events = _events_during(self.app, lambda: _post(by or self.spip, data))
        body: dict[str, Any] = response.get_json()
        codes = {code} if isinstance(code, str) else code
        assert body["error"] in codes, body
        assert response.status_code == DOCUMENTED[body["error"]], body
        assert _stored(self.app) == before
        assert self.ml.call("GET", "/api/v1/fiches").get_json() == inbox
        assert self.pjj.call("GET", "/api/v1/fiches").get_json()["forms"] == []
        assert [(e.action, e.decision, e.rule) for e in events] == [
            (Action.FORM_SEND_REFUSED, Decision.DENY, body["error"])
        ]
        return body


@pytest.fixture
def scene(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> Scene:
    spip, ml, pjj = (_system(app, clock, org) for org in (SPIP, MISSION_LOCALE, PJJ))
    reference = _followed_case(app)
    answer, plans, purpose = _plan(spip, reference, E2E_FIELDS)
    assert [list(p.recipients) for p in plans] == [[ml.device.public]]
    return Scene(app, clock, spip, ml, pjj, reference, answer, plans, purpose)


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _parts(data: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """The envelope's outer object, JWS header, manifest and signature (base64url)."""
    outer = json.loads(data)
    header, payload, signature = outer["manifest"].split(".")
    return outer, json.loads(_b64d(header)), json.loads(_b64d(payload)), signature


def _assemble(outer: dict[str, Any], header: str, payload: str, signature: str) -> bytes:
    return json.dumps({**outer, "manifest": f"{header}.{payload}.{signature}"}).encode()


def _resigned(
    data: bytes,
    secrets: DeviceSecrets,
    edit: Callable[[dict[str, Any]], None],
    *,
    views: Callable[[dict[str, str]], None] | None = None,
) -> bytes:
    """``data`` with its manifest changed by ``edit`` (and its view ciphertexts by ``views``),
    signed again by ``secrets``: what the sender itself could send."""
    outer, jws_header, manifest, _signature = _parts(data)
    edit(manifest)
    if views is not None:
        views(outer["views"])
    h = b64e(_compact(jws_header))
    p = b64e(_compact(manifest))
    return _assemble(outer, h, p, b64e(secrets.sign(f"{h}.{p}".encode())))


def _unsigned(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``data`` with its manifest changed by ``edit`` and the sender's signature kept."""
    outer, header, manifest, signature = _parts(data)
    edit(manifest)
    return _assemble(outer, b64e(_compact(header)), b64e(_compact(manifest)), signature)


def _flip(raw: bytes, at: float) -> bytes:
    i = int(at * len(raw))
    return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]


def _flipped(data: bytes, part: str, at: float) -> bytes:
    """``data`` with one byte flipped in ``part``, as decoded (the base64 stays canonical)."""
    outer = json.loads(data)
    header, payload, signature = outer["manifest"].split(".")
    if part == "header":
        header = b64e(_flip(_b64d(header), at))
    elif part == "payload":
        payload = b64e(_flip(_b64d(payload), at))
    elif part == "signature":
        signature = b64e(_flip(_b64d(signature), at))
    elif part == "view":
        outer["views"]["v1"] = b64e(_flip(_b64d(outer["views"]["v1"]), at))
    else:  # a sealed key, inside the signed manifest
        manifest = json.loads(_b64d(payload))
        recipient = manifest["views"][0]["recipients"][0]
        recipient["key"] = b64e(_flip(_b64d(recipient["key"]), at))
        assert _compact(manifest) != _b64d(payload)
        payload = b64e(_compact(manifest))
    return _assemble(outer, header, payload, signature)


# Reading the header or manifest may fail anywhere (400), or name a sender device that is not the
# caller's or not the signer (403, 422); past reading, the signature fails (422).
READING = {c for c, status in DOCUMENTED.items() if status == 400}
SENDER = {"sender_device", "sender_mismatch", "sender_key_mismatch", "signature_invalid"}


@pytest.mark.parametrize(
    ("part", "codes"),
    [
        ("header", READING | SENDER),
        ("payload", READING | SENDER),
        ("signature", {"signature_invalid"}),
        ("view", {"digest_mismatch"}),
        ("sealed_key", {"signature_invalid"}),
    ],
)
def test_a_byte_flipped_in_any_part_is_refused_and_nothing_is_stored(
    scene: Scene, part: str, codes: set[str]
) -> None:
    data = scene.sealed()
    seen = {scene.refused(_flipped(data, part, at / 10), codes)["error"] for at in range(10)}
    if part == "payload":
        assert "signature_invalid" in seen  # a manifest that still reads is not the signed one
    # And the untouched form goes through
    assert _post(scene.spip, data).status_code == 201


def test_a_sealed_key_moved_to_another_device_is_caught(scene: Scene) -> None:
    # The Mission Locale's software has two devices: one view, two sealed keys
    second = DeviceSecrets.generate()
    assert scene.ml.call("POST", "/api/v1/appareils", json={"key": second.public.record()})
    scene.replan()
    data = scene.sealed()

    def swap(manifest: dict[str, Any]) -> None:
        first, other = manifest["views"][0]["recipients"]
        first["key"], other["key"] = other["key"], first["key"]

    # By anyone but the sender: the signature no longer holds
    scene.refused(_unsigned(data, swap), "signature_invalid")
    # Moved to a device of someone who takes no part in the case (by the sender)
    pjj_key = scene.pjj.device.public.key_id
    ml_keys = sorted(r.public.key_id for r in (scene.ml.device, second))

    def move(manifest: dict[str, Any]) -> None:
        recipient = manifest["views"][0]["recipients"][0]
        recipient["device"] = pjj_key

    body = scene.refused(_resigned(data, scene.spip.device, move), "form_refused")
    moved_from = _parts(data)[2]["views"][0]["recipients"][0]["device"]
    assert moved_from in ml_keys
    assert {(r["code"], r["device"]) for r in body["refusals"]} == {
        ("recipient_not_involved", pjj_key),
        ("recipient_device_missing", moved_from),
    }
    # Swapped between the two devices by the sender itself: only the recipients can tell; the
    # relay, which cannot open a sealed key, passes it on, and each device refuses it and says so
    swapped = _resigned(data, scene.spip.device, swap)
    sent = _post(scene.spip, swapped)
    assert sent.status_code == 201
    form = sent.get_json()["form"]
    replica = _synced(scene.ml)
    for device in (scene.ml.device, second):
        key_id = device.public.key_id
        fetched = scene.ml.call("GET", f"/api/v1/fiches/{form}?appareil={key_id}")
        with pytest.raises(VerificationError) as refused:
            open_received(fetched.get_data(), secrets=device, replica=replica)
        assert refused.value.code == "seal_invalid"
        report, events = _events_during(
            scene.app,
            lambda key_id=key_id: scene.ml.call(
                "POST",
                f"/api/v1/fiches/{form}/violation",
                json={"appareil": key_id, "code": "seal_invalid"},
            ),
        )
        assert report.status_code == 200
        assert [(e.action, e.decision, e.rule) for e in events] == [
            (Action.FORM_VIOLATION, Decision.DENY, f"seal_invalid:{form}")
        ]


def test_a_replayed_form_is_the_same_form_and_other_bytes_under_its_id_conflict(
    scene: Scene,
) -> None:
    data = scene.sealed()
    assert _post(scene.spip, data).status_code == 201
    stored = _stored(scene.app)
    # The same bytes again: the same form, not stored twice (also in test_liaison_api)
    again = _post(scene.spip, data)
    assert (again.status_code, again.get_json()["stored"]) == (200, False)
    assert _stored(scene.app) == stored
    # Other bytes under the same form id: new values sealed by the sender, or only its time
    form = parse(data).manifest.form
    other = seal(
        secrets=scene.spip.device,
        user=_parts(data)[2]["sender"]["user"],
        org=_parts(data)[2]["sender"]["org"],
        case=scene.reference,
        charter=parse(data).manifest.charter,
        consent=None,
        purpose=scene.purpose,
        directory=parse(data).manifest.directory,
        views=[ViewPlan({f: "autre valeur" for f in p.values}, p.recipients) for p in scene.plans],
        now=scene.clock(),
        form_id=form,
    ).to_bytes()
    scene.refused(other, "form_exists")

    def later(manifest: dict[str, Any]) -> None:
        created = datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ")
        manifest["created"] = (created + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    scene.refused(_resigned(data, scene.spip.device, later), "form_exists")
    # The same bytes from another system: not its device
    scene.refused(data, "sender_device", by=scene.ml)
    # And what the Mission Locale opens is the first form
    key_id = scene.ml.device.public.key_id
    fetched = scene.ml.call("GET", f"/api/v1/fiches/{form}?appareil={key_id}")
    assert fetched.get_data() == data


def test_a_changed_charter_version_is_refused_signed_or_not(scene: Scene) -> None:
    data = scene.sealed()

    def newer(manifest: dict[str, Any]) -> None:
        manifest["charter"]["version"] += 1

    def other_digest(manifest: dict[str, Any]) -> None:
        manifest["charter"]["digest"] = "sha256:" + "0" * 64

    def older(manifest: dict[str, Any]) -> None:
        manifest["charter"]["version"] -= 1

    scene.refused(_unsigned(data, newer), "signature_invalid")
    for edit in (newer, older, other_digest):
        body = scene.refused(_resigned(data, scene.spip.device, edit), "form_refused")
        assert "charter_stale" in {r["code"] for r in body["refusals"]}


def test_a_stale_directory_checkpoint(scene: Scene) -> None:
    data = scene.sealed()
    manifest = parse(data).manifest
    older_note = _note_of_size(scene.app, 1)
    assert manifest.directory != older_note

    def stale(edited: dict[str, Any]) -> None:
        edited["directory"] = older_note

    # Swapped by anyone but the sender: the signature no longer holds
    scene.refused(_unsigned(data, stale), "signature_invalid")
    # A sender whose directory is behind a rotation of the recipient's key: refused, naming
    # the revoked key it sealed to and the key in force it left out
    new = DeviceSecrets.generate()
    assert scene.ml.call("POST", "/api/v1/appareils", json={"key": new.public.record()})
    old = scene.ml.device.public.key_id
    assert scene.ml.call("POST", f"/api/v1/appareils/{old}/revocation").status_code == 200
    body = scene.refused(data, "form_refused")
    assert {(r["code"], r["device"]) for r in body["refusals"]} == {
        ("recipient_key", old),
        ("recipient_device_missing", new.public.key_id),
    }
    # Stale but genuine, with the keys in force: accepted, and the recipient (whose directory
    # has the sender's as a prefix) opens it
    scene.replan()
    fresh = _resigned(scene.sealed(), scene.spip.device, stale)
    sent = _post(scene.spip, fresh)
    assert sent.status_code == 201, sent.get_json()
    form = sent.get_json()["form"]
    fetched = scene.ml.call("GET", f"/api/v1/fiches/{form}?appareil={new.public.key_id}")
    opened = open_received(fetched.get_data(), secrets=new, replica=_synced(scene.ml))
    assert opened.manifest.directory == older_note


def _note_of_size(app: Flask, size: int) -> str:
    from exchange.server.tables import directory_checkpoints

    with app.extensions["maillon"].session_factory() as session:
        return str(
            session.execute(
                select(directory_checkpoints.c.note).where(directory_checkpoints.c.size == size)
            ).scalar_one()
        )


def _oversized(data: bytes, size: int) -> bytes:
    """``data`` padded with JSON whitespace to ``size`` bytes (still the same JSON)."""
    return data + b" " * (size - len(data))


def _two_part_jws(data: bytes) -> bytes:
    outer = json.loads(data)
    outer["manifest"] = outer["manifest"].rsplit(".", 1)[0]
    return json.dumps(outer).encode()


def _view_cut(data: bytes) -> bytes:
    outer = json.loads(data)
    outer["views"]["v1"] = outer["views"]["v1"][:-8]
    return json.dumps(outer).encode()


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda d: b"", "invalid_json"),
        (lambda d: d[: len(d) // 2], "invalid_json"),  # also in test_liaison_api (not recorded)
        (lambda d: d[:-1], "invalid_json"),
        (_two_part_jws, "invalid_jws"),
        (_view_cut, "digest_mismatch"),
        (lambda d: _oversized(d, MAX_ENVELOPE_BYTES + 1), "too_large"),
    ],
    ids=["empty", "half", "last_byte", "jws_two_parts", "view_cut", "over_the_limit"],
)
def test_a_truncated_or_oversized_envelope_is_refused(
    scene: Scene, damage: Callable[[bytes], bytes], code: str
) -> None:
    data = scene.sealed()
    scene.refused(damage(data), code)
    # Exactly the limit still reads
    assert _post(scene.spip, _oversized(data, MAX_ENVELOPE_BYTES)).status_code == 201


def test_a_sealed_key_truncated_by_the_sender_is_refused(scene: Scene) -> None:
    def cut(manifest: dict[str, Any]) -> None:
        recipient = manifest["views"][0]["recipients"][0]
        recipient["key"] = b64e(_b64d(recipient["key"])[:-1])

    scene.refused(_resigned(scene.sealed(), scene.spip.device, cut), "invalid_member")


def test_a_body_over_the_request_limit_is_refused_before_the_relay(scene: Scene) -> None:
    before = _stored(scene.app)
    # Past the envelope's limit and the margin the send routes get over it
    big = _oversized(scene.sealed(), MAX_ENVELOPE_BYTES + 64 * 1024 + 1)
    response, events = _events_during(scene.app, lambda: _post(scene.spip, big))
    assert (response.status_code, response.get_json()["error"]) == (413, "too_large")
    assert _stored(scene.app) == before
    assert [(e.action, e.decision, e.rule, e.object_id) for e in events] == [
        (Action.FORM_SEND_REFUSED, Decision.DENY, "too_large", "api.send_form")
    ]


@pytest.mark.parametrize(
    "where",
    ["view_alphabet", "view_padding", "signature_trailing_bits", "signature", "header"],
)
def test_invalid_base64_is_refused(scene: Scene, where: str) -> None:
    outer = json.loads(scene.sealed())
    header, payload, signature = outer["manifest"].split(".")
    view = outer["views"]["v1"]
    if where == "view_alphabet":
        outer["views"]["v1"] = "+/" + view[2:]  # base64, not base64url
    elif where == "view_padding":
        outer["views"]["v1"] = view + "=" * (-len(view) % 4 or 4)
    elif where == "signature_trailing_bits":
        # 64 bytes: the last character carries 4 unused bits; one set, it decodes to the same
        # signature but does not re-encode to the same text
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet[alphabet.index(signature[-1]) ^ 1]
        assert _b64d(signature[:-1] + last) == _b64d(signature)
        outer["manifest"] = f"{header}.{payload}.{signature[:-1]}{last}"
    elif where == "signature":
        outer["manifest"] = f"{header}.{payload}.{signature[:-1]}*"
    else:
        outer["manifest"] = f"{header}=.{payload}.{signature}"
    scene.refused(json.dumps(outer).encode(), "invalid_base64")


@pytest.mark.parametrize("alg", ["none", "HS256", "EdDSA", "ES256", "ed25519"])
def test_a_jws_with_another_alg_is_refused_before_any_key(scene: Scene, alg: str) -> None:
    data = scene.sealed()
    outer, header, _manifest, _signature = _parts(data)
    payload = outer["manifest"].split(".")[1]
    h = b64e(_compact({**header, "alg": alg}))
    signing_input = f"{h}.{payload}".encode()
    if alg == "none":
        signature = ""
    elif alg == "HS256":
        # Keyed with the sender's public key, the classic confusion
        key = _b64d(scene.spip.device.public.record()["sign"])
        signature = b64e(hmac.new(key, signing_input, hashlib.sha256).digest())
    else:  # a genuine Ed25519 signature under another name
        signature = b64e(scene.spip.device.sign(signing_input))
    scene.refused(_assemble(outer, h, payload, signature), "alg_not_allowed")


@pytest.mark.parametrize("which", ["unknown", "revoked", "revoked_only_key"])
def test_a_manifest_listing_a_revoked_or_unknown_key_is_refused(scene: Scene, which: str) -> None:
    # (test_liaison_api checks the code of a revoked key; here nothing stored and recorded too)
    ml_key = scene.ml.device.public
    if which == "unknown":
        extra = DeviceSecrets.generate().public  # never published
        plans = [ViewPlan(p.values, [*p.recipients, extra]) for p in scene.plans]
        expected = {("recipient_key", extra.key_id)}
    elif which == "revoked":
        second = DeviceSecrets.generate().public
        assert scene.ml.call("POST", "/api/v1/appareils", json={"key": second.record()})
        assert scene.ml.call("POST", f"/api/v1/appareils/{second.key_id}/revocation")
        plans = [ViewPlan(p.values, [*p.recipients, second]) for p in scene.plans]
        expected = {("recipient_key", second.key_id)}
    else:
        # Its only key revoked and a new one registered: both named at once
        plans = scene.plans
        new = DeviceSecrets.generate().public
        assert scene.ml.call("POST", "/api/v1/appareils", json={"key": new.record()})
        assert scene.ml.call("POST", f"/api/v1/appareils/{ml_key.key_id}/revocation")
        expected = {
            ("recipient_key", ml_key.key_id),
            ("recipient_device_missing", new.key_id),
        }
    body = scene.refused(scene.sealed(plans), "form_refused")
    assert {(r["code"], r["device"]) for r in body["refusals"]} == expected


@pytest.mark.parametrize("where", ["same_view", "two_views"])
def test_duplicate_recipients_are_refused(scene: Scene, where: str) -> None:
    data = scene.sealed()

    def twice(manifest: dict[str, Any]) -> None:
        view = manifest["views"][0]
        if where == "same_view":
            view["recipients"].append(dict(view["recipients"][0]))
        else:
            manifest["views"].append({**view, "id": "v2"})

    def copy_view(views: dict[str, str]) -> None:
        if where == "two_views":
            views["v2"] = views["v1"]

    resigned = _resigned(data, scene.spip.device, twice, views=copy_view)
    scene.refused(resigned, "duplicate_recipient")


def _person_device(app: Flask, email: str) -> DeviceSecrets:
    """A device key registered for a person (through the hub's service, as the pages will)."""
    from hub import liaison
    from hub.models import User

    device = DeviceSecrets.generate()
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        liaison.devices(session, state).register(
            device.public.record(), owner=liaison.user_owner(user), label="Portable"
        )
        session.commit()
    return device


def test_a_view_key_sealed_to_a_device_not_entitled_is_refused(
    scene: Scene, territory: dict[str, Account]
) -> None:
    # To the PJJ's system, which takes no part in the case
    pjj_key = scene.pjj.device.public
    plans = [ViewPlan(p.values, [*p.recipients, pjj_key]) for p in scene.plans]
    body = scene.refused(scene.sealed(plans), "form_refused")
    assert {(r["code"], r["device"]) for r in body["refusals"]} == {
        ("recipient_not_involved", pjj_key.key_id)
    }
    # To the Mission Locale référent's laptop: she follows the case, but may see none of these
    # fields for this purpose; each is named with its article
    laptop = _person_device(scene.app, territory["conseillere"].email).public
    plans = [ViewPlan(p.values, [*p.recipients, laptop]) for p in scene.plans]
    body = scene.refused(scene.sealed(plans), "form_refused")
    refused = [r for r in body["refusals"] if r["device"] == laptop.key_id]
    assert refused and {r["code"] for r in body["refusals"]} == {"recipient_not_entitled"}
    assert {r["field"] for r in refused} == set(scene.plans[0].values)
    assert all(r.get("article") for r in refused)


def test_a_manifest_naming_another_sender_is_refused(scene: Scene) -> None:
    data = scene.sealed()
    ml_owner = "client:" + scene.ml.call("GET", "/api/v1/moi").get_json()["client_id"]

    def impersonate(manifest: dict[str, Any]) -> None:
        manifest["sender"]["user"] = ml_owner

    scene.refused(_resigned(data, scene.spip.device, impersonate), "sender_mismatch")
    # Signed by the SPIP, sent by the Mission Locale: not its device
    scene.refused(data, "sender_device", by=scene.ml)


@pytest.mark.parametrize("forgery", ["foreign_signer", "altered_root", "ahead", "not_a_note"])
def test_a_checkpoint_the_directory_never_signed_is_refused(scene: Scene, forgery: str) -> None:
    data = scene.sealed()
    genuine = parse(data).manifest.directory
    note = SignedNote.parse(genuine)
    checkpoint = Checkpoint.parse_body(note.text)
    rogue = NoteSigner(checkpoint.origin, Ed25519PrivateKey.generate())
    if forgery == "foreign_signer":
        forged = str(rogue.sign_checkpoint(checkpoint))
    elif forgery == "altered_root":
        other = replace(checkpoint, root=bytes(32))
        forged = str(SignedNote(other.body(), note.signatures))
    elif forgery == "ahead":
        forged = str(rogue.sign_checkpoint(replace(checkpoint, size=checkpoint.size + 5)))
    else:
        forged = "rien de signé\n"

    def swap(manifest: dict[str, Any]) -> None:
        manifest["directory"] = forged

    body = scene.refused(_resigned(data, scene.spip.device, swap), "form_refused")
    assert [r["code"] for r in body["refusals"]] == ["checkpoint_unknown"]


# -- 3. a rigged hub caught by the client -------------------------------------------------------


@dataclass
class RiggedHub:
    """The hub's test client behind a compromised server that rewrites some answers:
    ``rewrites`` maps a path (without its query) to a change of the JSON answer."""

    inner: FlaskFetcher
    rewrites: dict[str, Callable[[Any], Any]]
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        self.calls.append((method, path))
        answer = self.inner(method, path, body=body, headers=headers)
        change = self.rewrites.get(path.split("?", 1)[0])
        if change is None or answer.status != 200:
            return answer
        return replace(answer, body=json.dumps(change(answer.json())).encode())


def _credentials(app: Flask, org_name: str) -> Credentials:
    key = Ed25519PrivateKey.generate()
    registered = parse_public_jwk(json.dumps(public_jwk(key)))
    with app.extensions["maillon"].session_factory() as session:
        org = session.scalar(select(Organisation).where(Organisation.name == org_name))
        client = ApiClient(
            organisation=org,
            name="Logiciel",
            public_jwk=registered.to_json(),
            key_id=registered.key_id,
        )
        session.add(client)
        session.commit()
        return Credentials(client.client_id, "http://localhost", key)


def _hub_client(app: Flask, clock: FakeClock, org_name: str, fetch: Fetcher) -> HubClient:
    return HubClient(fetch, _credentials(app, org_name), clock=clock)


def _substituted(kind: str, real: str, other: str) -> Callable[[Any], Any]:
    """The hub's answer about recipients with the Mission Locale's key ``real`` replaced by (or,
    for ``added``, completed with) ``other``."""

    def change(answer: Any) -> Any:
        for recipient in answer["recipients"]:
            if real in recipient["devices"]:
                devices = [d for d in recipient["devices"] if d != real]
                recipient["devices"] = [*devices, other] + ([real] if kind == "added" else [])
        return answer

    return change


@pytest.mark.parametrize("kind", ["unknown", "someone_elses", "revoked", "added"])
def test_a_hub_substituting_a_recipient_key_is_caught_before_sealing(
    scene: Scene, kind: str
) -> None:
    real = scene.ml.device.public.key_id
    if kind in ("unknown", "added"):
        other = DeviceSecrets.generate().public.key_id  # the hub's own, never published
    elif kind == "someone_elses":
        other = scene.pjj.device.public.key_id  # published, but for the PJJ's system
    else:
        spare = DeviceSecrets.generate().public
        assert scene.ml.call("POST", "/api/v1/appareils", json={"key": spare.record()})
        assert scene.ml.call("POST", f"/api/v1/appareils/{spare.key_id}/revocation")
        other = spare.key_id
    answer = scene.spip.call(
        "GET",
        f"/api/v1/dossiers/{scene.reference}/destinataires"
        f"?finalite={scene.purpose}&champs={','.join(E2E_FIELDS)}",
    ).get_json()
    rigged = _substituted(kind, real, other)(json.loads(json.dumps(answer)))
    replica = _synced(scene.spip)  # the client's own copy, verified against the signed root
    values = {f: "x" for f in E2E_FIELDS}
    with pytest.raises(VerificationError) as refused:
        plan_form(rigged, values, replica, scene.purpose)
    assert refused.value.code == "key_not_in_directory"
    # A hub hiding one of the recipient's keys does not keep it out: the client seals to every
    # key in force the directory holds for the owner the hub named
    second = DeviceSecrets.generate().public
    assert scene.ml.call("POST", "/api/v1/appareils", json={"key": second.record()})
    plan = plan_form(answer, values, _synced(scene.spip), scene.purpose)
    assert {k.key_id for v in plan.views for k in v.recipients} >= {real, second.key_id}


def test_the_client_sends_nothing_when_the_hub_substitutes_a_key(
    app: Flask,
    territory: dict[str, Account],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MAILLON_PASSPHRASE", "une phrase de passe assez longue")
    spip = _workspace(app, SPIP, tmp_path, "spip")
    _workspace(app, MISSION_LOCALE, tmp_path, "ml")
    honest = FlaskFetcher(app.test_client())
    form_file = tmp_path / "fiche.json"
    form_file.write_text(json.dumps({"contact.telephone": "06 12 34 56 78"}), encoding="utf-8")
    fake = DeviceSecrets.generate().public.key_id
    rigged = RiggedHub(
        honest,
        {
            f"/api/v1/dossiers/{_followed_case(app)}/destinataires": lambda answer: {
                **answer,
                "recipients": [
                    {**r, "devices": [fake]} if r["devices"] else r for r in answer["recipients"]
                ],
            }
        },
    )
    argv = ["send", "--case", _followed_case(app), "--purpose", "orientation", "--yes"]
    assert main([*spip, *argv, str(form_file)], fetcher=rigged) == 1
    assert "key_not_in_directory" in capsys.readouterr().err
    assert ("POST", "/api/v1/fiches") not in rigged.calls
    assert _stored(app) == (0, 0)
    # The honest hub's answer goes through
    assert main([*spip, *argv, str(form_file)], fetcher=honest) == 0
    assert _stored(app) == (1, 1)


def _swap_entry(index: int, entry: bytes) -> Callable[[Any], Any]:
    """A page of directory entries with the one at ``index`` replaced by ``entry``."""

    def change(page: Any) -> Any:
        at = index - int(page["start"])
        if 0 <= at < len(page["entries"]):
            page["entries"][at] = b64e(entry)
        return page

    return change


@pytest.mark.parametrize("rig", ["key_swapped", "revocation_hidden", "foreign_signer", "rollback"])
def test_a_rigged_directory_is_refused_by_the_replica(
    scene: Scene, territory: dict[str, Account], rig: str
) -> None:
    state = scene.app.extensions["maillon"]
    vkey = directory_signer(state).verifier().vkey()
    honest = FlaskFetcher(scene.app.test_client())
    # A system that verified the directory once, then syncs again after changes
    first = _hub_client(scene.app, scene.clock, SPIP, honest)
    replica, entries = first.sync(Directory.empty(vkey), [])
    ml_owner = replica.state(scene.ml.device.public.key_id)
    assert ml_owner is not None
    spare = DeviceSecrets.generate().public
    assert scene.ml.call("POST", "/api/v1/appareils", json={"key": spare.record()})
    assert scene.ml.call("POST", f"/api/v1/appareils/{spare.key_id}/revocation")
    newest = DeviceSecrets.generate().public
    assert scene.ml.call("POST", "/api/v1/appareils", json={"key": newest.record()})
    head = scene.spip.call("GET", "/api/v1/annuaire").get_json()
    size = int(head["size"])
    attacker = key_added(
        DeviceSecrets.generate().public, owner=ml_owner.owner, org=ml_owner.org, now=scene.clock()
    )
    rewrites: dict[str, Callable[[Any], Any]] = {}
    expected = ""
    if rig == "key_swapped":
        # The Mission Locale's newest key, in the entries, replaced by the hub's own for it
        rewrites["/api/v1/annuaire/entrees"] = _swap_entry(size - 1, attacker)
        expected = "fork"
    elif rig == "revocation_hidden":
        rewrites["/api/v1/annuaire/entrees"] = _swap_entry(size - 2, attacker)
        expected = "fork"
    elif rig == "foreign_signer":
        # The right entries, under a checkpoint signed by another key than the pinned one
        text = SignedNote.parse(head["checkpoint"]).text
        rogue = NoteSigner(Checkpoint.parse_body(text).origin, Ed25519PrivateKey.generate())
        note = str(SignedNote(text, (rogue.sign(text),)))
        rewrites["/api/v1/annuaire"] = lambda answer: {**answer, "checkpoint": note}
        expected = "checkpoint_invalid"
    else:
        older = _note_of_size(scene.app, replica.size - 1)
        rewrites["/api/v1/annuaire"] = lambda answer: {
            **answer,
            "checkpoint": older,
            "size": replica.size - 1,
        }
        expected = "rollback"
    client = _hub_client(scene.app, scene.clock, SPIP, RiggedHub(honest, rewrites))
    with pytest.raises(VerificationError) as refused:
        client.sync(replica, entries)
    assert refused.value.code == expected
    # What the replica trusts is unchanged, and the honest hub's entries still verify
    assert replica.size == len(entries) < size
    updated, _all = first.sync(replica, entries)
    assert updated.size == size and not updated.state(spare.key_id).current  # type: ignore[union-attr]


def test_a_split_view_is_caught_by_the_recipient_and_refused_by_the_relay(
    scene: Scene,
) -> None:
    state = scene.app.extensions["maillon"]
    signer = directory_signer(state)
    # The hub shows the SPIP a directory of the same size as the real one, where its last entry
    # (the PJJ's key) is replaced by a key of its own for the Mission Locale, and signs it
    honest = FlaskFetcher(scene.app.test_client())
    spip = _hub_client(scene.app, scene.clock, SPIP, honest)
    real, entries = spip.sync(Directory.empty(signer.verifier().vkey()), [])
    ml_state = real.state(scene.ml.device.public.key_id)
    assert ml_state is not None
    attacker = DeviceSecrets.generate()
    fake = key_added(attacker.public, owner=ml_state.owner, org=ml_state.org, now=scene.clock())
    forked_entries = [*entries[:-1], fake]
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in forked_entries])
    forked_note = str(
        signer.sign_checkpoint(Checkpoint(signer.name, len(forked_entries), root, scene.clock()))
    )
    shown = Directory.empty(signer.verifier().vkey()).update(forked_entries, forked_note)
    # The SPIP's client, which cannot tell, seals to every key it was shown for the ML
    answer = scene.spip.call(
        "GET",
        f"/api/v1/dossiers/{scene.reference}/destinataires"
        f"?finalite={scene.purpose}&champs={','.join(E2E_FIELDS)}",
    ).get_json()
    plan = plan_form(answer, {f: "x" for f in E2E_FIELDS}, shown, scene.purpose)
    sealed_to = {k.key_id for v in plan.views for k in v.recipients}
    assert sealed_to == {scene.ml.device.public.key_id, attacker.public.key_id}
    me = scene.spip.call("GET", "/api/v1/moi").get_json()
    data = seal_plan(
        plan,
        secrets=scene.spip.device,
        sender=f"client:{me['client_id']}",
        org=me["organisation"]["id"],
        directory_note=forked_note,
        now=scene.clock(),
    )
    # The Mission Locale, handed the form, opens its view but sees the split and refuses it
    ml_replica = _synced(scene.ml)
    assert ml_replica.size == len(forked_entries)
    with pytest.raises(VerificationError) as refused:
        open_received(data, secrets=scene.ml.device, replica=ml_replica)
    assert refused.value.code == "split_view"
    # And an honest relay refuses it outright: a key it never published, a checkpoint it never
    # signed as such
    body = scene.refused(data, "form_refused")
    assert {(r["code"], r.get("device", "")) for r in body["refusals"]} == {
        ("recipient_key", attacker.public.key_id),
        ("checkpoint_unknown", ""),
    }
