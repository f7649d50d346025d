"""Enforcement (consent.enforce): the minors' rule on the day of each decision, scope, exclusions,
expiry, exceptions — and the charter decision it restricts, field by field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from charter import ReasonCode, Recipient, charter_type, compile_charter
from charter.vocabulary import OrgKind, Role
from consent import (
    Consent,
    ConsentRules,
    ConsentState,
    ConsentStatus,
    Grantor,
    RecipientOrg,
    Scope,
    StatusEntry,
    age_on,
    may_record,
    may_view,
    summarise,
)

ML = RecipientOrg(2, OrgKind.MISSION_LOCALE)
BAILLEUR = RecipientOrg(3, OrgKind.BAILLEUR)
RULES = ConsentRules.of(charter_type(2))
NOON = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)


def consent(
    grantor: Grantor = Grantor.YOUNG_PERSON,
    *,
    ident: int = 1,
    purposes: set[str] | None = None,
    categories: set[str] | None = None,
    orgs: set[int] | None = None,
    kinds: set[OrgKind] | None = None,
    excluded_orgs: set[int] | None = None,
    excluded_kinds: set[OrgKind] | None = None,
    valid: tuple[date, date] = (date(2026, 1, 1), date(2027, 1, 1)),
    statuses: tuple[ConsentStatus, ...] = (ConsentStatus.GIVEN,),
    superseded_by: int | None = None,
) -> Consent:
    scope = Scope(
        purposes=frozenset(purposes or {"suivi_parcours"}),
        categories=frozenset(categories or {"justice"}),
        recipient_orgs=frozenset(orgs if orgs is not None else {ML.id}),
        recipient_kinds=frozenset(kinds or ()),
        excluded_orgs=frozenset(excluded_orgs or ()),
        excluded_kinds=frozenset(excluded_kinds or ()),
    )
    history = tuple(
        StatusEntry(i, s, NOON - timedelta(days=10 - i), 1, 1, grantor)
        for i, s in enumerate(statuses)
    )
    return Consent(
        ident,
        1,
        grantor,
        scope,
        valid[0],
        valid[1],
        None,
        "c:2",
        1,
        1,
        NOON,
        None,
        history,
        superseded_by,
    )


def state(
    *consents: Consent, informed: set[Grantor] | None = None, exceptions: set[Grantor] | None = None
) -> ConsentState:
    return ConsentState(
        case_id=1,
        generation=1,
        consents=consents,
        informed=frozenset(informed if informed is not None else {c.grantor for c in consents}),
        exceptions=frozenset(exceptions or ()),
    )


def covered(
    s: ConsentState,
    birth: date | None = date(2000, 1, 1),
    *,
    at: datetime = NOON,
    purpose: str | None = "suivi_parcours",
    recipient: RecipientOrg | None = ML,
) -> frozenset[str]:
    return s.categories(RULES, birth=birth, at=at, purpose=purpose, recipient=recipient)


# -- age -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(2008, 12, 1), date(2026, 11, 30), 17),
        (date(2008, 12, 1), date(2026, 12, 1), 18),
        (date(2008, 2, 29), date(2026, 2, 28), 17),
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
    ],
)
def test_age_is_counted_in_whole_calendar_years(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_the_majority_day_of_someone_born_on_29_february_is_1_march() -> None:
    assert RULES.majority_day(date(2008, 2, 29)) == date(2026, 3, 1)
    assert RULES.majority_day(date(2008, 12, 1)) == date(2026, 12, 1)


# -- the minors' rule, decided on the day of each decision -----------------------------------


def test_a_minor_needs_each_informed_holder_until_the_eve_of_his_18th_birthday() -> None:
    # Given a young person born on 1 December 2008 who agreed, and a parent informed who did not
    young = consent()
    s = state(young, informed={Grantor.YOUNG_PERSON, Grantor.PARENT_1})
    birth = date(2008, 12, 1)
    # On the eve of his 18th birthday (Paris time), his own accord is not enough
    eve = datetime(2026, 11, 30, 22, 59, tzinfo=UTC)  # 23:59 in Paris
    assert covered(s, birth, at=eve) == frozenset()
    # From his birthday on (00:00 in Paris is 23:00 UTC the day before), it is
    birthday = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert covered(s, birth, at=birthday) == {"justice"}


def test_the_parents_accord_counts_only_for_what_both_cover() -> None:
    young = consent(categories={"justice", "identite"})
    parent = consent(Grantor.PARENT_1, ident=2, categories={"identite", "logement"})
    s = state(young, parent)
    assert covered(s, date(2010, 5, 5)) == {"identite"}


def test_a_minor_with_no_holder_known_has_no_accord_that_counts() -> None:
    s = state(consent())
    assert covered(s, date(2010, 5, 5)) == frozenset()
    # an unknown date of birth counts as a minor (fail closed)
    assert covered(s, None) == frozenset()


def test_a_holder_under_the_documented_exception_is_not_asked() -> None:
    young = consent()
    parent = consent(Grantor.PARENT_1, ident=2)
    s = state(young, parent, exceptions={Grantor.PARENT_2})
    s = ConsentState(
        1,
        1,
        (young, parent),
        frozenset({Grantor.YOUNG_PERSON, Grantor.PARENT_1}),
        frozenset({Grantor.PARENT_2}),
    )
    assert covered(s, date(2010, 5, 5)) == {"justice"}
    # but an informed holder who did not agree still blocks
    s2 = ConsentState(
        1,
        1,
        (young,),
        frozenset({Grantor.YOUNG_PERSON, Grantor.PARENT_1}),
        frozenset({Grantor.PARENT_2}),
    )
    assert covered(s2, date(2010, 5, 5)) == frozenset()


def test_a_charter_that_does_not_ask_the_parents_lets_the_minor_decide() -> None:
    rules = ConsentRules(RULES.birth_date_field, 18, False, "n", "art-5")
    s = state(consent(), informed={Grantor.YOUNG_PERSON, Grantor.PARENT_1})
    assert s.categories(
        rules, birth=date(2010, 5, 5), at=NOON, purpose="suivi_parcours", recipient=ML
    ) == {"justice"}


# -- scope, exclusions, validity, status ---------------------------------------------------------


def test_scope_covers_only_its_purposes_and_recipients() -> None:
    s = state(consent(purposes={"suivi_parcours"}, orgs={ML.id}))
    assert covered(s) == {"justice"}
    assert covered(s, purpose="orientation") == frozenset()  # purpose Q
    assert covered(s, recipient=BAILLEUR) == frozenset()  # organisation B


def test_a_kind_of_recipient_covers_every_organisation_of_that_kind() -> None:
    s = state(consent(orgs=set(), kinds={OrgKind.MISSION_LOCALE}))
    assert covered(s) == {"justice"}
    assert covered(s, recipient=RecipientOrg(9, OrgKind.MISSION_LOCALE)) == {"justice"}
    assert covered(s, recipient=BAILLEUR) == frozenset()


def test_an_exclusion_wins_over_an_inclusion() -> None:
    by_org = state(consent(kinds={OrgKind.MISSION_LOCALE}, excluded_orgs={ML.id}))
    assert covered(by_org) == frozenset()
    by_kind = state(consent(orgs={ML.id}, excluded_kinds={OrgKind.MISSION_LOCALE}))
    assert covered(by_kind) == frozenset()


def test_validity_is_inclusive_and_ends_at_once() -> None:
    s = state(consent(valid=(date(2026, 1, 1), date(2026, 11, 30))))
    assert covered(s) == {"justice"}
    assert covered(s, at=NOON + timedelta(days=1)) == frozenset()
    assert covered(s, at=datetime(2025, 12, 31, 12, tzinfo=UTC)) == frozenset()


@pytest.mark.parametrize(
    "statuses",
    [
        (ConsentStatus.REFUSED,),
        (ConsentStatus.GIVEN, ConsentStatus.WITHDRAWN),
        (ConsentStatus.GIVEN, ConsentStatus.EXPIRED, ConsentStatus.WITHDRAWN),
    ],
)
def test_a_refused_or_withdrawn_consent_covers_nothing(statuses: tuple[ConsentStatus, ...]) -> None:
    assert covered(state(consent(statuses=statuses))) == frozenset()


def test_a_corrected_consent_covers_nothing() -> None:
    assert covered(state(consent(superseded_by=7))) == frozenset()


# -- the decision ------------------------------------------------------------------------------

CHARTER = compile_charter(charter_type(2))
REFERENT = Recipient(frozenset({Role.REFERENT}), OrgKind.MISSION_LOCALE, False)
HUB_FIELDS = ["justice.date_sortie", "parcours.referent", "identite.date_naissance"]


def test_without_consent_fields_resting_on_accord_are_refused_with_the_consent_article() -> None:
    decision = may_view(
        CHARTER,
        state(),
        REFERENT,
        "suivi_parcours",
        HUB_FIELDS,
        recipient_org=ML,
        at=NOON,
        birth_date=date(2000, 1, 1),
    )
    by_field = {r.field: r for r in decision.reasons}
    assert by_field["justice.date_sortie"].code is ReasonCode.NO_CONSENT
    assert by_field["justice.date_sortie"].article == "art-5"
    assert by_field["identite.date_naissance"].code is ReasonCode.NO_CONSENT
    # the group's own decision rests on its mission alone
    assert by_field["parcours.referent"].allowed


def test_with_consent_the_covered_category_passes_and_only_it() -> None:
    s = state(consent(categories={"justice"}))
    decision = may_view(
        CHARTER,
        s,
        REFERENT,
        "suivi_parcours",
        HUB_FIELDS,
        recipient_org=ML,
        at=NOON,
        birth_date=date(2000, 1, 1),
    )
    assert decision.allowed_fields == {"justice.date_sortie", "parcours.referent"}
    assert decision.reason("identite.date_naissance").code is ReasonCode.NO_CONSENT


def test_recording_needs_a_consent_for_the_category_but_the_birth_date_is_always_recordable() -> (
    None
):
    nothing = may_record(CHARTER, state(), OrgKind.SPIP, HUB_FIELDS, at=NOON, birth_date=None)
    assert nothing.allowed_fields == {"parcours.referent", "identite.date_naissance"}
    assert nothing.reason("justice.date_sortie").code is ReasonCode.NO_CONSENT
    s = state(consent(categories={"justice"}))
    consented = may_record(
        CHARTER, s, OrgKind.SPIP, HUB_FIELDS, at=NOON, birth_date=date(2000, 1, 1)
    )
    assert "justice.date_sortie" in consented.allowed_fields


# -- the summary --------------------------------------------------------------------------------


def test_summary_says_what_is_missing_and_when_it_ends() -> None:
    young = consent(valid=(date(2026, 1, 1), date(2026, 12, 20)))
    s = state(young, informed={Grantor.YOUNG_PERSON, Grantor.PARENT_1})
    minor = summarise(s, RULES, birth=date(2010, 1, 1), at=NOON)
    assert (minor.status, minor.missing, minor.minor) == ("incomplet", (Grantor.PARENT_1,), True)
    adult = summarise(s, RULES, birth=date(2000, 1, 1), at=NOON)
    assert adult.status == "en_vigueur" and adult.expires_on == date(2026, 12, 20)
    assert adult.expiring_soon
    withdrawn = summarise(
        state(consent(statuses=(ConsentStatus.GIVEN, ConsentStatus.WITHDRAWN))),
        RULES,
        birth=date(2000, 1, 1),
        at=NOON,
    )
    assert withdrawn.status == "retire"
    assert summarise(state(), RULES, birth=None, at=NOON).status == "absent"


def test_a_group_that_signed_version_1_keeps_its_reading_of_consent() -> None:
    # Format 1: a field whose basis is « consentement » needs the accord of its category; a field
    # on a legal basis passes without it.
    v1 = compile_charter(charter_type(1))
    rules = ConsentRules.of(v1.charter)
    assert rules.birth_date_field == "identite.date_naissance" and rules.parents_for_minors
    group_member = Recipient(frozenset({Role.GROUP_MEMBER}), OrgKind.MISSION_LOCALE, True)
    decision = may_view(
        v1,
        state(),
        group_member,
        "reperage",
        ["identite.date_naissance", "justice.date_sortie"],
        recipient_org=ML,
        at=NOON,
        birth_date=date(2000, 1, 1),
    )
    assert decision.reason("identite.date_naissance").code is ReasonCode.NO_CONSENT
    assert decision.reason("justice.date_sortie").allowed
    consented = state(consent(purposes={"reperage"}, categories={"identite"}))
    again = may_view(
        v1,
        consented,
        group_member,
        "reperage",
        ["identite.date_naissance"],
        recipient_org=ML,
        at=NOON,
        birth_date=date(2000, 1, 1),
    )
    assert again.reason("identite.date_naissance").allowed
