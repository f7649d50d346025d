"""The charter as immutable values, exactly as loaded and validated.

Every object remembers the line it was declared on (``line``) so that the linter, the diff and
error pages can point an author at the source; lines never take part in equality or digests.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date
from types import MappingProxyType
from typing import Final

from charter.globs import matches
from charter.vocabulary import (
    CATEGORY_LABELS_EN,
    CATEGORY_LABELS_FR,
    CaseStep,
    Category,
    OrgKind,
    RetentionEvent,
    Role,
    Secrecy,
    Tier,
)

CONSENT_BASIS: Final = "consentement"

# Charter file formats. Format 1 states « consentement » as a basis; format 2 separates the
# lawful basis from the young person's accord and adds consent settings. Absent means 1, so
# every file written before format 2 existed still reads (and digests) exactly as before.
FORMAT_1: Final = 1
FORMAT_2: Final = 2
CHARTER_FORMATS: Final = (FORMAT_1, FORMAT_2)

_DURATION_RE = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


@dataclass(frozen=True, slots=True)
class IsoDuration:
    """An ISO-8601 calendar duration (years, months, weeks, days; no time part).

    Retention runs in calendar terms (« six mois après la fin de la mesure »), so months are
    added on the calendar, not as 30 days.
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> IsoDuration:
        """Parse ``PnYnMnWnD``; raise ``ValueError`` on anything else."""
        match = _DURATION_RE.match(text)
        if match is None or text == "P":
            raise ValueError(text)
        years, months, weeks, days = (int(g) if g else 0 for g in match.groups())
        duration = cls(years, months, weeks, days)
        if duration.is_zero():
            raise ValueError(text)
        return duration

    def is_zero(self) -> bool:
        """Whether the duration is empty (``P0D``)."""
        return not (self.years or self.months or self.weeks or self.days)

    def add_to(self, start: date) -> date:
        """The date ``start`` plus this duration; a day past the month's end is clamped."""
        month_index = start.month - 1 + self.months + 12 * self.years
        year = start.year + month_index // 12
        month = month_index % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return date.fromordinal(date(year, month, day).toordinal() + 7 * self.weeks + self.days)

    def __str__(self) -> str:
        parts = [
            f"{n}{unit}"
            for n, unit in (
                (self.years, "Y"),
                (self.months, "M"),
                (self.weeks, "W"),
                (self.days, "D"),
            )
            if n
        ]
        return "P" + "".join(parts)


@dataclass(frozen=True, slots=True)
class Article:
    """An article of the charter: the text partners sign."""

    id: str
    title: str
    text: str
    line: int = dc_field(default=0, compare=False)


