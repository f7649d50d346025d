"""Hypothesis strategies: random but valid charters, and requests against them.

Pools are kept small on purpose so that random rules and random requests actually meet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from hypothesis import strategies as st

from charter.decide import Declination, Recipient
from charter.model import (
    FORMAT_1,
    FORMAT_2,
    Article,
    Charter,
    ConsentCategory,
    ConsentSettings,
    FieldDef,
    IsoDuration,
    MeetingWindow,
    Membership,
    PublishRule,
    Purpose,
    RefusalArticles,
    RetentionRule,
    SecretBound,
    ViewRule,
    format1_accord,
)
from charter.vocabulary import Category, OrgKind, RetentionEvent, Role, Secrecy, Tier

T = TypeVar("T")

KINDS = (OrgKind.SPIP, OrgKind.PJJ, OrgKind.MISSION_LOCALE, OrgKind.COMMUNE, OrgKind.POLICE)
ROLES = (Role.AGENT, Role.REFERENT, Role.GROUP_MEMBER, Role.COORDINATOR)
CATEGORIES = (Category.IDENTITE, Category.JUSTICE, Category.SANTE, Category.PARCOURS)
NAMES = ("nom", "date_sortie", "orientation", "etapes")
PURPOSES = ("suivi_parcours", "revue_mensuelle", "orientation")
# Consent categories of format-2 charters: some share a name with a field category, so that a
# request's consented categories can mean one thing in format 1 and another in format 2.
ACCORDS = ("identite", "justice", "insertion", "sante_droits")
BASES = ("CSI L.132-5", "CASF L.121-6-2", "CSP L.1110-4", "RGPD art. 6-1-e")
BIRTH_DATE_FIELD = "identite.date_naissance"
BASE_DAY = date(2025, 3, 1)


def _subset(pool: tuple[T, ...]) -> st.SearchStrategy[frozenset[T]]:
    return st.frozensets(st.sampled_from(pool), min_size=1, max_size=len(pool))


@st.composite
def charters(draw: st.DrawFn) -> Charter:
    """A random valid charter (as the loader would build it)."""
    n_articles = draw(st.integers(1, 3))
    articles = tuple(
        Article(f"art-{i}", f"Article {i}", "Texte.") for i in range(1, n_articles + 1)
    )
    article_ids = st.sampled_from([a.id for a in articles])
    charter_format = draw(st.sampled_from([FORMAT_1, FORMAT_2]))
    ids = draw(
        st.lists(
            st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(NAMES)),
            min_size=1,
            max_size=10,
            unique=True,
        )
    )
    if charter_format == FORMAT_1:
        fields = tuple(_field_v1(draw, cat, name, draw(article_ids)) for cat, name in ids)
        consent_categories: tuple[ConsentCategory, ...] = ()
        consent = None
        grace = None
    else:
        accords = draw(st.lists(st.sampled_from(ACCORDS), max_size=len(ACCORDS), unique=True))
        consent_categories = tuple(
            ConsentCategory(a, f"Catégorie {a}", f"Category {a}", draw(article_ids))
            for a in accords
        )
        # Format 2 needs a hub-tier date of birth to compute minority from.
        birth = FieldDef(
            BIRTH_DATE_FIELD,
            "Date de naissance",
            "Date of birth",
            Category.IDENTITE,
            Tier.HUB,
            Secrecy.CONFIDENTIEL,
            "CSI L.132-5",
            draw(article_ids),
            accord=draw(st.one_of(st.none(), st.sampled_from(accords))) if accords else None,
        )
        fields = (
            birth,
            *(_field_v2(draw, cat, name, draw(article_ids), tuple(accords)) for cat, name in ids),
        )
        consent = ConsentSettings(
            BIRTH_DATE_FIELD,
            draw(st.integers(10, 21)),
            draw(st.booleans()),
            draw(st.sampled_from(["notice-1", "notice-2026-01"])),
        )
        grace = draw(
            st.one_of(st.none(), st.sampled_from([IsoDuration(days=30), IsoDuration(months=1)]))
        )
    field_ids = [f.id for f in fields]
    glob = st.one_of(
        st.sampled_from(field_ids),
        st.sampled_from(["*", "*.nom", "*.orientation"] + [f"{c.value}.*" for c in CATEGORIES]),
    )
    globs = st.lists(glob, min_size=1, max_size=3, unique=True).map(tuple)
    purpose_ids = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True))
    purposes = tuple(Purpose(p, p, p, draw(article_ids)) for p in purpose_ids)
    publish = tuple(
        PublishRule(f"pub-{i}", draw(_subset(KINDS)), draw(globs), draw(article_ids))
        for i in range(draw(st.integers(0, 4)))
    )
    windows = st.one_of(st.none(), st.builds(MeetingWindow, st.integers(0, 5), st.integers(0, 5)))
    view = tuple(
        ViewRule(
            id=f"view-{i}",
            roles=draw(_subset(ROLES)),
            kinds=draw(_subset(KINDS)),
            group_member=draw(st.booleans()),
            purposes=draw(st.frozensets(st.sampled_from(purpose_ids), min_size=1)),
            fields=draw(globs),
            article=draw(article_ids),
            window=draw(windows),
            senders=draw(st.one_of(st.none(), _subset(KINDS))),
        )
        for i in range(draw(st.integers(0, 5)))
    )
    # The loader wants at least one of kinds/roles per entry ("*" covers "anyone").
    bound_entry = st.one_of(
        st.builds(SecretBound, _subset(KINDS), st.none()),
        st.builds(SecretBound, st.none(), _subset(ROLES)),
        st.builds(SecretBound, _subset(KINDS), _subset(ROLES)),
    )
    secret_bound = tuple(draw(st.lists(bound_entry, max_size=2)))
    retention = tuple(
        RetentionRule(cat, IsoDuration(months=6), RetentionEvent.MEASURE_ENDED, articles[0].id)
        for cat in sorted({f.category for f in fields})
    )
    return Charter(
        id="charte-hypothese",
        version=draw(st.integers(1, 5)),
        title="Charte générée",
        effective=date(2025, 1, 1),
        articles=articles,
        fields=fields,
        purposes=purposes,
        publish=publish,
        view=view,
        secret_bound=secret_bound,
        retention=retention,
        membership=Membership(OrgKind.COMMUNE, grace=grace),
        refusal_articles=RefusalArticles(
            default=draw(article_ids),
            secret=draw(article_ids),
            consent=draw(article_ids),
            declined=draw(article_ids),
        ),
        format=charter_format,
        consent_categories=consent_categories,
        consent=consent,
    )


def _field_v1(draw: st.DrawFn, cat: Category, name: str, article: str) -> FieldDef:
    basis = draw(st.sampled_from(["consentement", *BASES]))
    return FieldDef(
        id=f"{cat.value}.{name}",
        label_fr=name,
        label_en=name,
        category=cat,
        tier=draw(st.sampled_from(list(Tier))),
        secrecy=draw(st.sampled_from(list(Secrecy))),
        basis=basis,
        article=article,
        accord=format1_accord(cat, basis),
    )


def _field_v2(
    draw: st.DrawFn, cat: Category, name: str, article: str, accords: tuple[str, ...]
) -> FieldDef:
    secrecy = draw(st.sampled_from(list(Secrecy)))
    interdit = secrecy is Secrecy.INTERDIT
    accord = None
    if accords and not interdit:
        accord = draw(st.one_of(st.none(), st.sampled_from(accords)))
    return FieldDef(
        id=f"{cat.value}.{name}",
        label_fr=name,
        label_en=name,
        category=cat,
        tier=draw(st.sampled_from(list(Tier))),
        secrecy=secrecy,
        basis=None if interdit else draw(st.sampled_from(BASES)),
        article=article,
        accord=accord,
        offence=draw(st.booleans()),
    )


@dataclass(frozen=True)
class Request:
    """Everything a publish or view decision takes, drawn at random."""

    field_ids: tuple[str, ...]
    kind: OrgKind
    recipient: Recipient
    purpose: str
    sender: OrgKind | None
    at: date | None
    meetings: tuple[date, ...]
    declinations: tuple[Declination, ...]
    consented_categories: frozenset[str] | None
    consented_fields: frozenset[str] | None

    def view_kwargs(self) -> dict[str, object]:
        return {
            "sender_org_kind": self.sender,
            "at": self.at,
            "meeting_dates": self.meetings,
            "declinations": self.declinations,
            "consented_categories": self.consented_categories,
            "consented_fields": self.consented_fields,
        }

    def publish_kwargs(self) -> dict[str, object]:
        return {
            "declinations": self.declinations,
            "consented_categories": self.consented_categories,
            "consented_fields": self.consented_fields,
        }


@st.composite
def requests(draw: st.DrawFn, charter: Charter) -> Request:
    """A random request against ``charter``: mostly known fields, sometimes unknown ones."""
    known = list(charter.field_ids)
    field = st.one_of(
        st.sampled_from(known), st.sampled_from(["inconnu.champ", "sante.diagnostic"])
    )
    day = st.integers(-10, 10).map(lambda d: BASE_DAY + timedelta(days=d))
    return Request(
        field_ids=tuple(draw(st.lists(field, min_size=0, max_size=12))),
        kind=draw(st.sampled_from(KINDS)),
        recipient=Recipient(
            roles=draw(st.frozensets(st.sampled_from(ROLES), max_size=3)),
            org_kind=draw(st.sampled_from(KINDS)),
            group_member=draw(st.booleans()),
        ),
        purpose=draw(st.sampled_from([*PURPOSES, "publicite"])),
        sender=draw(st.one_of(st.none(), st.sampled_from(KINDS))),
        at=draw(st.one_of(st.none(), day)),
        meetings=tuple(draw(st.lists(day, max_size=2))),
        declinations=tuple(
            Declination("org-1", g, "motif", datetime(2025, 1, 1, tzinfo=UTC))
            for g in draw(st.lists(st.sampled_from([*known, "sante.*"]), max_size=2))
        ),
        consented_categories=draw(
            st.one_of(
                st.none(),
                st.frozensets(st.sampled_from(sorted({*ACCORDS, *(c.value for c in CATEGORIES)}))),
            )
        ),
        consented_fields=draw(st.one_of(st.none(), st.frozensets(st.sampled_from(known)))),
    )


def without_publish_rule(charter: Charter, index: int) -> Charter:
    """``charter`` minus its ``index``-th publish rule."""
    rules = charter.publish[:index] + charter.publish[index + 1 :]
    return replace(charter, publish=rules)


def without_view_rule(charter: Charter, index: int) -> Charter:
    """``charter`` minus its ``index``-th view rule."""
    return replace(charter, view=charter.view[:index] + charter.view[index + 1 :])


def without_secret_bound(charter: Charter, index: int) -> Charter:
    """``charter`` minus its ``index``-th secret-bound entry."""
    return replace(
        charter, secret_bound=charter.secret_bound[:index] + charter.secret_bound[index + 1 :]
    )
