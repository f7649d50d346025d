"""Cases and the need-to-know views of what the hub holds about them (DESIGN §2.2, §9).

A case is known to the hub by a pseudonymous reference. The hub holds only the charter's tier
``hub`` fields (dates for alerts, référent, exit for indicators), sealed at rest by
:class:`hub.vault.FieldVault`; everything else travels in sealed liaison forms.

Every read goes through the charter: :meth:`Cases.context` decides whether the person takes part
in the case at all (need-to-know) and as what, then :meth:`Cases.view` asks the compiled charter
which fields that recipient may see for the stated purpose, field by field, with the publisher's
kind and declinations and the group's meeting dates. Refused fields are never opened, never
returned. Every write goes through the charter's publish decision for the writer's organisation.
The callers (pages, API) record the decision and its articles in the audit log before they
answer.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, false, or_, select
from sqlalchemy.orm import Session, joinedload, lazyload

from audit.events import IDENT
from charter import Charter, Decision, Declination, Reason, Recipient
from charter.model import FieldDef, Purpose
from charter.vocabulary import OrgKind, Role, Secrecy, Tier
from consent import (
    MAX_EVIDENCE_BYTES,
    ConsentRecords,
    ConsentRules,
    ConsentState,
    RecipientOrg,
    local_day,
    may_record,
    may_view,
)
from hub.charters import Charters, charter_of, compiled
from hub.dates import LATEST, in_range, out_of_range_message, read_day
from hub.i18n import N_, MessageError
from hub.models import (
    Case,
    CaseField,
    CaseMember,
    CasePartner,
    CharterDeclination,
    CharterVersion,
    GroupMeeting,
    GroupMembership,
    OperationalGroup,
    Organisation,
    User,
    UserRole,
)
from hub.vault import FieldVault, VaultError

MAX_VALUE_LENGTH = 200
EXIT_CATEGORY = "sortie"  # catalogue fields sortie.* record the exit from the programme
EXIT_TYPE_FIELD = "sortie.type"
REFERENT_NAME_FIELD = "parcours.referent"
# Exit types as the national sheets count « sorties positives » (a job, a qualifying training,
# an integration programme), then the rest: stable values, labels for people.
EXIT_TYPES: tuple[tuple[str, str], ...] = (
    ("emploi", N_("Emploi (CDI ou CDD)")),
    ("formation_qualifiante", N_("Formation qualifiante")),
    (
        "dispositif_insertion",
        N_("Dispositif d'insertion (contrat d'engagement jeune, chantier d'insertion…)"),
    ),
    ("autre", N_("Autre sortie")),
)
MAX_VALUES = 50  # more than a catalogue holds: a forged form, refused before any decision
MAX_AGE = 100  # a date of birth further back is a typing error
BIRTH_EARLIEST = date(1900, 1, 1)
# Crockford's base 32 without the look-alikes I, L, O, U: references are read out on the phone.
_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# The statements of a read of a case (every page view and API read runs them), built once and
# run through Core where no ORM object is needed (DESIGN §11).
_case_fields = CaseField.__table__
_organisations = Organisation.__table__
_meetings = GroupMeeting.__table__
_declinations = CharterDeclination.__table__
_users = User.__table__
_user_roles = UserRole.__table__
_case_partners = CasePartner.__table__
_case_members = CaseMember.__table__
_group_members = GroupMembership.__table__
# The case and its group in one statement; partners and team load only when a page lists them.
_BY_REFERENCE = (
    select(Case)
    .where(Case.reference == bindparam("reference"))
    .options(joinedload(Case.group), lazyload(Case.partners), lazyload(Case.members))
)
# A person's part in a case: member of its group, named on its team, organisation following it.
_follows = exists().where(
    _case_partners.c.case_id == bindparam("case_id"),
    _case_partners.c.organisation_id == bindparam("org_id"),
)
_PART = select(
    exists()
    .where(
        _group_members.c.group_id == bindparam("group_id"),
        _group_members.c.user_id == bindparam("user_id"),
    )
    .label("member"),
    exists()
    .where(
        _case_members.c.case_id == bindparam("case_id"),
        _case_members.c.user_id == bindparam("user_id"),
    )
    .label("on_team"),
    _follows.label("follows"),
)
_FOLLOWS = select(_follows)
# Stored values with their publisher's kind (the view decision depends on it).
_STORED = (
    select(
        _case_fields.c.field_id,
        _case_fields.c.ciphertext,
        _case_fields.c.published_by_org_id,
        _organisations.c.kind,
    )
    .join(_organisations, _organisations.c.id == _case_fields.c.published_by_org_id)
    .where(_case_fields.c.case_id == bindparam("case_id"))
)
_STORED_ONE = select(_case_fields.c.ciphertext).where(
    _case_fields.c.case_id == bindparam("case_id"),
    _case_fields.c.field_id == bindparam("field_id"),
)
_MEETINGS = (
    select(_meetings.c.meets_on)
    .where(_meetings.c.group_id == bindparam("group_id"))
    .order_by(_meetings.c.meets_on)
)
_DECLINATIONS = (
    select(
        _declinations.c.organisation_id,
        _declinations.c.field_glob,
        _declinations.c.reason,
        _declinations.c.recorded_at,
    )
    .where(
        _declinations.c.group_id == bindparam("group_id"),
        _declinations.c.withdrawn_at.is_(None),
    )
    .order_by(_declinations.c.recorded_at)
)
_DECLINATIONS_OF = _DECLINATIONS.where(_declinations.c.organisation_id == bindparam("org_id"))
_TEAM_PARTNERS = (
    select(_organisations.c.id, _organisations.c.name)
    .join(_case_partners, _case_partners.c.organisation_id == _organisations.c.id)
    .where(_case_partners.c.case_id == bindparam("case_id"))
)
_TEAM_MEMBERS = (
    select(_users.c.id, _users.c.public_id, _users.c.name, _case_members.c.organisation_id)
    .join(_case_members, _case_members.c.user_id == _users.c.id)
    .where(_case_members.c.case_id == bindparam("case_id"))
    .order_by(_users.c.id)
)
# Organisations sitting in a group (through their members), and the active agents of some.
_GROUP_ORGANISATIONS = (
    select(_organisations.c.id, _organisations.c.name)
    .join(_users, _users.c.organisation_id == _organisations.c.id)
    .join(_group_members, _group_members.c.user_id == _users.c.id)
    .where(_group_members.c.group_id == bindparam("group_id"))
    .distinct()
)
_AGENTS_OF = (
    select(_users.c.id, _users.c.name, _organisations.c.name.label("organisation"))
    .join(_user_roles, _user_roles.c.user_id == _users.c.id)
    .join(_organisations, _organisations.c.id == _users.c.organisation_id)
    .where(
        _users.c.organisation_id.in_(bindparam("orgs", expanding=True)),
        _user_roles.c.role == Role.AGENT,
        _users.c.active.is_(True),
    )
    .order_by(_users.c.name)
)
# Active agents of the given organisations not yet on the case's team: the role and the team
# are checked in the query. As users with their organisation, or as the form's choices.
_is_assignable = (
    _users.c.organisation_id.in_(bindparam("orgs", expanding=True)),
    _users.c.active.is_(True),
    ~exists().where(
        _case_members.c.case_id == bindparam("case_id"),
        _case_members.c.user_id == _users.c.id,
    ),
)
_agent_role = and_(_user_roles.c.user_id == _users.c.id, _user_roles.c.role == Role.AGENT)
_ASSIGNABLE = (
    select(User)
    .join(_user_roles, _agent_role)
    .where(*_is_assignable)
    .order_by(User.name)
    .options(joinedload(User.organisation), lazyload(User.role_rows))
)
_ASSIGNABLE_CHOICES = (
    select(_users.c.id, _users.c.name, _organisations.c.name.label("organisation"))
    .join(_user_roles, _agent_role)
    .join(_organisations, _organisations.c.id == _users.c.organisation_id)
    .where(*_is_assignable)
    .order_by(_users.c.name)
)


class CaseRefusedError(MessageError):
    """A case operation refused; the French message says why (field and article when known)."""

    def __init__(
        self,
        message: str,
        *,
        reasons: Iterable[Reason] = (),
        invalid: Iterable[str] = (),
        **params: object,
    ) -> None:
        super().__init__(message, **params)
        self.reasons = tuple(reasons)
        # The fields in error, for the page to highlight: named, or refused by the charter.
        self.invalid = frozenset(invalid) | {r.field for r in self.reasons}


class CaseAccessDeniedError(MessageError):
    """The person takes no part in this case (need-to-know).

    ``rule`` is what the audit event records: the charter's article when a charter applies to
    the person's organisation, else the code ``no_charter_signed`` (no charter to cite).
    """

    def __init__(self, message: str, *, rule: str, code: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.code = code


NOT_INVOLVED = N_(
    "Vous ne suivez pas ce dossier : seuls le référent, les membres du groupe "
    "opérationnel et les professionnels nommés dans l'équipe du dossier y ont "
    "accès."
)


class PurposeNotForStepError(CaseAccessDeniedError):
    """The stated purpose does not apply at the step the case has reached (the charter binds
    each purpose to steps: a case long past repérage is not examined for entry again)."""

    def __init__(self) -> None:
        super().__init__(
            N_(
                "Cette finalité ne s'applique pas à l'étape où en est le dossier : choisissez "
                "une des finalités proposées."
            ),
            rule="purpose_not_for_step",
            code="purpose_not_for_step",
        )


def unknown_case() -> CaseAccessDeniedError:
    """The refusal for a reference that names no case: worded and coded as a refusal of a case
    one takes no part in, so the answer does not tell which references exist."""
    return CaseAccessDeniedError(NOT_INVOLVED, rule="unknown_case", code="not_involved")


def loggable_reference(reference: str) -> str:
    """``reference`` as an audit event may hold it (an identifier), else empty: whatever was
    typed in a URL never breaks the recording of its refusal."""
    return reference if IDENT.fullmatch(reference) else ""


def new_reference() -> str:
    """A random, pseudonymous case reference such as ``C-7K3Q-X9M2``."""
    chars = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"C-{chars[:4]}-{chars[4:]}"


def hub_fields(charter: Charter) -> list[FieldDef]:
    """The catalogue fields the hub itself may hold (tier ``hub``, never ``interdit``)."""
    return [f for f in charter.fields if f.tier is Tier.HUB and f.secrecy is not Secrecy.INTERDIT]


def is_date_field(field_id: str) -> bool:
    """Hub convention: a field whose last segment starts with ``date`` holds a calendar day."""
    return field_id.rsplit(".", 1)[-1].startswith("date")


def charter_ref(version: CharterVersion) -> str:
    """How a decision names its charter in audit events: ``<charter id>:<version>``."""
    return f"{version.charter_id}:{version.version}"


def articles(reasons: Iterable[Reason]) -> str:
    """The distinct articles of ``reasons``, for an audit event's ``rule`` (``art-6/art-8``)."""
    return "/".join(sorted({r.article for r in reasons}))


