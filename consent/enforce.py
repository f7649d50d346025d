"""Enforcement: may these fields of this case go to this recipient for this purpose now?

One answer for every read and write of a case — pages, API, CLI, Celery tasks and the exchange
relay — from the charter × the consent records × the time (DESIGN §2.5, §7). It fails closed:

- a field whose sharing rests on the young person's accord (``FieldDef.accord``) passes only
  while a consent in force covers its category, the purpose and the recipient;
- while the young person is a minor — computed from the date of birth *on the day of the
  decision*; an unknown date of birth counts as a minor — the charter may also require the
  accord of each holder of parental authority who was informed, except a holder for whom the
  documented exception « contraire à l'intérêt de l'enfant » is recorded; a minor with no
  holder informed or excepted has no accord that counts;
- a field whose lawful basis suffices (``accord`` is ``None``) passes without consent;
- anything refused for lack of accord names the code ``no_consent`` and the charter's consent
  article, like any other refusal.

Pure functions over a :class:`ConsentState` loaded once per decision by
:meth:`consent.services.ConsentRecords.state`; no database, no clock of their own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from charter import Charter, CompiledCharter, Decision, Declination, Recipient
from charter.vocabulary import OrgKind
from consent.records import Consent, RecipientOrg
from consent.vocabulary import HOLDERS, Grantor

# Validity dates and ages are calendar days where the young person lives.
PARIS = ZoneInfo("Europe/Paris")
EXPIRY_NOTICE_DAYS = 30
DEFAULT_MINOR_AGE = 18
DEFAULT_BIRTH_DATE_FIELD = "identite.date_naissance"


def local_day(at: datetime) -> date:
    """The calendar day in France at instant ``at``."""
    return at.astimezone(PARIS).date()


def age_on(birth: date, day: date) -> int:
    """Age in whole years on ``day`` (a person born on 29 February comes of age on 1 March)."""
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


@dataclass(frozen=True, slots=True)
class ConsentRules:
    """What the charter in force says about consent (format 1 charters: the defaults of their
    article on consent, which asks for the parents' accord for minors)."""

    birth_date_field: str | None
    minor_age: int
    parents_for_minors: bool
    notice_version: str
    article: str

    @classmethod
    def of(cls, charter: Charter) -> ConsentRules:
        """The consent rules of ``charter``."""
        settings = getattr(charter, "consent", None)
        if settings is not None:
            return cls(
                settings.birth_date_field,
                settings.minor_age,
                settings.parents_for_minors,
                settings.notice_version,
                charter.refusal_articles.consent,
            )
        birth = DEFAULT_BIRTH_DATE_FIELD if charter.field(DEFAULT_BIRTH_DATE_FIELD) else None
        return cls(
            birth,
            DEFAULT_MINOR_AGE,
            True,
            f"{charter.id}:{charter.version}",
            charter.refusal_articles.consent,
        )

    def is_minor(self, birth: date | None, day: date) -> bool:
        """Whether the young person is a minor on ``day``; unknown birth date: yes (fail closed)."""
        return birth is None or age_on(birth, day) < self.minor_age

    def parents_required(self, birth: date | None, day: date) -> bool:
        """Whether the holders' accord is needed on ``day``."""
        return self.parents_for_minors and self.is_minor(birth, day)

    def majority_day(self, birth: date) -> date:
        """The day the young person comes of age."""
        try:
            return birth.replace(year=birth.year + self.minor_age)
        except ValueError:  # born on 29 February, of age on 1 March of a common year
            return date(birth.year + self.minor_age, 3, 1)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The consent records of one case that can matter to a decision, as of ``generation``.

    ``consents``: current records (corrections excluded), whatever their status.
    ``informed``: who received the prior information (current records, exceptions excluded).
    ``exceptions``: holders for whom the exception « contraire à l'intérêt de l'enfant » holds.
    """

    case_id: int
    generation: int
    consents: tuple[Consent, ...] = ()
    informed: frozenset[Grantor] = frozenset()
    exceptions: frozenset[Grantor] = frozenset()

    @property
    def holders(self) -> frozenset[Grantor]:
        """Holders of parental authority known to the case (informed or under the exception)."""
        return (self.informed | self.exceptions) & HOLDERS

    def required_grantors(self, rules: ConsentRules, birth: date | None, day: date) -> set[Grantor]:
        """Whose accord is needed on ``day``; holders under the exception are not asked."""
        required = {Grantor.YOUNG_PERSON}
        if rules.parents_required(birth, day):
            required |= self.holders - self.exceptions
        return required

    def missing_holders(self, rules: ConsentRules, birth: date | None, day: date) -> bool:
        """A minor for whom no holder of parental authority is known: nothing can be shared."""
        return rules.parents_required(birth, day) and not self.holders

    def categories(
        self,
        rules: ConsentRules,
        *,
        birth: date | None,
        at: datetime,
        purpose: str | None = None,
        recipient: RecipientOrg | None = None,
    ) -> frozenset[str]:
        """The consent categories every required grantor's accord covers for ``purpose``
        towards ``recipient`` on the day of ``at`` (``None``: any purpose / any recipient)."""
        day = local_day(at)
        if self.missing_holders(rules, birth, day):
            return frozenset()
        covered: frozenset[str] | None = None
        for grantor in self.required_grantors(rules, birth, day):
            mine: set[str] = set()
            for consent in self.consents:
                if (
                    consent.grantor is grantor
                    and consent.in_force(day)
                    and consent.scope.covers(purpose, recipient)
                ):
                    mine |= consent.scope.categories
            covered = frozenset(mine) if covered is None else covered & mine
            if not covered:
                return frozenset()
        return covered or frozenset()


def may_view(
    charter: CompiledCharter,
    state: ConsentState,
    recipient: Recipient,
    purpose: str,
    field_ids: Iterable[str],
    *,
    recipient_org: RecipientOrg,
    at: datetime,
    birth_date: date | None,
    sender_org_kind: OrgKind | None = None,
    meeting_dates: Iterable[date] = (),
    declinations: Collection[Declination] = (),
) -> Decision:
    """May these fields of the case go to this recipient for this purpose at ``at``?

    The charter's view decision, restricted to the categories the consent in force covers for
    this purpose and this recipient organisation (``recipient_org``: the recipient's
    organisation, which consent scopes name by id or kind).
    """
    rules = ConsentRules.of(charter.charter)
    covered = state.categories(
        rules, birth=birth_date, at=at, purpose=purpose, recipient=recipient_org
    )
    return charter.view(
        recipient,
        purpose,
        field_ids,
        sender_org_kind=sender_org_kind,
        at=at,
        meeting_dates=meeting_dates,
        declinations=declinations,
        consented_categories=covered,
    )


def may_record(
    charter: CompiledCharter,
    state: ConsentState,
    org_kind: OrgKind,
    field_ids: Iterable[str],
    *,
    at: datetime,
    birth_date: date | None,
    declinations: Collection[Declination] = (),
    first_birth_date: bool = True,
) -> Decision:
    """May an organisation of ``org_kind`` record these fields on the case at ``at``?

    The charter's publish decision, restricted to the categories some consent in force lets
    enter the exchange at all (any purpose, any recipient: each read then checks its own).
    The date of birth may be recorded a first time (``first_birth_date``) where the charter
    lets the organisation publish it, without any accord: the hub needs it to know whose accord
    is required (minority). Changing it afterwards needs the accord like any field, and
    reading it always does.
    """
    rules = ConsentRules.of(charter.charter)
    covered = state.categories(rules, birth=birth_date, at=at)
    exempt = {rules.birth_date_field} if rules.birth_date_field and first_birth_date else set()
    return charter.publish(
        org_kind,
        field_ids,
        declinations=declinations,
        consented_categories=covered,
        consented_fields=exempt,
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """The consent situation of a case on one day, for pages and the API (no scope detail).

    ``status``: ``en_vigueur`` (every required accord is in force for some category),
    ``incomplet`` (some required accord missing), ``absent`` (no accord recorded at all),
    ``retire`` (the young person's accord was withdrawn and nothing replaces it),
    ``expire`` (accords exist but none is in force any more).
    """

    status: str
    age: int | None
    minor: bool
    parents_required: bool
    missing: tuple[Grantor, ...]
    exceptions: tuple[Grantor, ...]
    expires_on: date | None
    expiring_soon: bool
    majority_on: date | None


def summarise(
    state: ConsentState, rules: ConsentRules, *, birth: date | None, at: datetime
) -> Summary:
    """The consent situation of the case on the day of ``at``."""
    day = local_day(at)
    required = state.required_grantors(rules, birth, day)
    in_force = [c for c in state.consents if c.in_force(day)]
    missing = sorted(
        (g for g in required if not any(c.grantor is g for c in in_force)),
        key=lambda g: list(Grantor).index(g),
    )
    holders_unknown = state.missing_holders(rules, birth, day)
    mine = [c for c in state.consents if c.grantor is Grantor.YOUNG_PERSON and c.current]
    if not state.consents:
        status = "absent"
    elif not missing and not holders_unknown:
        status = "en_vigueur"
    elif mine and all(c.withdrawal is not None for c in mine) and Grantor.YOUNG_PERSON in missing:
        status = "retire"
    elif Grantor.YOUNG_PERSON in missing and any(c.valid_until < day for c in mine):
        status = "expire"
    else:
        status = "incomplet"
    ends = [c.valid_until for c in in_force if c.grantor in required]
    expires_on = min(ends) if ends and status == "en_vigueur" else None
    return Summary(
        status=status,
        age=age_on(birth, day) if birth else None,
        minor=rules.is_minor(birth, day),
        parents_required=rules.parents_required(birth, day),
        missing=tuple(missing),
        exceptions=tuple(sorted(state.exceptions, key=lambda g: list(Grantor).index(g))),
        expires_on=expires_on,
        expiring_soon=expires_on is not None
        and expires_on - day <= timedelta(days=EXPIRY_NOTICE_DAYS),
        majority_on=rules.majority_day(birth) if birth else None,
    )
