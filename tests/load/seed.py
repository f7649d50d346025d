"""Seed a load-test territory into the databases named by the ``MAILLON_*`` environment.

The demo territory (``hub.demo.seed_demo``), then what a load needs on top of it: one account
per simulated person (a TOTP code is accepted once per account and time step, and a logout ends
every session of the account, so simulated people never share one), consented cases that the
partners may read and write, and API clients of the SPIP. Everything goes through the hub's own
services, as ``flask --app hub demo`` does; that command refuses production settings, this module
is for throw-away load databases only.

Usage: ``python -m tests.load.seed --out FILE [--partners N] [--dpos N] [--cases N]
[--api-clients N]``. FILE (mode 0600) holds passwords, TOTP secrets and API private keys.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from charter.vocabulary import Role
from hub import create_app, totp
from hub.accounts import Accounts
from hub.api_auth import parse_public_jwk, public_jwk
from hub.cases import Cases
from hub.charters import charter_of
from hub.demo import GROUP_NAME, ORGANISATIONS, demo_consent, seed_demo
from hub.models import (
    ApiClient,
    Case,
    CharterVersion,
    GroupMembership,
    OperationalGroup,
    Organisation,
    User,
)
from hub.state import HubState
from tests.load.territory import (
    LoadAccount,
    LoadApiClient,
    LoadTerritory,
    write_private,
)

# Date fields a load writes: no date of birth (it decides whose consent is needed and is frozen
# once the young person is informed) and no exit (it moves the case to its last step).
WRITABLE_FIELDS = ("justice.date_sortie", "justice.date_fin_mesure", "parcours.date_entree")
# Organisations whose agents the simulated partners are (indexes into hub.demo.ORGANISATIONS):
# the SPIP, the Mission Locale, the PJJ and the commune, in turn.
PARTNER_ORGS = (1, 2, 3, 0)
SPIP = 1
PERSON_PREFIX = "Charge"
Named = TypeVar("Named", Organisation, OperationalGroup)


def _new_person(
    accounts: Accounts,
    *,
    name: str,
    email: str,
    organisation: Organisation,
    roles: set[Role],
) -> tuple[User, str]:
    """An active account with a password and an enrolled TOTP secret (as after activation)."""
    user = accounts.create_user(name=name, email=email, organisation=organisation, roles=roles)
    password = secrets.token_urlsafe(12)
    user.password_hash = accounts.passwords.hash(password)
    user.totp_secret = totp.new_secret()
    user.password_changed_at = accounts.clock()
    return user, password


def _writable(cases: Cases, org: Organisation, group: OperationalGroup, case: Case) -> list[str]:
    """The load's date fields ``org`` may record on a consented ``case`` right now."""
    allowed = {f.id for f in cases.publishable(org, group, None, case)}
    return [f for f in WRITABLE_FIELDS if f in allowed]


def seed(
    hub_state: HubState,
    *,
    partners: int,
    dpos: int,
    case_count: int,
    api_clients: int,
) -> LoadTerritory:
    """Create the demo territory and the load's people, cases and API clients."""
    now = hub_state.clock()
    today = now.date()
    with hub_state.session_factory() as session:
        accounts = hub_state.accounts(session)
        seed_demo(session, accounts, now=now, vault=hub_state.vault)
        session.commit()
        group = _one(session, OperationalGroup, GROUP_NAME)
        orgs = [_one(session, Organisation, name) for name, _kind in ORGANISATIONS]
        cases = hub_state.cases(session)
        cpip = accounts.by_email("cpip@demoville.example")
        referent = accounts.by_email("conseillere@demoville.example")
        assert cpip is not None and referent is not None and group.coordinator is not None
        references = _open_cases(session, cases, group, (cpip, referent), case_count, today)
        first = cases.by_reference(references[0])
        assert first is not None
        charter = charter_of(_version(cases, group, orgs[SPIP]))
        case_purposes = {}
        for reference in references:
            case = cases.by_reference(reference)
            assert case is not None
            case_purposes[reference] = [p.id for p in charter.purposes if p.applies_to(case.status)]
        writable = {org.id: _writable(cases, org, group, first) for org in orgs}

        people: list[LoadAccount] = []
        for index in range(partners):
            org = orgs[PARTNER_ORGS[index % len(PARTNER_ORGS)]]
            roles = {Role.AGENT, Role.GROUP_MEMBER}
            user, password = _new_person(
                accounts,
                name=f"{PERSON_PREFIX} {index:03d}",
                email=f"partenaire-{index:03d}@charge.example",
                organisation=org,
                roles=roles,
            )
            group.memberships.append(GroupMembership(user=user, added_at=now))
            people.append(_account(user, password, org, roles, writable[org.id]))
        overseers: list[LoadAccount] = []
        for index in range(dpos):
            user, password = _new_person(
                accounts,
                name=f"DPO {index:03d}",
                email=f"dpo-{index:03d}@charge.example",
                organisation=orgs[0],
                roles={Role.DPO},
            )
            overseers.append(_account(user, password, orgs[0], {Role.DPO}, []))
        systems = [
            _api_client(session, orgs[SPIP], index, writable[orgs[SPIP].id])
            for index in range(api_clients)
        ]
        session.commit()
    return LoadTerritory(
        base_url=hub_state.config.base_url,
        today=today.isoformat(),
        purposes=list(charter.purpose_ids),
        cases=references,
        partners=people,
        dpos=overseers,
        api_clients=systems,
        case_purposes=case_purposes,
    )