@dataclass(frozen=True)
class CaseContext:
    """Who a person is *for this case*: roles held here, and the charter version that applies."""

    case: Case
    organisation: Organisation
    version: CharterVersion
    recipient: Recipient
    user: User | None

    @property
    def charter(self) -> Charter:
        """The charter of the applicable version."""
        return charter_of(self.version)

    @property
    def roles(self) -> frozenset[Role]:
        """The roles the person holds in this case."""
        return self.recipient.roles

    @property
    def consent_rules(self) -> ConsentRules:
        """What the applicable charter says about consent (minors, notice version…)."""
        return ConsentRules.of(self.charter)

    @property
    def recipient_org(self) -> RecipientOrg:
        """The person's organisation as consent scopes name it."""
        return RecipientOrg(self.organisation.id, self.organisation.kind)


@dataclass(frozen=True)
class FieldView:
    """One field the recipient may see, with its value (``None``: not recorded)."""

    field: FieldDef
    value: str | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A value stored on a case, still sealed, and who published it."""

    field_id: str
    ciphertext: bytes
    publisher_id: int
    publisher_kind: OrgKind


@dataclass(frozen=True, slots=True)
class TeamOrganisation:
    """An organisation following a case, as the case page lists it."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class TeamMember:
    """A professional named on a case's team (``organisation_id``: the organisation they
    follow the case for)."""

    id: int
    public_id: str
    name: str
    organisation_id: int


