"""The demo territory: partners, people with every role, an operational group.

For development and tests only: passwords and TOTP secrets are written in clear to a file.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.events import Action
from charter import Decision, default_charter_text
from charter.vocabulary import OrgKind, Role
from consent import Actor, EvidenceKind, Grantor, InformationMethod, Scope, Upload
from hub import totp
from hub.accounts import Accounts
from hub.cases import Cases, articles, charter_ref
from hub.charters import Charters
from hub.models import (
    Case,
    CharterVersion,
    GroupMembership,
    OperationalGroup,
    Organisation,
    User,
)
from hub.vault import FieldVault

TERRITORY = "Communauté d'agglomération de Démoville"
GROUP_NAME = "Groupe opérationnel du CLSPD de Démoville"

ORGANISATIONS: list[tuple[str, OrgKind]] = [
    ("Ville de Démoville — CLSPD", OrgKind.COMMUNE),
    ("SPIP de Démoville", OrgKind.SPIP),
    ("Mission Locale de Démoville", OrgKind.MISSION_LOCALE),
    ("PJJ — UEMO de Démoville", OrgKind.PJJ),
    ("Association de prévention spécialisée Le Relais", OrgKind.PREVENTION_SPECIALISEE),
    ("Démoville Habitat", OrgKind.BAILLEUR),
]

# (name, email, organisation index, roles, sits in the group)
PEOPLE: list[tuple[str, str, int, set[Role], bool]] = [
    (
        "Claire Coordination",
        "coordinatrice@demoville.example",
        0,
        {Role.COORDINATOR, Role.GROUP_MEMBER},
        True,
    ),
    ("Paul Probation", "cpip@demoville.example", 1, {Role.AGENT, Role.GROUP_MEMBER}, True),
    (
        "Mina Conseil",
        "conseillere@demoville.example",
        2,
        {Role.AGENT, Role.REFERENT, Role.GROUP_MEMBER},
        True,
    ),
    ("Jules Éducation", "educateur@demoville.example", 3, {Role.AGENT, Role.GROUP_MEMBER}, True),
    ("Sofia Rue", "educatrice-rue@demoville.example", 4, {Role.AGENT}, False),
    ("Hugo Logement", "logement@demoville.example", 5, {Role.AGENT}, False),
    ("Dominique Protection", "dpo@demoville.example", 0, {Role.DPO}, False),
    ("Alex Admin", "admin@demoville.example", 0, {Role.ADMIN}, False),
]


@dataclass(frozen=True)
class DemoAccount:
    """One demo account as written to the ``--out`` file."""

    email: str
    password: str
    totp_secret: str
    name: str
    organisation: str
    organisation_kind: str
    roles: list[str]


@dataclass(frozen=True)
class DemoAct:
    """Something the demo's people did while it was seeded, to be recorded in the audit log
    as the page that does it records it (actor, object, purpose, articles, charter version):
    the log and the annual review then show the demo's signatures and cases."""

    action: Action
    actor: User
    object_type: str
    object_id: str
    purpose: str = ""
    rule: str = ""
    charter_version: str = ""


def seed_demo(
    session: Session,
    accounts: Accounts,
    *,
    now: datetime,
    vault: FieldVault,
    keep: Mapping[str, tuple[str, str]] | None = None,
    acts: list[DemoAct] | None = None,
) -> list[DemoAccount]:
    """Create the demo territory (idempotent: an existing demo is reset, unlocked and logged
    out). ``keep`` maps e-mail addresses to the ``(password, TOTP secret)`` a previous run
    gave out: an existing account keeps them (the phone enrolled yesterday still works); new
    accounts, and accounts the previous run did not list, get fresh ones.

    The first time, it also opens three cases (pseudonymous, dates only) and schedules the
    group's monthly reviews, so that every page has something to show.
    """
    orgs: list[Organisation] = []
    for name, kind in ORGANISATIONS:
        org = session.scalar(select(Organisation).where(Organisation.name == name))
        orgs.append(org or accounts.create_organisation(name, kind))
    created: list[DemoAccount] = []
    members: list[User] = []
    coordinator: User | None = None
    for name, email, org_index, roles, in_group in PEOPLE:
        existing = accounts.by_email(email)
        user = existing or accounts.create_user(
            name=name, email=email, organisation=orgs[org_index], roles=roles
        )
        kept = (keep or {}).get(email) if existing is not None else None
        password, secret = kept or (secrets.token_urlsafe(12), totp.new_secret())
        user.password_hash = accounts.passwords.hash(password)
        user.totp_secret = secret
        user.totp_last_step = None
        user.active = True
        user.failed_logins = 0
        user.locked_until = None
        user.password_changed_at = now
        accounts.end_all_sessions(user)
        if in_group:
            members.append(user)
        if Role.COORDINATOR in roles:
            coordinator = user
        created.append(
            DemoAccount(
                email=email,
                password=password,
                totp_secret=secret,
                name=name,
                organisation=orgs[org_index].name,
                organisation_kind=orgs[org_index].kind.value,
                roles=sorted(r.value for r in roles),
            )
        )
    group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
    if group is None:
        group = OperationalGroup(name=GROUP_NAME, territory=TERRITORY, created_at=now)
        session.add(group)
    group.coordinator = coordinator
    present = {m.user_id for m in group.memberships}
    for user in members:
        if user.id not in present:
            group.memberships.append(GroupMembership(user=user, added_at=now))
    session.flush()
    done = acts if acts is not None else []
    _charter_in_force(session, group, coordinator, members, now, acts=done)
    if session.scalar(select(Case.id).where(Case.group_id == group.id).limit(1)) is None:
        _demo_cases(Cases(session, clock=lambda: now, vault=vault), group, now, done)
    return created


