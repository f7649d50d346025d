"""Decisions: examples on a small charter, then properties on random charters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.decide import (
    CompiledCharter,
    Decision,
    Declination,
    Interpreter,
    Reason,
    ReasonCode,
    Recipient,
    compile_charter,
    interpret,
)
from charter.loader import load_charter
from charter.model import Charter
from charter.vocabulary import OrgKind, Role, Secrecy
from tests.unit.charter.sample import SMALL, SMALL2
from tests.unit.charter.strategies import (
    Request,
    charters,
    requests,
    without_publish_rule,
    without_secret_bound,
    without_view_rule,
)

ALL = ["identite.prenom", "justice.date_sortie", "sante.orientation", "sante.diagnostic"]
ALL2 = [
    "identite.prenom",
    "identite.date_naissance",
    "justice.date_sortie",
    "sante.orientation",
    "sante.diagnostic",
]
ML_REFERENT = Recipient.of(Role.REFERENT, org_kind=OrgKind.MISSION_LOCALE, group_member=False)
SPIP_REFERENT = Recipient.of(Role.REFERENT, org_kind=OrgKind.SPIP, group_member=False)
POLICE_MEMBER = Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.POLICE, group_member=True)


@pytest.fixture(scope="module")
def small() -> Charter:
    return load_charter(SMALL)


def codes(decision: Decision) -> dict[str, ReasonCode]:
    return {r.field: r.code for r in decision.reasons}


# --- examples --------------------------------------------------------------------------------


def test_publish_grants_by_kind_and_names_rule_and_article(small: Charter) -> None:
    # Given the SPIP may publish identity, justice and health-referral fields
    decision = compile_charter(small).publish(OrgKind.SPIP, ALL)
    # Then all but the forbidden diagnosis pass, each naming its rule and article
    assert decision.allowed_fields == {
        "identite.prenom",
        "justice.date_sortie",
        "sante.orientation",
    }
    assert decision.reason("justice.date_sortie") == Reason(
        "justice.date_sortie", True, "pub-justice", "art-1", "charte-test", 1, ReasonCode.GRANTED
    )
    assert decision.reason("sante.diagnostic").code is ReasonCode.INTERDIT
    assert decision.reason("sante.diagnostic").article == "art-2"


def test_publish_default_deny_for_kinds_without_rule(small: Charter) -> None:
    decision = compile_charter(small).publish(OrgKind.POLICE, ALL)
    assert decision.allowed_fields == frozenset()
    assert codes(decision)["identite.prenom"] is ReasonCode.NO_RULE
    assert decision.reason("identite.prenom").article == "art-1"  # the default article


def test_unknown_field_is_refused_and_named(small: Charter) -> None:
    decision = compile_charter(small).publish(OrgKind.SPIP, ["justice.casier"])
    assert decision.refused_fields == {"justice.casier"}
    assert decision.reasons[0].code is ReasonCode.UNKNOWN_FIELD


def test_secret_reaches_bound_recipient_only(small: Charter) -> None:
    compiled = compile_charter(small)
    to_spip = compiled.view(SPIP_REFERENT, "suivi_parcours", ALL)
    to_ml = compiled.view(ML_REFERENT, "suivi_parcours", ALL)
    assert "sante.orientation" in to_spip.allowed_fields
    assert to_ml.reason("sante.orientation").code is ReasonCode.SECRET_NOT_BOUND
    assert to_ml.reason("sante.orientation").article == "art-2"  # the charter's secrecy article
    assert to_ml.allowed_fields == {"identite.prenom", "justice.date_sortie"}


def test_purpose_limits_the_view(small: Charter) -> None:
    compiled = compile_charter(small)
    review = compiled.view(ML_REFERENT, "revue_mensuelle", ALL)
    assert review.allowed_fields == frozenset()
    unknown = compiled.view(ML_REFERENT, "publicite", ["identite.prenom", "x.y"])
    assert codes(unknown) == {
        "identite.prenom": ReasonCode.UNKNOWN_PURPOSE,
        "x.y": ReasonCode.UNKNOWN_FIELD,
    }


def test_group_membership_is_required_when_the_rule_says_so(small: Charter) -> None:
    compiled = compile_charter(small)
    outsider = Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.POLICE, group_member=False)
    meeting = [date(2025, 3, 10)]
    at = datetime(2025, 3, 9, 14, 0, tzinfo=UTC)
    member = compiled.view(POLICE_MEMBER, "revue_mensuelle", ALL, at=at, meeting_dates=meeting)
    nonmember = compiled.view(outsider, "revue_mensuelle", ALL, at=at, meeting_dates=meeting)
    assert member.allowed_fields == {"identite.prenom"}
    assert nonmember.allowed_fields == frozenset()


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (None, False),  # time unknown: fail closed
        (date(2025, 3, 2), False),  # 8 days before
        (date(2025, 3, 3), True),  # 7 days before: first day of the window
        (datetime(2025, 3, 10, 9, 0, tzinfo=UTC), True),
        (date(2025, 3, 11), True),  # 1 day after: last day
        (date(2025, 3, 12), False),
    ],
)
def test_meeting_window(small: Charter, at: date | None, allowed: bool) -> None:
    decision = compile_charter(small).view(
        POLICE_MEMBER,
        "revue_mensuelle",
        ["identite.prenom"],
        at=at,
        meeting_dates=[date(2025, 3, 10)],
    )
    reason = decision.reasons[0]
    assert reason.allowed is allowed
    assert reason.code is (ReasonCode.GRANTED if allowed else ReasonCode.OUTSIDE_WINDOW)
    assert reason.rule == "view-revue"


def test_sender_that_may_not_publish_a_field_cannot_pass_it_on(small: Charter) -> None:
    decision = compile_charter(small).view(
        ML_REFERENT, "suivi_parcours", ALL, sender_org_kind=OrgKind.MISSION_LOCALE
    )
    assert decision.allowed_fields == frozenset()
    assert decision.reason("identite.prenom").code is ReasonCode.SENDER_NOT_ALLOWED


def test_declination_and_consent_restrict(small: Charter) -> None:
    compiled = compile_charter(small)
    declined = Declination(
        "org-spip-35",
        "justice.*",
        "mesure en cours d'aménagement",
        datetime(2025, 1, 5, tzinfo=UTC),
    )
    decision = compiled.publish(
        OrgKind.SPIP, ALL, declinations=[declined], consented_categories={"justice"}
    )
    # In format 1 only « consentement » fields need an accord (of their own category): the
    # first name does, the health referral (CASF L.121-6-2) passes on its legal basis.
    assert codes(decision) == {
        "identite.prenom": ReasonCode.NO_CONSENT,
        "justice.date_sortie": ReasonCode.DECLINED,
        "sante.orientation": ReasonCode.GRANTED,
        "sante.diagnostic": ReasonCode.INTERDIT,
    }
    assert decision.reason("identite.prenom").article == small.refusal_articles.consent
    by_field = compiled.publish(OrgKind.SPIP, ALL, consented_fields={"identite.prenom"})
    assert by_field.allowed_fields == {
        "identite.prenom",
        "justice.date_sortie",
        "sante.orientation",
    }
    nothing = compiled.publish(OrgKind.SPIP, ALL, consented_categories=(), consented_fields=())
    assert nothing.allowed_fields == {"justice.date_sortie", "sante.orientation"}


# --- format 2: the accord of the young person, apart from the lawful basis ------------------


@pytest.fixture(scope="module")
def small2() -> Charter:
    return load_charter(SMALL2)


@pytest.mark.parametrize("engine", [compile_charter, interpret])
def test_fields_needing_no_accord_pass_without_consent(
    small2: Charter, engine: Callable[[Charter], CompiledCharter | Interpreter]
) -> None:
    # Given a consent in force that covers no category at all
    decision = engine(small2).view(
        SPIP_REFERENT,
        "suivi_parcours",
        ALL2,
        sender_org_kind=OrgKind.SPIP,
        consented_categories=frozenset(),
    )
    # Then only the release date (lawful basis alone, no accord) passes
    assert codes(decision) == {
        "identite.prenom": ReasonCode.NO_CONSENT,
        "identite.date_naissance": ReasonCode.NO_CONSENT,
        "justice.date_sortie": ReasonCode.GRANTED,
        "sante.orientation": ReasonCode.NO_CONSENT,
        "sante.diagnostic": ReasonCode.INTERDIT,
    }
    refused = decision.reason("sante.orientation")
    assert (refused.article, refused.rule) == ("art-3", None)  # the charter's consent article


@pytest.mark.parametrize("engine", [compile_charter, interpret])
def test_accord_is_matched_on_the_consent_category_or_the_field(
    small2: Charter, engine: Callable[[Charter], CompiledCharter | Interpreter]
) -> None:
    evaluator = engine(small2)
    by_category = evaluator.publish(OrgKind.SPIP, ALL2, consented_categories={"sante"})
    assert by_category.allowed_fields == {"justice.date_sortie", "sante.orientation"}
    # A field category is not a consent category: « justice » names none in format 2.
    by_field_category = evaluator.publish(OrgKind.SPIP, ALL2, consented_categories={"justice"})
    assert by_field_category.allowed_fields == {"justice.date_sortie"}
    by_field = evaluator.publish(OrgKind.SPIP, ALL2, consented_fields={"identite.prenom"})
    assert by_field.allowed_fields == {"identite.prenom", "justice.date_sortie"}
    unrestricted = evaluator.publish(OrgKind.SPIP, ALL2)
    assert unrestricted.allowed_fields == set(ALL2) - {"sante.diagnostic"}


def test_duplicates_are_decided_once_in_request_order(small: Charter) -> None:
    decision = compile_charter(small).publish(
        OrgKind.SPIP, ["justice.date_sortie", "identite.prenom", "justice.date_sortie"]
    )
    assert [r.field for r in decision.reasons] == ["justice.date_sortie", "identite.prenom"]


def test_explanations_are_french_and_name_the_article(small: Charter) -> None:
    lines = compile_charter(small).view(ML_REFERENT, "suivi_parcours", ALL).explain_fr()
    assert any("secret professionnel" in line and "art-2" in line for line in lines)
    assert all("charte « charte-test » v1" in line for line in lines)


# --- properties ------------------------------------------------------------------------------


def both(charter: Charter, request: Request) -> tuple[Decision, Decision]:
    compiled = compile_charter(charter)
    return (
        compiled.publish(request.kind, request.field_ids, **request.publish_kwargs()),  # type: ignore[arg-type]
        compiled.view(
            request.recipient,
            request.purpose,
            request.field_ids,
            **request.view_kwargs(),  # type: ignore[arg-type]
        ),
    )


@st.composite
def charter_and_request(draw: st.DrawFn) -> tuple[Charter, Request]:
    charter = draw(charters())
    return charter, draw(requests(charter))


@settings(max_examples=300, deadline=None)
@given(charter_and_request())
def test_compiled_equals_interpreted(case: tuple[Charter, Request]) -> None:
    charter, request = case
    reference = interpret(charter)
    publish, view = both(charter, request)
    assert publish == reference.publish(request.kind, request.field_ids, **request.publish_kwargs())  # type: ignore[arg-type]
    assert view == reference.view(
        request.recipient,
        request.purpose,
        request.field_ids,
        **request.view_kwargs(),  # type: ignore[arg-type]
    )


@settings(max_examples=200, deadline=None)
@given(charter_and_request())
def test_every_field_gets_exactly_one_reason_naming_an_article(
    case: tuple[Charter, Request],
) -> None:
    charter, request = case
    requested = list(dict.fromkeys(request.field_ids))
    articles = {a.id for a in charter.articles}
    for decision in both(charter, request):
        assert [r.field for r in decision.reasons] == requested
        assert decision.allowed_fields | decision.refused_fields == set(requested)
        assert not decision.allowed_fields & decision.refused_fields
        for reason in decision.reasons:
            assert reason.article in articles
            assert (reason.charter_id, reason.charter_version) == (charter.id, charter.version)
            assert reason.allowed is (reason.code is ReasonCode.GRANTED)
            assert reason.allowed is (reason.field in decision.allowed_fields)


@settings(max_examples=200, deadline=None)
@given(charter_and_request())
def test_interdit_never_passes_and_secret_never_reaches_unbound(
    case: tuple[Charter, Request],
) -> None:
    charter, request = case
    publish, view = both(charter, request)
    for decision in (publish, view):
        for field_id in decision.allowed_fields:
            field = charter.field(field_id)
            assert field is not None
            assert field.secrecy is not Secrecy.INTERDIT
    recipient = request.recipient
    if not charter.is_secret_bound(recipient.roles, recipient.org_kind):
        for field_id in view.allowed_fields:
            field = charter.field(field_id)
            assert field is not None and field.secrecy is not Secrecy.SECRET


@settings(max_examples=200, deadline=None)
@given(charter_and_request())
def test_result_is_within_what_the_charter_grants(case: tuple[Charter, Request]) -> None:
    charter, request = case
    publish, view = both(charter, request)
    publish_rules = {r.id: r for r in charter.publish}
    view_rules = {r.id: r for r in charter.view}
    for reason in publish.reasons:
        if reason.allowed:
            rule = publish_rules[reason.rule or ""]
            assert request.kind in rule.kinds and rule.covers(reason.field)
            assert reason.article == rule.article
    recipient = request.recipient
    for reason in view.reasons:
        if reason.allowed:
            v = view_rules[reason.rule or ""]
            assert v.covers(reason.field) and request.purpose in v.purposes
            assert recipient.org_kind in v.kinds and recipient.roles & v.roles
            assert recipient.group_member or not v.group_member
            assert reason.article == v.article
            if request.sender is not None:
                sent = compile_charter(charter).publish(request.sender, [reason.field])
                assert sent.all_allowed


@settings(max_examples=200, deadline=None)
@given(charter_and_request(), st.data())
def test_removing_a_rule_never_reveals_more(
    case: tuple[Charter, Request], data: st.DataObject
) -> None:
    charter, request = case
    publish, view = both(charter, request)
    smaller: list[Charter] = []
    if charter.publish:
        smaller.append(
            without_publish_rule(charter, data.draw(st.integers(0, len(charter.publish) - 1)))
        )
    if charter.view:
        smaller.append(without_view_rule(charter, data.draw(st.integers(0, len(charter.view) - 1))))
    if charter.secret_bound:
        smaller.append(
            without_secret_bound(charter, data.draw(st.integers(0, len(charter.secret_bound) - 1)))
        )
    for reduced in smaller:
        less_publish, less_view = both(reduced, request)
        assert less_publish.allowed_fields <= publish.allowed_fields
        assert less_view.allowed_fields <= view.allowed_fields


@settings(max_examples=100, deadline=None)
@given(charter_and_request())
def test_consent_and_declinations_only_restrict(case: tuple[Charter, Request]) -> None:
    charter, request = case
    compiled = compile_charter(charter)
    free_publish = compiled.publish(request.kind, request.field_ids)
    free_view = compiled.view(
        request.recipient,
        request.purpose,
        request.field_ids,
        sender_org_kind=request.sender,
        at=request.at,
        meeting_dates=request.meetings,
    )
    publish, view = both(charter, request)
    assert publish.allowed_fields <= free_publish.allowed_fields
    assert view.allowed_fields <= free_view.allowed_fields


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_decisions_a_context_keeps_are_those_it_would_make_afresh(data: st.DataObject) -> None:
    # One compiled charter asked many requests, some in the same context and on the same
    # fields but another time, other windows, other declinations or consent: each answer is
    # the interpreter's, whatever was asked before (the kept decisions never leak).
    charter = data.draw(charters())
    compiled, reference = compile_charter(charter), interpret(charter)
    asked = data.draw(st.lists(requests(charter), min_size=1, max_size=6))
    for request in [*asked, *reversed(asked), *asked]:
        args = (request.recipient, request.purpose, request.field_ids)
        kwargs = request.view_kwargs()
        assert compiled.view(*args, **kwargs) == reference.view(*args, **kwargs)  # type: ignore[arg-type]
        bare = {
            "sender_org_kind": request.sender,
            "at": request.at,
            "meeting_dates": request.meetings,
        }
        assert compiled.view(*args, **bare) == reference.view(*args, **bare)  # type: ignore[arg-type]