def format1_accord(category: Category, basis: str) -> str | None:
    """The accord a format-1 field needs: its own category when its basis is « consentement ».

    Format 1 had no ``accord`` key; this is how its files are read under the format-2 model.
    """
    return category.value if basis == CONSENT_BASIS else None


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One entry of the field catalogue.

    ``basis``: the lawful basis of the processing (« CSI L.132-5 »…); in format 1 it may be
    « consentement »; in format 2 it is ``None`` for ``interdit`` fields only.
    ``accord``: the consent category whose accord of the young person the field's sharing
    needs; ``None`` when the lawful basis alone suffices (the group's own decisions).
    ``offence``: data relating to offences or criminal convictions (GDPR art. 10).
    """

    id: str
    label_fr: str
    label_en: str
    category: Category
    tier: Tier
    secrecy: Secrecy
    basis: str | None
    article: str
    accord: str | None = None
    offence: bool = False
    line: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ConsentCategory:
    """What an accord of the young person covers, in words printed on the consent receipt."""

    id: str
    label_fr: str
    label_en: str
    article: str
    line: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ConsentSettings:
    """How the young person's accord is sought (format 2, ``[consent]``).

    ``birth_date_field``: the hub-tier catalogue field minority is computed from, at each
    exchange. ``parents_for_minors``: while the young person is a minor, the accord of each
    holder of parental authority is needed too. ``notice_version``: the information notice
    given to young people and parents, recorded with each prior information.
    """

    birth_date_field: str
    minor_age: int
    parents_for_minors: bool
    notice_version: str
    line: int = dc_field(default=0, compare=False)

    def is_minor(self, birth_date: date, on: date) -> bool:
        """Whether someone born on ``birth_date`` is still a minor on ``on``.

        Someone born on 29 February comes of age on 1 March in a common year: the later
        reading, since being taken for a minor only asks for more accords (fail closed).
        """
        year = birth_date.year + self.minor_age
        if birth_date.month == 2 and birth_date.day == 29 and not calendar.isleap(year):
            coming_of_age = date(year, 3, 1)
        else:
            coming_of_age = birth_date.replace(year=year)
        return on < coming_of_age


@dataclass(frozen=True, slots=True)
class Purpose:
    """A purpose a recipient may state to view fields (purpose limitation).

    ``steps`` (format 2): the steps of a case the purpose applies to — a case long past
    repérage is not examined for entry again; ``None``: every step.
    """

    id: str
    label_fr: str
    label_en: str
    article: str
    line: int = dc_field(default=0, compare=False)
    steps: frozenset[CaseStep] | None = None

    def applies_to(self, step: str) -> bool:
        """Whether the purpose may be stated for a case at ``step``."""
        return self.steps is None or step in self.steps


@dataclass(frozen=True, slots=True)
class PublishRule:
    """Organisations of these kinds may publish fields matching these globs."""

    id: str
    kinds: frozenset[OrgKind]
    fields: tuple[str, ...]
    article: str
    line: int = dc_field(default=0, compare=False)

    def covers(self, field_id: str) -> bool:
        """Whether one of the rule's globs matches ``field_id``."""
        return any(matches(g, field_id) for g in self.fields)


@dataclass(frozen=True, slots=True)
class MeetingWindow:
    """A view rule limited to the days around a meeting of the group."""

    days_before: int
    days_after: int


@dataclass(frozen=True, slots=True)
class ViewRule:
    """Recipients holding one of ``roles`` in an organisation of one of ``kinds`` may view
    fields matching ``fields`` for one of ``purposes``.

    ``group_member``: the recipient must be a member of the operational group.
    ``senders``: when set, only fields published by organisations of these kinds.
    ``window``: when set, only around a meeting date.
    """

    id: str
    roles: frozenset[Role]
    kinds: frozenset[OrgKind]
    group_member: bool
    purposes: frozenset[str]
    fields: tuple[str, ...]
    article: str
    window: MeetingWindow | None = None
    senders: frozenset[OrgKind] | None = None
    line: int = dc_field(default=0, compare=False)

    def covers(self, field_id: str) -> bool:
        """Whether one of the rule's globs matches ``field_id``."""
        return any(matches(g, field_id) for g in self.fields)


@dataclass(frozen=True, slots=True)
class SecretBound:
    """Recipients bound by professional secrecy: organisation kind and/or role.

    ``None`` means any. A recipient is bound when one entry matches its kind and one of its roles.
    """

    kinds: frozenset[OrgKind] | None
    roles: frozenset[Role] | None
    line: int = dc_field(default=0, compare=False)

    def binds(self, roles: frozenset[Role], kind: OrgKind) -> bool:
        """Whether a recipient with ``roles`` in an organisation of ``kind`` is bound."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        return self.roles is None or not self.roles.isdisjoint(roles)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """How long fields of a category are kept, from which event."""

    category: Category
    duration: IsoDuration
    from_event: RetentionEvent
    article: str
    line: int = dc_field(default=0, compare=False)

    def expires_on(self, event_date: date) -> date:
        """The day data of this category must be destroyed, given the event's date."""
        return self.duration.add_to(event_date)


@dataclass(frozen=True, slots=True)
class Member:
    """A signatory organisation named by a local charter."""

    org_id: str
    kind: OrgKind
    name: str
    line: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Membership:
    """Who takes part: the signatory organisations and the coordinator.

    A charter-type (template) names no organisation, only the kind the coordinator belongs to.
    """

    coordinator_kind: OrgKind
    coordinator: str | None = None
    members: tuple[Member, ...] = ()
    # Format 2: how long a partner that has not signed the newest version keeps the version
    # it signed before (``versions.applicable_version``); ``None``: for as long as it likes.
    grace: IsoDuration | None = None
    line: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class RefusalArticles:
    """Articles cited when a field is refused without a rule to name.

    ``default``: nothing grants the field, or it is unknown (strictly necessary information).
    """

    default: str
    secret: str
    consent: str
    declined: str


@dataclass(frozen=True, slots=True)
class Charter:
    """A validated charter: one version of the document and its rules.

    ``format`` is part of the value: the same rules written in format 1 and in format 2 are two
    different charters (with two different digests). In format 1 ``consent_categories`` is
    empty, ``consent`` and ``membership.grace`` are ``None`` and each field's ``accord`` is
    derived from its basis (``format1_accord``); ``accord_categories`` gives the categories an
    accord can cover in both formats.
    """

    id: str
    version: int
    title: str
    effective: date
    articles: tuple[Article, ...]
    fields: tuple[FieldDef, ...]
    purposes: tuple[Purpose, ...]
    publish: tuple[PublishRule, ...]
    view: tuple[ViewRule, ...]
    secret_bound: tuple[SecretBound, ...]
    retention: tuple[RetentionRule, ...]
    membership: Membership
    refusal_articles: RefusalArticles
    format: int = FORMAT_1
    consent_categories: tuple[ConsentCategory, ...] = ()
    consent: ConsentSettings | None = None
    source: str = dc_field(default="<charte>", compare=False)
    _field_index: MappingProxyType[str, FieldDef] = dc_field(
        init=False, repr=False, compare=False, hash=False
    )
    _article_index: MappingProxyType[str, Article] = dc_field(
        init=False, repr=False, compare=False, hash=False
    )
    _accord_index: MappingProxyType[str, ConsentCategory] = dc_field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        self._check_format()
        # Frozen dataclasses cannot assign normally; the indexes are derived, never compared.
        object.__setattr__(self, "_field_index", MappingProxyType({f.id: f for f in self.fields}))
        object.__setattr__(
            self, "_article_index", MappingProxyType({a.id: a for a in self.articles})
        )
        categories = self.consent_categories if self.format == FORMAT_2 else self._derived()
        object.__setattr__(self, "_accord_index", MappingProxyType({c.id: c for c in categories}))

    def _check_format(self) -> None:
        # The canonical form of a format-1 charter leaves out what format 1 cannot say (so that
        # its digest never changes); a value saying more would share a digest with another.
        # The loader never builds one: this catches callers assembling charters by hand.
        if self.format not in CHARTER_FORMATS:
            raise ValueError(f"unknown charter format {self.format!r}")
        if self.format != FORMAT_1:
            if self.consent is None:  # the loader requires [consent]: to_toml must round-trip
                raise ValueError("a format-2 charter needs its consent settings")
            return
        if self.consent_categories or self.consent is not None or self.membership.grace is not None:
            raise ValueError("a format-1 charter has no consent categories, settings or grace")
        for f in self.fields:
            if f.basis is None or f.offence or f.accord != format1_accord(f.category, f.basis):
                raise ValueError(
                    f"field {f.id!r}: in format 1, basis is required, offence is false and "
                    "accord is derived from the basis (format1_accord)"
                )

    def _derived(self) -> tuple[ConsentCategory, ...]:
        # Format 1 names no consent category: the field categories its accords use stand in,
        # labelled from the shared vocabulary, so a receipt can always say what is covered.
        used = dict.fromkeys(f.accord for f in self.fields if f.accord is not None)
        return tuple(
            ConsentCategory(
                cid,
                CATEGORY_LABELS_FR[Category(cid)],
                CATEGORY_LABELS_EN[Category(cid)],
                self.refusal_articles.consent,
            )
            for cid in used
        )

    @property
    def field_ids(self) -> tuple[str, ...]:
        """Catalogue field ids in declaration order."""
        return tuple(self._field_index)

    @property
    def purpose_ids(self) -> frozenset[str]:
        """Declared purposes."""
        return frozenset(p.id for p in self.purposes)

    @property
    def accord_categories(self) -> tuple[ConsentCategory, ...]:
        """The categories an accord of the young person can cover, in both formats.

        Format 2: the declared ``[[consent_categories]]``. Format 1: the field categories of
        fields whose basis is « consentement », labelled from ``charter.vocabulary``.
        """
        return tuple(self._accord_index.values())

    @property
    def consent_category_ids(self) -> tuple[str, ...]:
        """Ids of ``accord_categories``, in order."""
        return tuple(self._accord_index)

    def consent_category(self, category_id: str) -> ConsentCategory | None:
        """The consent category ``category_id`` (declared or, in format 1, derived), or ``None``."""
        return self._accord_index.get(category_id)

    def field(self, field_id: str) -> FieldDef | None:
        """The catalogue entry for ``field_id``, or ``None``."""
        return self._field_index.get(field_id)

    def article(self, article_id: str) -> Article | None:
        """The article ``article_id``, or ``None``."""
        return self._article_index.get(article_id)

    def retention_for(self, category: Category) -> RetentionRule | None:
        """The retention rule of ``category``, or ``None``."""
        for rule in self.retention:
            if rule.category == category:
                return rule
        return None

    def is_secret_bound(self, roles: frozenset[Role], kind: OrgKind) -> bool:
        """Whether such a recipient is bound by professional secrecy under this charter."""
        return any(entry.binds(roles, kind) for entry in self.secret_bound)