def _one(session: Session, model: type[Named], name: str) -> Named:
    found = session.scalar(select(model).where(model.name == name))
    if found is None:
        raise SystemExit(f"seed: {model.__name__} {name!r} is missing after the demo seeding")
    return found


def _version(cases: Cases, group: OperationalGroup, org: Organisation) -> CharterVersion:
    version = cases.charters.applicable(group, org)
    assert version is not None, "the demo's SPIP signed the charter"
    return version


def _open_cases(
    session: Session,
    cases: Cases,
    group: OperationalGroup,
    people: tuple[User, User],
    count: int,
    today: date,
) -> list[str]:
    """``count`` cases signalled by the SPIP, each with an adult's accord (information, accord
    over every purpose, category and partner), so that every partner may read and write. Four
    in five are followed (the group named the Mission Locale's référent: step ``suivi``), the
    others wait for the group's decision (step ``reperage``)."""
    cpip, referent = people
    coordinator = group.coordinator
    assert coordinator is not None
    references: list[str] = []
    for index in range(count):
        born = date(2000, 1, 1) + timedelta(days=(index * 37) % 2190)
        case, _decision, _version = cases.open_case(
            group, cpip, {"identite.date_naissance": born.isoformat()}
        )
        demo_consent(cases, case, cpip, today - timedelta(days=10), 365)
        if index % 5 != 4:
            cases.name_referent(cases.context(case, coordinator), referent)
        references.append(case.reference)
        if index % 50 == 49:
            session.commit()
    session.commit()
    return references


def _account(
    user: User, password: str, org: Organisation, roles: set[Role], writable: list[str]
) -> LoadAccount:
    assert user.totp_secret is not None
    return LoadAccount(
        email=user.email,
        password=password,
        totp_secret=user.totp_secret,
        organisation=org.name,
        kind=org.kind.value,
        roles=sorted(r.value for r in roles),
        writable=writable,
    )


def _api_client(
    session: Session, org: Organisation, index: int, writable: list[str]
) -> LoadApiClient:
    """Register an Ed25519 client for ``org`` (as ``flask --app hub api-client register``)."""
    key = Ed25519PrivateKey.generate()
    parsed = parse_public_jwk(json.dumps(public_jwk(key)))
    client = ApiClient(
        organisation=org,
        name=f"Logiciel de charge {index:03d}",
        public_jwk=parsed.to_json(),
        key_id=parsed.key_id,
    )
    session.add(client)
    session.flush()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return LoadApiClient(
        client_id=client.client_id, private_key_pem=pem, organisation=org.name, writable=writable
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: seed, then write the territory to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--partners", type=int, default=60)
    parser.add_argument("--dpos", type=int, default=6)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--api-clients", type=int, default=6)
    args = parser.parse_args(argv)
    app = create_app()
    with app.app_context():
        territory = seed(
            app.extensions["maillon"],
            partners=args.partners,
            dpos=args.dpos,
            case_count=args.cases,
            api_clients=args.api_clients,
        )
    write_private(args.out, asdict(territory))
    print(
        f"seed: {len(territory.cases)} cases, {len(territory.partners)} partners, "
        f"{len(territory.dpos)} DPOs, {len(territory.api_clients)} API clients -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