@dataclass(frozen=True)
class Team:
    """Who follows a case: the organisations and the professionals named on its team."""

    partners: tuple[TeamOrganisation, ...]
    members: tuple[TeamMember, ...]

    @property
    def member_ids(self) -> frozenset[int]:
        """The professionals assigned to the case (the référent aside)."""
        return frozenset(m.id for m in self.members)

    @property
    def partner_org_ids(self) -> frozenset[int]:
        """The organisations following the case."""
        return frozenset(p.id for p in self.partners)

    def by_organisation(self) -> list[tuple[TeamOrganisation, list[TeamMember]]]:
        """Each following organisation with its named professionals, both by name."""
        by_org: dict[int, list[TeamMember]] = {}
        for member in self.members:
            by_org.setdefault(member.organisation_id, []).append(member)
        return sorted(
            ((p, sorted(by_org.get(p.id, []), key=lambda m: m.name)) for p in self.partners),
            key=lambda pair: pair[0].name,
        )


@dataclass(frozen=True)
class CaseInputs:
    """What a view decision reads besides the consent: meeting days, stored values with their
    publishers, declinations in force, and the date of birth opened for the minors' rule."""

    meetings: tuple[date, ...]
    stored: dict[str, StoredValue]
    declined: dict[int, list[Declination]]
    birth: date | None


@dataclass(frozen=True)
class Decided:
    """A view decision over the catalogue and what it was taken with."""

    reasons: dict[str, Reason]
    stored: dict[str, StoredValue]
    state: ConsentState
    birth: date | None


@dataclass(frozen=True)
class CaseView:
    """What a recipient sees of a case for one purpose, and why."""

    context: CaseContext
    purpose: str
    shown: tuple[FieldView, ...]
    refused: tuple[Reason, ...]
    # The consent the decision was taken with: the caller checks its generation again once the
    # read is recorded, and decides again if a consent changed meanwhile.
    consent: ConsentState
    birth: date | None = None

    @property
    def consent_generation(self) -> int:
        """The consent generation the decision was taken at."""
        return self.consent.generation

    @property
    def allowed(self) -> bool:
        """Whether anything at all may be shown for this purpose."""
        return bool(self.shown)

    @property
    def rule(self) -> str:
        """Articles that allowed what is shown, or that refused everything."""
        return articles(v.reason for v in self.shown) if self.shown else articles(self.refused)