def _demo_cases(cases: Cases, group: OperationalGroup, now: datetime, acts: list[DemoAct]) -> None:
    """Three young people at different steps; only what the hub may hold, no names. Each act
    goes through the service a page uses, and is listed in ``acts`` to be recorded."""

    def decided(
        action: Action,
        by: User,
        case: Case,
        decision: Decision,
        version: CharterVersion,
        *,
        purpose: str = "",
    ) -> None:
        """An act on a case, with the articles and charter version that decided it."""
        acts.append(
            DemoAct(
                action,
                by,
                "case",
                case.reference,
                purpose=purpose,
                rule=articles(decision.reasons),
                charter_version=charter_ref(version),
            )
        )

    def opened(case: Case, by: User, decision: Decision, version: CharterVersion) -> None:
        decided(Action.CASE_CREATE, by, case, decision, version, purpose="reperage")

    def published(case: Case, by: User, values: dict[str, str]) -> None:
        ctx = cases.context(case, by)
        decided(Action.CASE_UPDATE, by, case, cases.publish(ctx, values), ctx.version)

    by_email = {m.user.email: m.user for m in group.memberships}
    cpip = by_email["cpip@demoville.example"]
    educateur = by_email["educateur@demoville.example"]
    conseillere = by_email["conseillere@demoville.example"]
    coordinator = group.coordinator
    assert coordinator is not None
    today = now.date()

    def day(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    # Released in about three months: the Mission Locale référent prepares the exit. The young
    # man agreed three weeks ago (information, accord, then the tripartite contract), so the
    # SPIP could share the dates of his measure.
    followed, decision, version = cases.open_case(
        group, cpip, {"identite.date_naissance": "2005-05-12"}
    )
    opened(followed, cpip, decision, version)
    ctx = cases.context(followed, coordinator)
    decision = cases.name_referent(ctx, conseillere)
    decided(Action.CASE_REFERENT, coordinator, followed, decision, ctx.version)
    demo_consent(cases, followed, conseillere, today - timedelta(days=20), 345)
    acts.append(DemoAct(Action.CONSENT_RECORD, conseillere, "case", followed.reference))
    published(followed, cpip, {"justice.date_sortie": day(95), "justice.date_fin_mesure": day(460)})
    published(followed, conseillere, {"parcours.date_entree": day(-20)})
    cases.consents.record_adhesion(
        followed.id,
        Actor(conseillere.id, conseillere.organisation_id),
        signed_on=today - timedelta(days=19),
        counsellor_id=cpip.id,
        referent_id=conseillere.id,
        evidence=Upload(EvidenceKind.SCAN, DEMO_SCAN),
        sealer=cases.vault.for_case(followed.wrapped_key, followed.reference),
    )
    acts.append(DemoAct(Action.CONSENT_ADHESION, conseillere, "case", followed.reference))
    # Just signalled by the SPIP; the young man has not been asked for his accord yet, so
    # nothing resting on it is shared (fail closed) and the group has not decided.
    signalled, decision, version = cases.open_case(
        group, cpip, {"identite.date_naissance": "2004-03-15"}
    )
    opened(signalled, cpip, decision, version)
    # A minor followed by the PJJ in open custody: he and one parent agreed (the other parent is
    # not informed: documented exception, flagged to the DPO); his accord runs out this month.
    minor, decision, version = cases.open_case(
        group, educateur, {"identite.date_naissance": "2009-09-01"}
    )
    opened(minor, educateur, decision, version)
    demo_consent(cases, minor, educateur, today - timedelta(days=340), 365, parents=True)
    acts.append(DemoAct(Action.CONSENT_RECORD, educateur, "case", minor.reference))
    published(minor, educateur, {"justice.date_fin_mesure": day(150)})
    # Last month's meeting already held (the review window starts there), then the next two.
    for offset in (-28, 2, 30):
        cases.add_meeting(group, coordinator, today + timedelta(days=offset), held=offset < 0)
        acts.append(DemoAct(Action.GROUP_MEETING, coordinator, "group", group.public_id))


# A stand-in for a scanned signed form (a PDF header is all the demo needs).
DEMO_SCAN = b"%PDF-1.4\n% Maillon - formulaire de consentement signe (demonstration)\n%%EOF\n"


def demo_consent(
    cases: Cases,
    case: Case,
    professional: User,
    informed_on: date,
    valid_days: int,
    *,
    parents: bool = False,
) -> None:
    """Inform the young person (and, for a minor, the parents), then record their accords over
    every purpose and category of the charter, towards every partner of the group."""
    ctx = cases.context(case, professional)
    charter, rules = ctx.charter, ctx.consent_rules
    actor = Actor(professional.id, professional.organisation_id)
    sealer = cases.vault.for_case(case.wrapped_key, case.reference)
    birth = cases.birth_date(case, rules)
    scope = Scope(
        purposes=charter.purpose_ids,
        categories=frozenset(charter.consent_category_ids),
        recipient_orgs=frozenset(o.id for o in cases.charters.partners(case.group)),
    )
    grantors = [Grantor.YOUNG_PERSON] + ([Grantor.PARENT_1] if parents else [])
    for grantor in grantors:
        cases.consents.inform(
            case.id,
            actor,
            subject=grantor,
            rules=rules,
            birth=birth,
            method=InformationMethod.IN_PERSON,
            informed_on=informed_on,
        )
        cases.consents.record_consent(
            case.id,
            actor,
            grantor=grantor,
            given=True,
            scope=scope,
            valid_from=informed_on,
            valid_until=informed_on + timedelta(days=valid_days),
            rules=rules,
            birth=birth,
            purposes=charter.purpose_ids,
            categories=charter.consent_category_ids,
            charter_version=f"{ctx.version.charter_id}:{ctx.version.version}",
            evidence=Upload(EvidenceKind.SCAN, DEMO_SCAN),
            sealer=sealer,
        )
    if parents:
        cases.consents.inform(
            case.id,
            actor,
            subject=Grantor.PARENT_2,
            rules=rules,
            birth=birth,
            exception=True,
            justification=(
                "Le second parent n'exerce plus de lien avec l'enfant depuis une décision du "
                "juge des enfants ; l'informer l'exposerait (exemple de démonstration)."
            ),
            sealer=sealer,
        )


def _charter_in_force(
    session: Session,
    group: OperationalGroup,
    coordinator: User | None,
    members: list[User],
    now: datetime,
    *,
    acts: list[DemoAct],
) -> None:
    """Publish the default charter in the demo group and have every partner sign it."""
    charters = Charters(session, clock=lambda: now)
    version = charters.latest(group)
    if version is None:
        version = charters.publish(group, default_charter_text(), by=coordinator)
        if coordinator is not None:
            acts.append(_charter_act(Action.CHARTER_PUBLISH, coordinator, group, version.version))
    for member in members:
        if charters.signature_of(version, member.organisation) is None:
            charters.sign(
                version,
                member.organisation,
                signatory=f"{member.name}, pour {member.organisation.name}",
                by=member,
            )
            acts.append(_charter_act(Action.CHARTER_SIGN, member, group, version.version))


def _charter_act(action: Action, by: User, group: OperationalGroup, number: int) -> DemoAct:
    """A charter act, named as the charter pages record it."""
    return DemoAct(
        action, by, "charter", f"{group.public_id}:v{number}", charter_version=str(number)
    )


def accounts_as_json(accounts: list[DemoAccount]) -> list[dict[str, object]]:
    """The demo accounts as JSON-ready dicts."""
    return [asdict(a) for a in accounts]
