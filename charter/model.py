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
from charter.vocabulary import Category, OrgKind, RetentionEvent, Role, Secrecy, Tier

CONSENT_BASIS: Final = "consentement"

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


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One entry of the field catalogue."""

    id: str
    label_fr: str
    label_en: str
    category: Category
    tier: Tier
    secrecy: Secrecy
    basis: str  # "consentement" or a legal basis such as "CSI L.132-5"
    article: str
    line: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Purpose:
    """A purpose a recipient may state to view fields (purpose limitation)."""

    id: str
    label_fr: str
    label_en: str
    article: str
    line: int = dc_field(default=0, compare=False)


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
    """A validated charter: one version of the document and its rules."""

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
    source: str = dc_field(default="<charte>", compare=False)
    _field_index: MappingProxyType[str, FieldDef] = dc_field(
        init=False, repr=False, compare=False, hash=False
    )
    _article_index: MappingProxyType[str, Article] = dc_field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        # Frozen dataclasses cannot assign normally; the indexes are derived, never compared.
        object.__setattr__(self, "_field_index", MappingProxyType({f.id: f for f in self.fields}))
        object.__setattr__(
            self, "_article_index", MappingProxyType({a.id: a for a in self.articles})
        )

    @property
    def field_ids(self) -> tuple[str, ...]:
        """Catalogue field ids in declaration order."""
        return tuple(self._field_index)

    @property
    def purpose_ids(self) -> frozenset[str]:
        """Declared purposes."""
        return frozenset(p.id for p in self.purposes)

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