class Cases:
    """Cases of operational groups and the need-to-know views of their hub-tier fields."""

    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], datetime],
        vault: FieldVault,
        max_evidence_bytes: int = MAX_EVIDENCE_BYTES,
    ) -> None:
        self.session = session
        self.clock = clock
        self.vault = vault
        self.charters = Charters(session, clock=clock)
        self.consents = ConsentRecords(session, clock=clock, max_evidence_bytes=max_evidence_bytes)

    # -- finding cases ---------------------------------------------------------------------

    def by_reference(self, reference: str) -> Case | None:
        """The case with this reference, if any (with its group; partners and team load when
        first used). A reference holding a NUL byte names no case (PostgreSQL would refuse the
        query itself)."""
        if "\x00" in reference:
            return None
        return self.session.scalar(_BY_REFERENCE, {"reference": reference.strip()})

    def signed_groups(self, org: Organisation) -> list[OperationalGroup]:
        """Groups in which ``org`` signed a charter version (it takes part in their exchanges)."""
        groups = self.session.scalars(select(OperationalGroup).order_by(OperationalGroup.name))
        return [g for g in groups if self.charters.applicable(g, org) is not None]

    def visible_to(
        self, user: User, *, search: str = "", parts: frozenset[Role] | None = None
    ) -> Select[Any]:
        """Cases in which ``user`` takes part, newest first (the list page's query); only the
        parts in ``parts`` when given (the home page: référent and team).

        Mirrors :meth:`context`: référent of the case, member or coordinator of its group, or
        agent named on its team while the organisation follows the case; only in groups whose
        charter the organisation signed.
        """
        groups = [g.id for g in self.signed_groups(user.organisation)]
        held = user.roles if parts is None else user.roles & parts
        clauses = []
        if Role.REFERENT in held:
            clauses.append(Case.referent_id == user.id)
        if Role.GROUP_MEMBER in held:
            clauses.append(
                exists().where(
                    GroupMembership.group_id == Case.group_id, GroupMembership.user_id == user.id
                )
            )
        if Role.COORDINATOR in held:
            clauses.append(
                exists().where(
                    OperationalGroup.id == Case.group_id,
                    OperationalGroup.coordinator_id == user.id,
                )
            )
        if Role.AGENT in held:
            clauses.append(
                exists().where(CaseMember.case_id == Case.id, CaseMember.user_id == user.id)
                & exists().where(
                    CasePartner.case_id == Case.id,
                    CasePartner.organisation_id == user.organisation_id,
                )
            )
        if not clauses:
            return select(Case).where(false())
        statement = select(Case).where(Case.group_id.in_(groups), or_(*clauses))
        search = search.strip().upper()
        if search:
            statement = statement.where(Case.reference.startswith(search, autoescape=True))
        return statement.order_by(Case.opened_at.desc(), Case.id.desc())

    # -- need-to-know ----------------------------------------------------------------------

    def _is_member(self, group: OperationalGroup, user: User) -> bool:
        return any(m.user_id == user.id for m in group.memberships)

    def context(self, case: Case, user: User) -> CaseContext:
        """The person's part in ``case``; :class:`CaseAccessDeniedError` when they have none.

        Roles count only where they apply: *référent* of this case, *member* or *coordinator*
        of its group, *agent* named on the case's team (need-to-know is per person: a colleague
        of the same organisation who is not on the team takes no part). Administrators and the
        DPO hold none of these, so they never see case content.
        """
        part = self._execute(
            _PART,
            {
                "group_id": case.group_id,
                "case_id": case.id,
                "user_id": user.id,
                "org_id": user.organisation_id,
            },
        ).one()
        member = bool(part.member)
        held = user.roles
        roles: set[Role] = set()
        if case.referent_id == user.id and Role.REFERENT in held:
            roles.add(Role.REFERENT)
        if member and Role.GROUP_MEMBER in held:
            roles.add(Role.GROUP_MEMBER)
        if case.group.coordinator_id == user.id and Role.COORDINATOR in held:
            roles.add(Role.COORDINATOR)
        if Role.AGENT in held and part.on_team and part.follows:
            roles.add(Role.AGENT)
        return self._context(case, user.organisation, frozenset(roles), member, user)

    def refresh_context(self, ctx: CaseContext) -> CaseContext:
        """The same person's (or system's) part in the case, decided again from the database
        (after a change to the team or the consent raced a read)."""
        if ctx.user is not None:
            return self.context(ctx.case, ctx.user)
        return self.context_for_organisation(ctx.case, ctx.organisation)

    def context_for_organisation(self, case: Case, org: Organisation) -> CaseContext:
        """An organisation's system (API client) acts as an agent of a partner organisation."""
        follows = self._execute(_FOLLOWS, {"case_id": case.id, "org_id": org.id}).scalar()
        roles = frozenset({Role.AGENT}) if follows else frozenset()
        return self._context(case, org, roles, False, None)

    def _context(
        self,
        case: Case,
        org: Organisation,
        roles: frozenset[Role],
        member: bool,
        user: User | None,
    ) -> CaseContext:
        version = self.charters.applicable(case.group, org)
        if version is None:
            # Worded and coded as any refusal (the log keeps the precise rule): the answer must
            # not tell an outsider that this reference names a case of some group.
            raise CaseAccessDeniedError(NOT_INVOLVED, rule="no_charter_signed", code="not_involved")
        if not roles:
            raise CaseAccessDeniedError(
                NOT_INVOLVED,
                rule=charter_of(version).refusal_articles.default,
                code="not_involved",
            )
        recipient = Recipient(roles, org.kind, member)
        return CaseContext(case, org, version, recipient, user)

    # -- reading ---------------------------------------------------------------------------

    def _execute(self, statement: Any, params: Mapping[str, Any]) -> Any:
        """Run a Core read, with what this session changed flushed first (as an ORM query
        autoflushes): a decision never misses a row added earlier in the same transaction."""
        if self.session.autoflush:
            self.session.flush()
        return self.session.execute(statement, params)

    def meetings(self, group: OperationalGroup) -> list[date]:
        """The group's meeting days, oldest first."""
        return list(self._execute(_MEETINGS, {"group_id": group.id}).scalars())

    def _declinations(
        self, group: OperationalGroup, org: Organisation | None = None
    ) -> dict[int, list[Declination]]:
        """Declinations in force in ``group`` (of ``org`` only when given), by organisation id:
        one query for every publisher of a case."""
        if org is None:
            rows = self._execute(_DECLINATIONS, {"group_id": group.id})
        else:
            rows = self._execute(_DECLINATIONS_OF, {"group_id": group.id, "org_id": org.id})
        by_org: dict[int, list[Declination]] = {}
        for d in rows:
            by_org.setdefault(d.organisation_id, []).append(
                Declination(str(d.organisation_id), d.field_glob, d.reason, d.recorded_at)
            )
        return by_org

    def stored(self, case: Case) -> dict[str, StoredValue]:
        """The case's stored values, still sealed, by field id, with their publishers."""
        return {
            row.field_id: StoredValue(
                row.field_id, row.ciphertext, row.published_by_org_id, row.kind
            )
            for row in self._execute(_STORED, {"case_id": case.id})
        }

    def consent_state(self, case: Case) -> ConsentState:
        """The case's consent records that can matter to a decision (one read per decision)."""
        return self.consents.state(case.id)

    def birth_date(
        self, case: Case, rules: ConsentRules, stored: Mapping[str, StoredValue] | None = None
    ) -> date | None:
        """The young person's date of birth, opened for the hub's own use (minority for
        consent); ``None`` when not recorded or unreadable (then treated as a minor)."""
        field_id = rules.birth_date_field
        if field_id is None:
            return None
        if stored is None:
            ciphertext = self._execute(
                _STORED_ONE, {"case_id": case.id, "field_id": field_id}
            ).scalar()
        else:
            value = stored.get(field_id)
            ciphertext = value.ciphertext if value is not None else None
        if ciphertext is None:
            return None
        try:
            return date.fromisoformat(
                self.vault.open(case.wrapped_key, case.reference, field_id, ciphertext)
            )
        except (VaultError, ValueError):
            return None

    def inputs(self, ctx: CaseContext) -> CaseInputs:
        """What every view decision on the case reads (three statements): read once when
        several purposes are decided in one request (the default purpose, then the view)."""
        stored = self.stored(ctx.case)
        return CaseInputs(
            meetings=tuple(self.meetings(ctx.case.group)),
            stored=stored,
            declined=self._declinations(ctx.case.group) if stored else {},
            birth=self.birth_date(ctx.case, ctx.consent_rules, stored),
        )

    def decide_view(
        self,
        ctx: CaseContext,
        purpose: str,
        state: ConsentState | None = None,
        inputs: CaseInputs | None = None,
    ) -> Decided:
        """The view decision for every hub-tier field of the catalogue, with the stored rows,
        the consent state and the date of birth it used.

        Fields are decided over the whole catalogue, whether a value exists or not, so what is
        refused says nothing about what the case holds. A stored value is decided with its
        publisher's organisation kind and that publisher's declinations, and — through
        :func:`consent.may_view` — with the young person's consent in force for this purpose
        and this recipient organisation.
        """
        case = ctx.case
        decider = compiled(ctx.version)
        now = self.clock()
        state = state if state is not None else self.consent_state(case)
        inputs = inputs if inputs is not None else self.inputs(ctx)
        meetings, stored, birth = inputs.meetings, inputs.stored, inputs.birth
        catalogue = [f.id for f in hub_fields(ctx.charter)]
        by_publisher: dict[int | None, list[str]] = {}
        kinds: dict[int, OrgKind] = {}
        for field_id in catalogue:
            value = stored.get(field_id)
            if value is None:
                by_publisher.setdefault(None, []).append(field_id)
            else:
                kinds[value.publisher_id] = value.publisher_kind
                by_publisher.setdefault(value.publisher_id, []).append(field_id)
        declined = inputs.declined
        reasons: dict[str, Reason] = {}
        for org_id, field_ids in by_publisher.items():
            decision = may_view(
                decider,
                state,
                ctx.recipient,
                purpose,
                field_ids,
                recipient_org=ctx.recipient_org,
                at=now,
                birth_date=birth,
                sender_org_kind=kinds[org_id] if org_id is not None else None,
                meeting_dates=meetings,
                declinations=declined.get(org_id, []) if org_id is not None else (),
            )
            reasons.update((r.field, r) for r in decision.reasons)
        return Decided({f: reasons[f] for f in catalogue}, stored, state, birth)

    def decide_fields(
        self,
        ctx: CaseContext,
        purpose: str,
        field_ids: Sequence[str],
        *,
        sender: Organisation,
        state: ConsentState | None = None,
    ) -> Decision:
        """May ``ctx``'s recipient receive ``field_ids`` from ``sender`` for ``purpose`` now?

        The decision a liaison form's view is checked with, on the relay and again at each
        delivery: the charter for the recipient's role in this case, the sender organisation's
        kind and declinations, the meeting windows and the consent in force for this purpose and
        recipient (:func:`consent.may_view`, as for the case's own values).
        """
        case = ctx.case
        return may_view(
            compiled(ctx.version),
            state if state is not None else self.consent_state(case),
            ctx.recipient,
            purpose,
            list(field_ids),
            recipient_org=ctx.recipient_org,
            at=self.clock(),
            birth_date=self.birth_date(case, ctx.consent_rules),
            sender_org_kind=sender.kind,
            meeting_dates=self.meetings(case.group),
            declinations=self._declinations(case.group, sender).get(sender.id, []),
        )

    def send_decision(self, ctx: CaseContext, field_ids: Sequence[str]) -> Decision:
        """May ``ctx``'s organisation put ``field_ids`` in a liaison form on the case (charter ×
        consent, as for recording values)?"""
        return self._publish_decision(
            ctx.case.group, ctx.organisation, ctx.version, list(field_ids), case=ctx.case
        )

    def view(
        self,
        ctx: CaseContext,
        purpose: str,
        state: ConsentState | None = None,
        inputs: CaseInputs | None = None,
    ) -> CaseView:
        """What ``ctx``'s recipient sees of the case for ``purpose``: allowed values only."""
        decided = self.decide_view(ctx, purpose, state, inputs)
        reasons, stored = decided.reasons, decided.stored
        charter = ctx.charter
        shown: list[FieldView] = []
        refused: list[Reason] = []
        for field_id, reason in reasons.items():
            if not reason.allowed:
                refused.append(reason)
                continue
            definition = charter.field(field_id)
            assert definition is not None  # decided over the catalogue
            sealed = stored.get(field_id)
            value = (
                self.vault.open(
                    ctx.case.wrapped_key, ctx.case.reference, field_id, sealed.ciphertext
                )
                if sealed is not None
                else None
            )
            shown.append(FieldView(definition, value, reason))
        return CaseView(ctx, purpose, tuple(shown), tuple(refused), decided.state, decided.birth)

    def purposes_for(self, ctx: CaseContext) -> list[Purpose]:
        """The charter's purposes that apply at the step the case has reached."""
        return [p for p in ctx.charter.purposes if p.applies_to(ctx.case.status)]

    def default_purpose(
        self,
        ctx: CaseContext,
        state: ConsentState | None = None,
        inputs: CaseInputs | None = None,
    ) -> str:
        """The purpose under which the recipient sees the most (first in the charter on a tie).

        Only a default for the page: the person states the purpose they consult for, and it is
        recorded with every read.
        """
        state = state if state is not None else self.consent_state(ctx.case)
        inputs = inputs if inputs is not None else self.inputs(ctx)
        purposes = self.purposes_for(ctx) or list(ctx.charter.purposes)
        best, best_count = purposes[0].id, 0
        for purpose in purposes:
            reasons = self.decide_view(ctx, purpose.id, state, inputs).reasons
            count = sum(r.allowed for r in reasons.values())
            if count > best_count:
                best, best_count = purpose.id, count
        return best

    # -- writing ---------------------------------------------------------------------------

    def publishable(
        self,
        org: Organisation,
        group: OperationalGroup,
        version: CharterVersion | None = None,
        case: Case | None = None,
        *,
        seen: CaseView | None = None,
    ) -> list[FieldDef]:
        """Hub-tier fields ``org`` may record now (for forms), catalogue order: those the
        charter lets it publish and, for ``case`` (a new case when ``None``), that the young
        person's consent in force lets enter the exchange.

        ``version``: the version that applies to ``org`` when the caller already has it.
        ``seen``: a view of ``case`` just decided (and recorded) in this request — its consent
        state and date of birth are used rather than read and opened again.
        """
        version = version or self.charters.applicable(group, org)
        if version is None:
            return []
        fields = hub_fields(charter_of(version))
        known = (seen.consent, seen.birth) if seen is not None and case is not None else None
        decision = self._publish_decision(
            group, org, version, [f.id for f in fields], case=case, known=known
        )
        return [f for f in fields if f.id in decision.allowed_fields]

    def _publish_decision(
        self,
        group: OperationalGroup,
        org: Organisation,
        version: CharterVersion,
        field_ids: list[str],
        *,
        case: Case | None,
        values: Mapping[str, str] | None = None,
        known: tuple[ConsentState, date | None] | None = None,
    ) -> Decision:
        """The charter × consent decision on recording ``field_ids`` on ``case`` (``known``:
        the case's consent state and date of birth, when the caller has just read them)."""
        rules = ConsentRules.of(charter_of(version))
        if case is None:
            state = ConsentState(case_id=0, generation=0)  # a new case: no consent yet
            birth = None
        elif known is not None:
            state, birth = known
        else:
            state = self.consent_state(case)
            birth = self.birth_date(case, rules)
        posted_birth = (values or {}).get(rules.birth_date_field or "")
        first = birth is None
        if posted_birth and first:
            # Recorded a first time: minority is judged on the date being recorded. A change is
            # judged on the stored date, so it cannot lift the parents' accord it is decided on.
            birth = date.fromisoformat(posted_birth)
        return may_record(
            compiled(version),
            state,
            org.kind,
            field_ids,
            at=self.clock(),
            birth_date=birth,
            declinations=self._declinations(group, org).get(org.id, []),
            first_birth_date=first,
        )

    def _check_publish(
        self,
        group: OperationalGroup,
        org: Organisation,
        version: CharterVersion,
        values: Mapping[str, str],
        case: Case | None,
    ) -> tuple[Decision, dict[str, str]]:
        """Clean the values and ask the charter and the consent; refuse everything if one field
        is refused."""
        if len(values) > MAX_VALUES:
            raise CaseRefusedError(N_("Rien n'est enregistré : trop de champs envoyés."))
        charter = charter_of(version)
        choices = self.choices(group)
        cleaned: dict[str, str] = {}
        for field_id, raw in values.items():
            definition = charter.field(field_id)
            value = _clean(definition, field_id, raw)
            if value is not None and field_id in choices and value not in dict(choices[field_id]):
                raise CaseRefusedError(
                    N_("Rien n'est enregistré : « %(label)s » se choisit dans la liste."),
                    label=definition.label_fr if definition else field_id,
                    invalid=(field_id,),
                )
            if value is not None:
                cleaned[field_id] = value
        rules = ConsentRules.of(charter)
        if rules.birth_date_field is not None and rules.birth_date_field in cleaned:
            self._check_birth_date(case, date.fromisoformat(cleaned[rules.birth_date_field]), rules)
        decision = self._publish_decision(
            group, org, version, list(cleaned), case=case, values=cleaned
        )
        if decision.refusals:
            raise CaseRefusedError(
                N_("Rien n'est enregistré : la charte refuse %(fields)s."),
                reasons=decision.refusals,
                fields="; ".join(r.message_fr() for r in decision.refusals),
            )
        # Tier e2e fields live only in sealed liaison forms: the hub never stores them.
        not_hub = [
            f for f in cleaned if (d := charter.field(f)) is not None and d.tier is not Tier.HUB
        ]
        if not_hub:
            raise CaseRefusedError(
                N_(
                    "Rien n'est enregistré : %(fields)s ne circule que dans une fiche de liaison "
                    "scellée, que le hub ne peut pas lire."
                ),
                fields=", ".join(f"« {f} »" for f in not_hub),
            )
        return decision, cleaned

    def choices(self, group: OperationalGroup) -> dict[str, list[tuple[str, str]]]:
        """The fields chosen from a list rather than typed, with their ``(value, label)``
        options: the exit type, and the path's référent among the people who may be named
        référent in the group (its partners' référents)."""
        partners = [o.id for o in self.charters.partners(group)]
        referents = self.session.scalars(
            select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == Role.REFERENT, User.organisation_id.in_(partners))
            .order_by(User.name)
        )
        return {
            EXIT_TYPE_FIELD: list(EXIT_TYPES),
            REFERENT_NAME_FIELD: [
                (referent_label(u), referent_label(u)) for u in referents if u.is_active
            ],
        }

    def _check_birth_date(self, case: Case | None, birth: date, rules: ConsentRules) -> None:
        """A plausible date of birth, and never moved earlier once anyone has been informed or
        asked: an older young person needs fewer accords, so that change could undo a parent's
        withdrawal. Corrections that way go through the DPO."""
        today = local_day(self.clock())
        if not (today.replace(year=today.year - MAX_AGE) <= birth <= today):
            raise CaseRefusedError(
                N_(
                    "Rien n'est enregistré : la date de naissance doit être passée et "
                    "correspondre à un âge de moins de %(max)d ans."
                ),
                max=MAX_AGE,
            )
        if case is None:
            return
        stored = self.birth_date(case, rules)
        if stored is None or birth >= stored:
            return
        state = self.consent_state(case)
        if state.consents or state.informed or state.exceptions:
            raise CaseRefusedError(
                N_(
                    "Rien n'est enregistré : la date de naissance ne peut pas être avancée une "
                    "fois le jeune ou ses parents informés, car elle décide de l'accord des "
                    "parents. Pour la corriger, voyez le délégué à la protection des données."
                )
            )

    def _store(
        self,
        case: Case,
        org: Organisation,
        user: User | None,
        version: CharterVersion,
        cleaned: Mapping[str, str],
    ) -> None:
        now = self.clock()
        existing = {
            row.field_id: row
            for row in self.session.scalars(select(CaseField).where(CaseField.case_id == case.id))
        }
        for field_id, value in cleaned.items():
            blob = self.vault.seal(case.wrapped_key, case.reference, field_id, value)
            row = existing.get(field_id)
            if row is None:
                row = CaseField(case_id=case.id, field_id=field_id)
                self.session.add(row)
            row.ciphertext = blob
            row.published_by_org_id = org.id
            row.published_by_id = user.id if user else None
            row.published_at = now
            row.charter_version = version.version
        if any(f.split(".", 1)[0] == EXIT_CATEGORY for f in cleaned):
            # The exit (job, qualifying training…) is recorded: the path moves to its last step.
            case.status = "sortie"
        self.session.flush()

    def open_case(
        self, group: OperationalGroup, user: User, values: Mapping[str, str]
    ) -> tuple[Case, Decision, CharterVersion]:
        """Open a case in ``group`` (repérage) with the hub-tier values the charter lets the
        person's organisation publish before any consent (the date of birth, which decides
        whose accord is needed, and what rests on the group's mission alone); nothing is stored
        when one value is refused. The person joins the case's team."""
        org = user.organisation
        version = self.charters.applicable(group, org)
        if version is None:
            raise CaseRefusedError(
                N_(
                    "Votre organisation n'a signé aucune version de la charte de ce groupe : "
                    "elle ne peut pas y signaler un jeune."
                )
            )
        if not (
            self._is_member(group, user)
            or user.has_role(Role.AGENT)
            or group.coordinator_id == user.id
        ):
            raise CaseRefusedError(
                N_("Seuls les agents partenaires et les membres du groupe signalent un jeune.")
            )
        decision, cleaned = self._check_publish(group, org, version, values, None)
        if not cleaned:
            # A case with nothing in it names nobody: the group could not act on it.
            raise CaseRefusedError(
                N_("Rien n'est enregistré : renseignez au moins une information pour signaler.")
            )
        reference = new_reference()
        while self.by_reference(reference) is not None:
            reference = new_reference()
        now = self.clock()
        case = Case(
            reference=reference,
            group_id=group.id,
            opened_by_org_id=org.id,
            opened_by_id=user.id,
            status="reperage",
            opened_at=now,
            wrapped_key=self.vault.new_case_key(reference),
        )
        case.partners.append(CasePartner(organisation_id=org.id, added_at=now))
        case.members.append(
            CaseMember(user_id=user.id, organisation_id=org.id, added_at=now, added_by_id=user.id)
        )
        self.session.add(case)
        self.session.flush()
        self._store(case, org, user, version, cleaned)
        return case, decision, version

    def publish(self, ctx: CaseContext, values: Mapping[str, str]) -> Decision:
        """Record hub-tier values on the case for the context's organisation (all or nothing),
        under the charter version of the context and the consent in force."""
        decision, cleaned = self._check_publish(
            ctx.case.group, ctx.organisation, ctx.version, values, ctx.case
        )
        if not cleaned:
            raise CaseRefusedError(N_("Aucune information n'a été saisie."))
        self._store(ctx.case, ctx.organisation, ctx.user, ctx.version, cleaned)
        return decision

    def name_referent(self, ctx: CaseContext, referent: User) -> Decision:
        """The group names the référent de parcours (its coordinator records the decision).

        The référent's organisation starts following the case; the référent's name is a
        charter field (``parcours.referent``) published by the coordinator's organisation.
        """
        if Role.COORDINATOR not in ctx.roles:
            raise CaseRefusedError(N_("Seul le coordinateur du groupe désigne le référent."))
        case = ctx.case
        if not (
            referent.is_active
            and referent.has_role(Role.REFERENT)
            and self.charters.applicable(case.group, referent.organisation) is not None
        ):
            raise CaseRefusedError(
                N_(
                    "Cette personne ne peut pas être référente : il faut le rôle de référent "
                    "et une organisation signataire de la charte du groupe."
                )
            )
        values = {REFERENT_NAME_FIELD: referent_label(referent)}
        decision, cleaned = self._check_publish(
            case.group, ctx.organisation, ctx.version, values, case
        )
        case.referent_id = referent.id
        case.status = "suivi" if case.status == "reperage" else case.status
        self._follow(case, referent.organisation)
        self._store(case, ctx.organisation, ctx.user, ctx.version, cleaned)
        return decision

    # -- the case team ---------------------------------------------------------------------

    def team_of(self, case: Case) -> Team:
        """Who follows ``case``: its partner organisations and the professionals named on its
        team (two small queries; the page lists them without loading ORM objects)."""
        params = {"case_id": case.id}
        partners = tuple(
            TeamOrganisation(row.id, row.name) for row in self._execute(_TEAM_PARTNERS, params)
        )
        members = tuple(
            TeamMember(row.id, row.public_id, row.name, row.organisation_id)
            for row in self._execute(_TEAM_MEMBERS, params)
        )
        return Team(partners, members)

    def team(
        self, case: Case, team: Team | None = None
    ) -> list[tuple[TeamOrganisation, list[TeamMember]]]:
        """The organisations following the case with their named professionals, by name
        (``team``: what :meth:`team_of` already read in this request)."""
        return (team if team is not None else self.team_of(case)).by_organisation()

    def assignable(self, ctx: CaseContext, team: Team | None = None) -> list[User]:
        """Agents the person may add to the team now: of the organisations following the case
        (all of them for the référent and the coordinator, their own for a team member).

        ``team``: the case's team as :meth:`team_of` read it in this request."""
        orgs = self._team_orgs(ctx, team)
        if not orgs:
            return []
        return list(
            self.session.scalars(_ASSIGNABLE, {"case_id": ctx.case.id, "orgs": sorted(orgs)})
        )

    def assignable_choices(
        self, ctx: CaseContext, team: Team | None = None
    ) -> list[tuple[int, str]]:
        """:meth:`assignable` as the team form's choices: (user id, « Name (Organisation) »),
        by name, read in one Core query."""
        orgs = self._team_orgs(ctx, team)
        if not orgs:
            return []
        rows = self._execute(_ASSIGNABLE_CHOICES, {"case_id": ctx.case.id, "orgs": sorted(orgs)})
        return [(row.id, f"{row.name} ({row.organisation})") for row in rows]

    def _team_orgs(self, ctx: CaseContext, team: Team | None = None) -> set[int]:
        partner_org_ids = team.partner_org_ids if team is not None else ctx.case.partner_org_ids
        member_ids = team.member_ids if team is not None else ctx.case.member_ids
        if ctx.roles & {Role.REFERENT, Role.COORDINATOR}:
            return set(partner_org_ids)
        if ctx.user is not None and ctx.user.id in member_ids:
            return {ctx.user.organisation_id}
        return set()

    def orientation_choices(
        self, case: Case, team: Team | None = None
    ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """The orientation form's choices: organisations sitting in the case's group that do
        not follow it yet (by name), and their active agents labelled « Name (Organisation) »
        (by name)."""
        following = team.partner_org_ids if team is not None else case.partner_org_ids
        partners = sorted(
            (
                (row.id, row.name)
                for row in self._execute(_GROUP_ORGANISATIONS, {"group_id": case.group_id})
                if row.id not in following
            ),
            key=lambda pair: pair[1],
        )
        if not partners:
            return [], []
        agents = [
            (row.id, f"{row.name} ({row.organisation})")
            for row in self._execute(_AGENTS_OF, {"orgs": [o for o, _name in partners]})
        ]
        return partners, agents

    def assign(self, ctx: CaseContext, agent: User) -> None:
        """Name ``agent`` on the case's team: by the référent, the group's coordinator, or a
        team member handing over to a colleague of the same organisation."""
        if agent.organisation_id not in self._team_orgs(ctx):
            raise CaseRefusedError(
                N_(
                    "Seuls le référent, le coordinateur et, pour leur organisation, les "
                    "professionnels de l'équipe nomment un agent sur le dossier."
                )
            )
        if not (agent.is_active and agent.has_role(Role.AGENT)):
            raise CaseRefusedError(N_("Cette personne n'est pas un agent actif du partenaire."))
        if agent.id in ctx.case.member_ids:
            raise CaseRefusedError(N_("Cette personne fait déjà partie de l'équipe du dossier."))
        ctx.case.members.append(
            CaseMember(
                user_id=agent.id,
                organisation_id=agent.organisation_id,
                added_at=self.clock(),
                added_by_id=ctx.user.id if ctx.user else None,
            )
        )
        self.session.flush()

    def unassign(self, ctx: CaseContext, agent: User) -> None:
        """Take ``agent`` off the case's team (same people as :meth:`assign`)."""
        member = next((m for m in ctx.case.members if m.user_id == agent.id), None)
        if member is None or member.organisation_id not in self._team_orgs(ctx):
            raise CaseRefusedError(
                N_("Cette personne ne fait pas partie de l'équipe que vous pouvez modifier.")
            )
        ctx.case.members.remove(member)
        self.session.flush()

    def add_partner(
        self, ctx: CaseContext, org: Organisation, agents: Iterable[User] = ()
    ) -> list[User]:
        """The référent or the coordinator orients the young person to another partner and
        names who, there, follows the case; returns the agents named."""
        if not ctx.roles & {Role.REFERENT, Role.COORDINATOR}:
            raise CaseRefusedError(
                N_("Seuls le référent et le coordinateur associent un partenaire au dossier.")
            )
        if self.charters.applicable(ctx.case.group, org) is None:
            raise CaseRefusedError(
                N_(
                    "Cette organisation n'a pas signé la charte du groupe : "
                    "elle ne peut pas suivre le dossier."
                )
            )
        chosen = list(agents)
        if any(a.organisation_id != org.id for a in chosen):
            raise CaseRefusedError(N_("Les agents nommés doivent appartenir à ce partenaire."))
        self._follow(ctx.case, org)
        self.session.flush()
        for agent in chosen:
            self.assign(ctx, agent)
        return chosen

    def _follow(self, case: Case, org: Organisation) -> None:
        if org.id not in case.partner_org_ids:
            case.partners.append(CasePartner(organisation_id=org.id, added_at=self.clock()))

    def add_meeting(
        self, group: OperationalGroup, user: User, day: date, *, held: bool = False
    ) -> GroupMeeting:
        """The coordinator schedules a meeting of the group (monthly review) for today or later;
        ``held``: records one that already took place (the demo's history only)."""
        if group.coordinator_id != user.id:
            raise CaseRefusedError(N_("Seul le coordinateur du groupe fixe ses réunions."))
        if not in_range(day):
            raise CaseRefusedError(out_of_range_message())
        if not held:
            self._not_past(day)
        if day in self.meetings(group):
            raise CaseRefusedError(N_("Une réunion est déjà prévue ce jour-là."))
        meeting = GroupMeeting(
            group_id=group.id, meets_on=day, created_at=self.clock(), created_by_id=user.id
        )
        self.session.add(meeting)
        self.session.flush()
        return meeting

    def _not_past(self, day: date) -> None:
        """A meeting is scheduled for today or later (Paris): a past date is a typing slip, and
        the monthly review's window follows the meetings."""
        if day < local_day(self.clock()):
            raise CaseRefusedError(N_("Une réunion se prévoit pour aujourd'hui ou plus tard."))

    def move_meeting(
        self, group: OperationalGroup, user: User, meeting_id: int, day: date | None
    ) -> GroupMeeting:
        """The coordinator moves a meeting to ``day``, or cancels it (``None``): a mistyped date
        is corrected, not lived with (the review's window follows the meetings)."""
        if group.coordinator_id != user.id:
            raise CaseRefusedError(N_("Seul le coordinateur du groupe fixe ses réunions."))
        meeting = self.session.get(GroupMeeting, meeting_id)
        if meeting is None or meeting.group_id != group.id:
            raise CaseRefusedError(N_("Cette réunion n'existe pas dans ce groupe."))
        if day is None:
            self.session.delete(meeting)
        else:
            if not in_range(day):
                raise CaseRefusedError(out_of_range_message())
            self._not_past(day)
            if day != meeting.meets_on and day in self.meetings(group):
                raise CaseRefusedError(N_("Une réunion est déjà prévue ce jour-là."))
            meeting.meets_on = day
        self.session.flush()
        return meeting

    def meeting_rows(self, group: OperationalGroup) -> list[GroupMeeting]:
        """The group's meetings with their ids (the coordinator's page), oldest first."""
        return list(
            self.session.scalars(
                select(GroupMeeting)
                .where(GroupMeeting.group_id == group.id)
                .order_by(GroupMeeting.meets_on)
            )
        )


def referent_label(user: User) -> str:
    """How the path's référent is recorded (``parcours.referent``): name and organisation."""
    return f"{user.name} ({user.organisation.name})"


def _clean(definition: FieldDef | None, field_id: str, raw: str) -> str | None:
    """A value as stored, ``None`` when left empty; :class:`CaseRefusedError` when malformed.

    Unknown fields pass through unchanged so the charter names them in its refusal.
    """
    value = raw.strip() if isinstance(raw, str) else ""
    if not value:
        return None
    label = definition.label_fr if definition else field_id
    if len(value) > MAX_VALUE_LENGTH or any(unicodedata.category(c)[0] == "C" for c in value):
        raise CaseRefusedError(
            N_("« %(label)s » : %(max)d caractères au plus, sur une ligne."),
            label=label,
            max=MAX_VALUE_LENGTH,
            invalid=(field_id,),
        )
    if definition is not None and is_date_field(field_id):
        try:
            day = read_day(value)
        except ValueError:
            raise CaseRefusedError(
                N_("« %(label)s » : date attendue au format JJ/MM/AAAA."),
                label=label,
                invalid=(field_id,),
            ) from None
        # Dates of birth go further back (checked apart); nothing is recorded beyond 2100.
        if not in_range(day, BIRTH_EARLIEST, LATEST):
            raise CaseRefusedError(
                N_("« %(label)s » : date entre le 01/01/1900 et le 31/12/2100."),
                label=label,
                invalid=(field_id,),
            )
        return day.isoformat()
    return value
