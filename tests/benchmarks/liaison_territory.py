"""The demo territory set up for the liaison-form benchmarks (not a benchmark itself).

One case of the demo (the young man the SPIP and the Mission Locale follow), the SPIP's system
as sender, and ten recipient devices spread over everyone who may receive a form on that case
for ``suivi_parcours``: the Mission Locale's system, the référent, the coordinator and the SPIP
counsellor named on the team — several devices each, as people with a laptop and a phone. The
hub decides who may see which field (:func:`hub.liaison.candidates`, the function the API's
``destinataires`` answers with), so each owner gets its own view and a form holds one view per
owner, as the real client would seal it.

Both the in-process and the HTTP benchmarks use this: :func:`prepare` writes into a ``var``
directory that ``gunicorn`` can then serve with the same environment.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import select

from audit.events import Action, Decision, NewEvent, hash_ip
from exchange.envelope import CharterRef, ViewPlan, seal
from exchange.keys import DeviceKey, DeviceSecrets
from exchange.server.devices import Owner
from hub import create_app, liaison, migrate
from hub.api_auth import ASSERTION_TYPE, parse_public_jwk, public_jwk
from hub.config import load_config
from hub.demo import seed_demo
from hub.models import ApiClient, Case, Organisation, User
from hub.state import HubState

SENDER_ORG = "SPIP de Démoville"
RECIPIENT_ORG = "Mission Locale de Démoville"
PURPOSE = "suivi_parcours"
RECIPIENT_DEVICES = 10
# A realistic form: identity, contact, the measure, training, housing, the programme.
FORM_FIELDS = (
    "contact.telephone",
    "formation_emploi.situation",
    "identite.nom",
    "identite.prenom",
    "justice.date_sortie",
    "justice.service_suivi",
    "justice.statut",
    "logement.situation",
    "parcours.contrat",
    "parcours.etapes",
    "parcours.referent",
    "sortie.date",
)


def bench_env(var: Path, port: int) -> dict[str, str]:
    """The environment of a development hub on ``var`` served on loopback ``port``.

    Rate limiting is off: ``POST /api/v1/fiches`` allows 120 sends a minute per client address,
    and every request of a benchmark comes from 127.0.0.1 (the limiter's cost on a request is
    a dictionary lookup in memory; the figures would otherwise measure 429 answers). Argon2 is
    cheap: it only hashes the demo accounts' passwords at setup, and nobody logs in.
    """
    return {
        **os.environ,
        "MAILLON_VAR_DIR": str(var),
        "MAILLON_ENV": "development",
        "MAILLON_BASE_URL": f"http://127.0.0.1:{port}",
        "MAILLON_RATELIMIT_ENABLED": "false",
        "MAILLON_ARGON2_TIME_COST": "1",
        "MAILLON_ARGON2_MEMORY_KIB": "1024",
        "MAILLON_ARGON2_PARALLELISM": "1",
    }


@dataclass
class Territory:
    """Everything a benchmark needs to seal, send and record forms on the prepared hub."""

    app: Flask
    sender: DeviceSecrets
    client_row: int
    client_id: str
    client_key: Ed25519PrivateKey
    org: str
    case: str
    charter: CharterRef
    plans: list[ViewPlan]
    directory: str

    @property
    def state(self) -> HubState:
        """The hub's state (engines, audit log, clock)."""
        hub_state: HubState = self.app.extensions["maillon"]
        return hub_state

    @property
    def recipients(self) -> int:
        """How many recipient devices a form goes to."""
        return sum(len(plan.recipients) for plan in self.plans)

    def seal(self) -> bytes:
        """A new sealed form (fresh form id) to every planned recipient, as sent."""
        return seal(
            secrets=self.sender,
            user=f"client:{self.client_id}",
            org=self.org,
            case=self.case,
            charter=self.charter,
            consent=None,
            purpose=PURPOSE,
            directory=self.directory,
            views=self.plans,
            now=datetime.now(UTC),
        ).to_bytes()

    def send_event(self, form: str) -> NewEvent:
        """The audit event the hub's view appends for an accepted form (``record`` with the
        API client as actor, from loopback)."""
        return NewEvent(
            action=Action.FORM_SEND,
            actor_user=f"client:{self.client_id}",
            actor_org=self.org,
            object_type="case",
            object_id=self.case,
            purpose=PURPOSE,
            decision=Decision.ALLOW,
            rule=form,
            charter_version="",
            request_id=secrets.token_hex(12),
            ip_hash=hash_ip(self.state.config.ip_hash_key, "127.0.0.1"),
        )

    def assertion(self, audience: str) -> str:
        """A signed client assertion (RFC 7523) of the sender's API client for ``audience``."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "exp": now + 120,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        signing_input = (
            f"{_b64(json.dumps({'alg': 'Ed25519', 'typ': 'JWT'}).encode())}."
            f"{_b64(json.dumps(claims).encode())}"
        )
        return f"{signing_input}.{_b64(self.client_key.sign(signing_input.encode()))}"

    def token_form(self, audience: str) -> dict[str, str]:
        """The body of a token request (client credentials with a signed assertion)."""
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(audience),
        }

    def dispose(self) -> None:
        """Close the hub's database engines."""
        self.state.engine.dispose()
        self.state.audit_engine.dispose()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _api_client(session: Any, org_name: str) -> tuple[ApiClient, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    registered = parse_public_jwk(json.dumps(public_jwk(key)))
    org = session.scalar(select(Organisation).where(Organisation.name == org_name))
    client = ApiClient(
        organisation=org,
        name=f"Banc d'essai {org_name}",
        public_jwk=registered.to_json(),
        key_id=registered.key_id,
    )
    session.add(client)
    session.flush()
    return client, key


def prepare(env: Mapping[str, str]) -> Territory:
    """Migrate and seed the hub of ``env`` (see :func:`bench_env`), register the API clients
    and the devices, and plan the ten-recipient form."""
    app = create_app(load_config(env))
    hub_state: HubState = app.extensions["maillon"]
    hub_state.config.var_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(hub_state.engine)
    hub_state.audit_log.create_schema()
    with app.app_context(), hub_state.session_factory() as session:
        seed_demo(
            session, hub_state.accounts(session), now=hub_state.clock(), vault=hub_state.vault
        )
        session.commit()
        sender_client, sender_key = _api_client(session, SENDER_ORG)
        _api_client(session, RECIPIENT_ORG)
        session.commit()
        case = session.scalar(select(Case).order_by(Case.id).limit(1))
        assert case is not None
        service = hub_state.cases(session)
        index = liaison.devices(session, hub_state)
        sender = DeviceSecrets.generate()
        index.register(
            sender.public.record(), owner=liaison.client_owner(sender_client), label="Serveur"
        )
        found = [
            c
            for c in liaison.candidates(
                service, hub_state, case, sender_client, purpose=PURPOSE, fields=FORM_FIELDS
            )
            if c.fields  # those who take part but may receive none of them get no view
        ]
        if not found:
            raise RuntimeError("nobody may receive the benchmark's form on the demo case")
        # Spread the recipient devices over the owners the hub names, round robin.
        keys: dict[str, list[DeviceKey]] = {c.owner: [] for c in found}
        owners = {c.owner: _owner(session, c.owner) for c in found}
        for n in range(RECIPIENT_DEVICES):
            name = found[n % len(found)].owner
            device = DeviceSecrets.generate().public
            index.register(device.record(), owner=owners[name], label=f"Appareil {n}")
            keys[name].append(device)
        session.commit()
        values = {f: f"valeur de démonstration pour {f}" for f in FORM_FIELDS}
        plans = [
            ViewPlan(
                {f: values[f] for f in c.fields}, sorted(keys[c.owner], key=lambda d: d.key_id)
            )
            for c in found
        ]
        ctx = service.context_for_organisation(case, sender_client.organisation)
        version = ctx.version
        territory = Territory(
            app=app,
            sender=sender,
            client_row=sender_client.id,
            client_id=sender_client.client_id,
            client_key=sender_key,
            org=sender_client.organisation.public_id,
            case=case.reference,
            charter=CharterRef(version.charter_id, version.version, version.digest),
            plans=plans,
            directory=liaison.directory_log(session, hub_state).checkpoint(),
        )
    assert territory.recipients == RECIPIENT_DEVICES
    return territory


def _owner(session: Any, name: str) -> Owner:
    kind, public_id = name.split(":", 1)
    if kind == "user":
        user = session.scalar(select(User).where(User.public_id == public_id))
        return liaison.user_owner(user)
    client = session.scalar(select(ApiClient).where(ApiClient.client_id == public_id))
    return liaison.client_owner(client)


def sealed_forms(territory: Territory, count: int) -> list[bytes]:
    """``count`` distinct sealed forms (each send needs its own form id)."""
    return [territory.seal() for _ in range(count)]
